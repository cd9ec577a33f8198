"""PyTensor functions compiled once across processes: the functions nutpie wraps (the log
density and its gradient, the draws' expansion, the initial points) and the estimate's side
compiles (the prior predictive, the scenarios' prior density, moment matching's density,
the value of information's observation density) cached on disk.

PyTensor keeps C modules and numba functions on disk, but every process rewrites the graph
again (benchmarks/README.md, "The side compiles").
`function` is `pytensor.function` with the rewritten graph (its `FunctionMaker`, which
PyTensor pickles for `Function`'s own pickling) kept in PyTensor's compile folder, under a
key of what decides the compiled code: the graph as given (each node's op by its pickle, or
by its inner graph's text, or a class made at run time by its code; where its inputs come
from; constants by value; every input's type), the mode, the arguments that
change the function, PyTensor's configuration hash and the versions of PyTensor, PyMC, NumPy
and Python. Shared variables' values are not in the key: a loaded function is linked to the
caller's own shared storage (pm.Data, random generators), so it reads and updates what a
freshly compiled one would. A graph with no stable key (an input that is not given, an op
that does not pickle), a missing or unreadable entry, or one whose inputs do not match, is
compiled as PyTensor does (and written for the next process): never an error, never a
function of another graph (tests/test_compiled.py).
"""

from __future__ import annotations

import contextlib
import copyreg
import hashlib
import io
import logging
import os
import pickle
import sys
import tempfile
import types
from importlib.metadata import version
from pathlib import Path

log = logging.getLogger(__name__)

FOLDER = "capest_functions"  # under PyTensor's compile folder (config.compiledir)
# An estimate of February 11 uses 12 entries (about 7 MB), the test suite's models many
# more; a graph changed by a code change writes new ones, so the least recently used are
# removed beyond this many.
MAX_ENTRIES = 256
# pytensor.function's arguments this cache passes on; any other (profile,
# no_default_updates, ...) is compiled by PyTensor, uncached
HANDLED = {"allow_input_downcast", "accept_inplace", "on_unused_input", "name", "trust_input"}
HANDLED |= {"rebuild_strict", "givens"}
# What `on_miss` asked to be called at the next graph not found in the cache
_ON_MISS: list = []


def function(inputs, outputs=None, mode=None, updates=None, **kwargs):
    """`pytensor.function(inputs, outputs, mode, updates, **kwargs)`, its rewritten graph
    loaded from the disk cache when one with the same key is there."""
    from pytensor.compile.mode import get_mode
    from pytensor.compile.rebuild import construct_function_ins_and_outs

    given = {k for k, v in kwargs.items() if v is not None}
    if given - HANDLED or not isinstance(inputs, list | tuple):  # not what this cache handles
        return _ORIGINAL(inputs, outputs, mode=mode, updates=updates, **kwargs)
    ins, outs = construct_function_ins_and_outs(
        inputs,
        outputs,
        updates=updates,
        # substituted before the key is made: the key is of the graph as compiled
        givens=kwargs.get("givens"),
        rebuild_strict=kwargs.get("rebuild_strict", True),
        allow_input_downcast=kwargs.get("allow_input_downcast"),
    )
    mode = get_mode(mode)
    maker_kwargs = {
        "accept_inplace": kwargs.get("accept_inplace", False),
        "on_unused_input": kwargs.get("on_unused_input"),
        "name": kwargs.get("name"),
        "trust_input": kwargs.get("trust_input", False),
    }
    key = _key(ins, outs, mode, maker_kwargs)
    path = None if key is None else _folder() / f"{key}.pkl"
    if path is not None and path.exists():
        maker = _load(path, ins, outs)
        if maker is not None:
            log.debug("compiled function %s loaded from the cache", key[:12])
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: kept by `_save`'s pruning
            # the caller's containers: shared values and their updates are the caller's own
            return maker.create([i.value for i in ins])
    if path is not None:
        while _ON_MISS:  # a cold machine, before this graph's rewrites
            _ON_MISS.pop()()
    maker = mode.function_maker(ins, outs, mode, profile=None, **maker_kwargs)
    if path is not None:
        _save(maker, path)
        # Use the graph as the next process will load it: numba keys its own disk cache by
        # the graph it is given, and a loaded graph's key is not the freshly rewritten one's,
        # so the first process to load an entry jitted it again (moment matching 12-20 s
        # instead of 4 in the warm run after a cold one). Jitted once, here, for both.
        loaded = _load(path, ins, outs) if path.exists() else None
        if loaded is not None:
            return loaded.create([i.value for i in ins])
    return maker.create()


def _ORIGINAL(*args, **kwargs):  # noqa: N802 - PyTensor's own, whatever `through_cache` did
    from pytensor.compile.maker import function as original

    return original(*args, **kwargs)


@contextlib.contextmanager
def through_cache():
    """Within: `pytensor.function`, as another library calls it (PyMC's prior predictive),
    is `function`."""
    import pytensor

    original = pytensor.function
    pytensor.function = function
    try:
        yield
    finally:
        pytensor.function = original


@contextlib.contextmanager
def on_miss(callback):
    """Within: `callback()` once, when `function` first does not find a graph in the cache
    (the machine is cold for this model), before it compiles it (model/warmup.py)."""
    _ON_MISS.append(callback)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            _ON_MISS.remove(callback)


def _folder() -> Path:
    from pytensor import config

    return Path(config.compiledir) / FOLDER


def _load(path: Path, ins, outs):
    """The cached FunctionMaker, or None (unreadable, or its inputs are not these)."""
    from pytensor.compile.maker import FunctionMaker

    try:
        with open(path, "rb") as f:
            maker = _Unpickler(f, _made_at_run_time(ins, outs)).load()
    except Exception as e:  # noqa: BLE001 - any unreadable entry is compiled again
        log.warning("compiled function %s unreadable (%s): compiling it", path.name, e)
        return None
    if not isinstance(maker, FunctionMaker) or len(maker.inputs) != len(ins):
        return None
    for cached, given in zip(maker.inputs, ins, strict=True):
        same = (
            cached.variable.type == given.variable.type
            and cached.implicit == given.implicit
            and (cached.update is None) == (given.update is None)
        )
        if not same:
            return None
    # The caller's own variables, as a fresh function's inputs are: `Function.get_shared()`
    # then names the caller's pm.Data (nutpie keys its data by them; the pickled copies made
    # the log density's and the expansion's shared data two variables of one name). The
    # graph's own copies share the caller's storage: whoever finds a generator in the
    # graph and seeds it (PyMC's initial point function) seeds the one the function reads.
    for cached, given in zip(maker.inputs, ins, strict=True):
        if hasattr(cached.variable, "container") and hasattr(given.variable, "container"):
            cached.variable.container = given.variable.container
        cached.variable = given.variable
    return maker


def _save(maker, path: Path) -> None:
    """Write atomically (a reader never sees half a file); a failure only costs the cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            _Pickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(maker)
        os.replace(tmp, path)
        entries = sorted(path.parent.glob("*.pkl"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-MAX_ENTRIES]:
            old.unlink(missing_ok=True)
    except Exception as e:  # noqa: BLE001
        log.warning("compiled function not cached (%s)", e)
        with contextlib.suppress(Exception):
            os.unlink(tmp)


def _key(ins, outs, mode, maker_kwargs) -> str | None:
    """What decides the compiled function, hashed; None when a part has no stable key."""
    from pytensor import config

    try:
        h = hashlib.sha256()
        for part in (
            sys.version,
            *(f"{p} {version(p)}" for p in ("pytensor", "pymc", "numpy")),
            config.get_config_hash(),
            _digest(mode.__getstate__()),
            repr(sorted(maker_kwargs.items())),
        ):
            h.update(part.encode() + b"\0")
        for k, i in enumerate(ins):
            flags = (i.implicit, i.mutable, i.borrow, i.strict, i.allow_downcast)
            h.update(f"in{k}:{type(i.variable).__name__}:{flags}:".encode())
        updates = [i.update for i in ins if i.update is not None]
        outs = list(outs) if isinstance(outs, list | tuple) else [] if outs is None else [outs]
        h.update(f"out:{[getattr(o, 'borrow', None) for o in outs]}".encode())
        results = [getattr(o, "variable", o) for o in outs]
        graph = _graph_text([i.variable for i in ins], results + updates)
        if graph is None:
            return None
        h.update(graph.encode())
        return h.hexdigest()
    except Exception as e:  # noqa: BLE001 - no key: compiled as PyTensor does, uncached
        log.debug("no cache key (%s)", e)
        return None


def _graph_text(inputs, outputs) -> str | None:
    """The graph from `inputs` to `outputs` as text: each input's type, then each node's op
    (`_digest`) and where its inputs come from (the k-th input, node n's j-th output, a
    constant by value), then where each output comes from. None when the graph reads a
    variable that is neither an input nor a constant."""
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import io_toposort

    where = {v: f"in{k}" for k, v in enumerate(inputs)}
    lines = [f"in{k}:{_digest(v.type)}" for k, v in enumerate(inputs)]
    # A graph's nodes share op instances (one `add` for every sum): each pickled once. The
    # ops are held here while their ids key the digests, so an id is never another op's.
    ops = {}
    for n, node in enumerate(io_toposort(list(inputs), list(outputs))):
        sources = []
        for v in node.inputs:
            if v not in where:
                if not isinstance(v, Constant):
                    return None  # an input the caller did not give
                where[v] = "const:" + _constant(v)
            sources.append(where[v])
        if id(node.op) not in ops:
            ops[id(node.op)] = (node.op, _digest(node.op))
        lines.append(f"node{n}:{ops[id(node.op)][1]}:{sources}")
        for j, out in enumerate(node.outputs):
            where[out] = f"n{n}.{j}"
    for v in outputs:
        if v not in where and not isinstance(v, Constant):
            return None
        lines.append(f"out:{where.get(v) or _constant(v)}")
    return "\n".join(lines)


def _constant(v) -> str:
    import numpy as np

    data = v.data
    if isinstance(data, np.ndarray | np.generic):
        data = np.asarray(data)
        raw = f"{data.dtype.str}{data.shape}".encode() + data.tobytes()
        return _digest(v.type) + hashlib.sha256(raw).hexdigest()
    return _digest(v.type) + _digest(data)


def _digest(obj) -> str:
    buffer = io.BytesIO()
    _KeyPickler(buffer, protocol=4).dump(obj)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


# What pickle cannot name: a class or function made at run time (PyMC's CustomDist makes a
# class for each distribution, with the model's `random` function, a lambda, as an attribute).
# It is pickled as a description of its code (`_describe`), and loaded as the caller's own
# object with that description, found in the caller's graph: an entry whose description is
# not there is not loaded.


# Objects pickle names by value, never made at run time: skipped by `persistent_id`, which
# pickle asks about every object (about 200,000 for a warm estimate's keys)
_PLAIN = frozenset({str, int, float, bool, bytes, tuple, list, dict, type(None)})


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if type(obj) in _PLAIN:
            return None
        if isinstance(obj, type | types.FunctionType) and not _importable(obj):
            return _describe(obj)
        return None

    def reducer_override(self, obj):
        # Blockwise caches a closure of its Python loop on its node (`tag.gufunc`), which
        # pickle cannot name and which PyTensor makes again when it is missing: not kept. Not
        # only the graph's nodes hold one: nodes the rewrites removed, still referenced from
        # the function maker, do too (taking it off the graph's nodes alone left the moment
        # matching density's entry unloadable, compiled again in every process).
        from pytensor.compile.builders import OpFromGraph
        from pytensor.graph.utils import Scratchpad

        if isinstance(obj, Scratchpad) and "gufunc" in obj.__dict__:
            state = {k: v for k, v in obj.__dict__.items() if k != "gufunc"}
            return _scratchpad, (state,)
        # OpFromGraph (PyTensor's LogSumExp) caches its gradient's builder, a closure, once a
        # gradient was taken (nutpie's log density): a cache, made again when asked for, so
        # it is pickled empty (the closure left the main model's entry unloadable).
        if isinstance(obj, OpFromGraph) and (obj._lop_op_cache or obj._rop_op_cache is not None):
            state = vars(obj) | {"_lop_op_cache": {}, "_rop_op_cache": None}
            return copyreg.__newobj__, (type(obj),), state
        # A FunctionGraph keeps, in `clients`, the outputs of the nodes its rewrites removed
        # (with no client): not part of the graph, so not in the caller's either, and an entry
        # holding a class made at run time (a CustomDist's) that way was unloadable (nutpie's
        # shape function of a serial case, compiled again in every process).
        from pytensor.graph.fg import FunctionGraph

        if type(obj) is FunctionGraph and any(v not in obj.variables for v in obj.clients):
            state = obj.__getstate__()
            state["clients"] = {v: c for v, c in obj.clients.items() if v in obj.variables}
            return copyreg.__newobj__, (FunctionGraph,), state
        return NotImplemented


def _scratchpad(state: dict):
    """A node's tag as pickled without its cached closure (`_Pickler.reducer_override`)."""
    from pytensor.graph.utils import Scratchpad

    tag = Scratchpad()
    tag.__dict__.update(state)
    return tag


class _KeyPickler(_Pickler):
    """For keys only: an op with an inner graph (OpFromGraph: PyTensor's LogSumExp, LogAddExp)
    pickles its graph's variables with names that differ between processes; it is keyed by
    its class, its flags and its inner graph's text instead (its gradient overrides change
    no forward value, as PyTensor's own equality of these ops says)."""

    def persistent_id(self, obj):
        if type(obj) in _PLAIN:
            return None
        from pytensor.compile.builders import OpFromGraph

        if isinstance(obj, OpFromGraph):
            graph = _graph_text(obj.fgraph.inputs, obj.fgraph.outputs)
            if graph is None:
                raise pickle.PicklingError(f"{obj}: an inner graph without a key")
            cls = type(obj)
            flags = (obj.is_inline, sorted(obj.destroy_map.items()), obj.name)
            return f"ofg {cls.__module__}.{cls.__qualname__}{flags}\n{graph}"
        return super().persistent_id(obj)

    def reducer_override(self, obj):
        from pytensor.misc.frozendict import frozendict

        # A frozendict (an Elemwise's inplace_pattern) caches its hash once something hashed
        # it: a fresh compile does, a load from this cache does not, so the same graph had two
        # keys (the first warm run after a cold one compiled PyMC's initial point again).
        if type(obj) is frozendict:
            return frozendict, (dict(obj),)
        return super().reducer_override(obj)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, live: dict):
        super().__init__(file)
        self.live = live

    def persistent_load(self, pid):
        if pid not in self.live:
            raise pickle.UnpicklingError(f"no {pid[:60]}... in this graph")
        return self.live[pid]


def _made_at_run_time(ins, outs) -> dict:
    """The caller's classes and functions that pickle cannot name, by description: the
    ops' classes (and their bases) and the functions the ops hold."""
    from pytensor.graph.traversal import io_toposort

    outs = list(outs) if isinstance(outs, list | tuple) else [] if outs is None else [outs]
    results = [getattr(o, "variable", o) for o in outs]
    results += [i.update for i in ins if i.update is not None]
    live = {}
    for node in io_toposort([i.variable for i in ins], results):
        held = [*type(node.op).__mro__, *vars(node.op).values()]
        for obj in held:
            if isinstance(obj, type | types.FunctionType) and not _importable(obj):
                live[_describe(obj)] = obj
    return live


def _importable(obj) -> bool:
    """Whether pickle can name `obj` (module and qualified name lead back to it)."""
    found = sys.modules.get(getattr(obj, "__module__", None) or "")
    for part in getattr(obj, "__qualname__", "<>").split("."):
        found = getattr(found, part, None)
    return found is obj


def _describe(obj) -> str:
    """A class or function made at run time as text: its name and code (a function's
    bytecode, constants, names, defaults and closure; a class's bases and attributes)."""
    if isinstance(obj, type):
        # not code: Python's own bookkeeping (`_abc_impl`: ABCMeta's caches; `__slotnames__`:
        # copyreg's, set on a class once an instance is pickled, so a class pickled in the
        # entry and the caller's not yet pickled differed by it, and every entry of a graph
        # with a CustomDist was compiled again in every process)
        skip = {"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "_abc_impl"}
        skip |= {"__slotnames__"}
        parts = [f"{b.__module__}.{b.__qualname__}" for b in obj.__bases__]
        for name, value in sorted(vars(obj).items()):
            if name not in skip:
                value = getattr(value, "__func__", value)  # classmethod, staticmethod
                parts.append(f"{name}={_digest(value)}")
        return f"class {obj.__qualname__}({','.join(parts)})"
    code = obj.__code__
    consts = [_constant_text(c) for c in code.co_consts]
    cells = [_digest(c.cell_contents) for c in obj.__closure__ or ()]
    text = [code.co_code.hex(), *consts, *code.co_names, _digest(obj.__defaults__), *cells]
    digest = hashlib.sha256(str(text).encode()).hexdigest()
    return f"function {obj.__module__}.{obj.__qualname__}:{digest}"


def _constant_text(c) -> str:
    if isinstance(c, types.CodeType):  # a nested function: its bytecode, not its address
        return c.co_code.hex() + str([_constant_text(k) for k in c.co_consts])
    if isinstance(c, frozenset):  # `x in {...}`: its order varies between processes
        return repr(sorted(c, key=repr))
    return repr(c)
