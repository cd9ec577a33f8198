"""nutpie's numba callbacks cached on disk, so a model compiles once across processes.

nutpie wraps PyTensor's compiled log-density and deterministics functions (which PyTensor
already caches on disk) in two numba C callbacks. numba cannot cache those as nutpie writes
them: each closes over a dispatcher (pickled with a random uuid) and names the shared data by
fresh uuids, so every process type-infers and lowers them again, with the library functions
they use: about 34 s of a 51 s warm compile of the February 11 model (benchmarks/README.md).

`compile_nutpie` calls nutpie's own compile with three changes: the shared data are named in
order (s0, s1, ...) instead of by random uuids; the two callbacks are ours (`_logp_callback`,
`_expand_callback`: nutpie's, with the sizes taken from nutpie's arguments instead of baked
in); and each is cached under a key made of what decides its machine code: PyTensor's own
cache key of the function it wraps, the dtype and rank of each shared array, the bytecode,
and the nutpie and numba versions. Data values and sizes are not in the key (they are read at
run time), so a ledger with a row more reuses the cache when the graph is the same
(model/build.py keeps the rows' arrays in pm.Data for that). When any part has no stable key
(a PyTensor function that PyTensor does not cache, another nutpie), the callback is compiled
as nutpie does, uncached. The draws are nutpie's own (tests/test_callbacks.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import types
from importlib.metadata import version

import numba
import numpy as np


def compile_nutpie(model, var_names=None):
    """nutpie.compile_pymc_model(model, backend="numba", var_names=var_names), its callbacks
    cached on disk and the PyTensor functions they wrap loaded from model/compiled.py's cache
    (their graph rewrites were 4-5 s of a warm process's compile)."""
    import nutpie
    import nutpie.compile_pymc as nutpie_pymc

    from model import compiled

    with _ordered_keys(nutpie_pymc), _cached_cfuncs(), compiled.through_cache():
        return nutpie.compile_pymc_model(model, backend="numba", var_names=var_names)


def with_data(compiled, data: dict[str, np.ndarray]):
    """nutpie's compiled model with these pm.Data values, of those it reads: storing the free
    variables only (model/sampler.py), it does not read data that only deterministics read."""
    reads = {var.name for var in compiled.shared_var_keys}
    return compiled.with_data(**{k: v for k, v in data.items() if k in reads})


def log_densities(compiled, upars: np.ndarray, data: dict[str, np.ndarray]) -> np.ndarray:
    """The model's log density (with the transforms' Jacobians, as nutpie samples it) at each
    row of `upars` (points in nutpie's unconstrained layout) under these pm.Data values,
    through nutpie's own compiled callback: no second compile of the log density (a batched
    one cost 37 s of a cold run, benchmarks/README.md twentieth session). The points are
    split between threads, one a core: ctypes lets go of the GIL during each call, and nutpie
    calls the callback from several threads itself. A point where the density is not finite
    gives its value; a callback that fails raises."""
    import ctypes
    import os
    from concurrent.futures import ThreadPoolExecutor

    model = with_data(compiled, data)  # it holds the arrays its user data point to
    signature = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, *[ctypes.c_void_p] * 4)
    call = signature(model.compiled_logp_func.address)  # (dim, x, gradient, logp, user data)
    points = np.ascontiguousarray(upars, dtype="float64")
    out = np.empty(len(points))
    user_data = model.user_data.ctypes.data

    def part(rows: range) -> None:
        dim = points.shape[1]
        grad, logp = np.empty(dim), np.empty(())  # each thread its own
        at, step = points.ctypes.data, points.strides[0]
        for i in rows:
            code = call(dim, at + i * step, grad.ctypes.data, logp.ctypes.data, user_data)
            # 0: done; 3 and 4: a gradient or density not finite, the density written anyway
            if code not in (0, 3, 4):
                raise RuntimeError(f"nutpie's log density failed (code {code}) at point {i}")
            out[i] = logp[()]

    threads = max(1, min(len(os.sched_getaffinity(0)), len(points) // 256))
    bounds = np.linspace(0, len(points), threads + 1).astype(int)
    parts = [range(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if threads == 1:
        part(parts[0])
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(part, parts))  # list: raises what a thread raised
    return out


@contextlib.contextmanager
def _ordered_keys(module):
    """nutpie names each shared array by uuid4().hex; the same names in every process
    (in nutpie's order of the shared variables) keep the callbacks' code the same."""
    counter = itertools.count()

    class _Ordered:
        def __init__(self):
            self.hex = f"s{next(counter)}"

    original = module.uuid4
    module.uuid4 = _Ordered
    try:
        yield
    finally:
        module.uuid4 = original


@contextlib.contextmanager
def _cached_cfuncs():
    """numba.cfunc, as nutpie calls it, compiled through a cache keyed by `_fingerprint`."""
    import numba

    original = numba.cfunc

    def cfunc(sig, **options):
        def compile_one(pyfunc):
            own = _sizeless(pyfunc)
            key = None if own is None else _fingerprint(own)
            if key is None:  # uncached, but ours where we have it: sizes read at run time
                return original(sig, **options)(pyfunc if own is None else own)
            return _compile_keyed(own, sig, options, f"{key}|{sig}")

        return compile_one

    numba.cfunc = cfunc
    try:
        yield
    finally:
        numba.cfunc = original


# nutpie's two callbacks (nutpie 0.16: `_make_c_logp_func`, `_make_c_expand_func`) as
# functions of the sizes nutpie passes them, where nutpie's close over the model's numbers of
# parameters and of draws' values: the same machine code then serves a ledger with one row
# more (more values per draw). `_extract` is each model's own (nutpie's `make_extraction_fn`:
# the shared data from the user-data pointer, then PyTensor's function), set in a copy of
# these functions' globals by `_sizeless`.
_extract = None


def _logp_callback(dim, x_, out_, logp_, user_data_):
    try:
        x = numba.carray(x_, (dim,))
        out = numba.carray(out_, (dim,))
        logp = numba.carray(logp_, ())
        logp_val, grad = _extract(x, user_data_)
        if grad.shape[0] != dim:
            return -1
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:  # noqa: BLE001 - a C callback reports failure by its return code
        return 1
    return 0


def _expand_callback(dim, expanded, x_, out_, user_data_):
    try:
        x = numba.carray(x_, (dim,))
        out = numba.carray(out_, (expanded,))
        (values,) = _extract(x, user_data_)
        if values.shape[0] != expanded:
            return -1
        out[...] = values
    except Exception:  # noqa: BLE001
        return -2
    return 0


_CALLBACKS = {"logp_numba": _logp_callback, "expand_numba": _expand_callback}


def sizeless(compiled) -> bool:
    """Whether a nutpie model's callbacks are ours, which read every size at run time, so
    that it samples data of other lengths (model/sampler.py `Sampler.resized`)."""
    funcs = (compiled.compiled_logp_func, compiled.compiled_expand_func)
    codes = [getattr(getattr(f, "_pyfunc", None), "__code__", None) for f in funcs]
    return codes == [_logp_callback.__code__, _expand_callback.__code__]


def _sizeless(pyfunc):
    """Our version of one of nutpie's callbacks, with nutpie's `extract`; None for another
    function (a nutpie version that builds its callbacks differently)."""
    template = _CALLBACKS.get(pyfunc.__name__)
    names = pyfunc.__code__.co_freevars
    if template is None or "extract" not in names:
        return None
    extract = pyfunc.__closure__[names.index("extract")].cell_contents
    return types.FunctionType(
        template.__code__, {**template.__globals__, "_extract": extract}, template.__name__
    )


def _compile_keyed(pyfunc, sig, options, key):
    from numba.core import sigutils
    from numba.core.ccallback import CFunc
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    digest = hashlib.sha256(key.encode()).hexdigest()
    # PyTensor's cache locator puts the files in its numba cache folder, named by the key.
    CACHED_SRC_FUNCTIONS[pyfunc] = f"nutpie_callback_{digest}"
    res = CFunc(pyfunc, sigutils.normalize_signature(sig), locals={}, options=options)
    res._cache = _KeyedCache(pyfunc, digest)
    res.compile()
    return res


def _keyed_cache_class():
    from numba.core.caching import FunctionCache

    class KeyedCache(FunctionCache):
        """numba's function cache with our key in place of the closure's pickle (which holds
        dispatchers with random uuids, so it never matches in another process)."""

        def __init__(self, py_func, key):
            super().__init__(py_func)
            self._key = key

        def _index_key(self, sig, codegen):
            return (sig, codegen.magic_tuple(), self._key)

    return KeyedCache


def _KeyedCache(py_func, key):  # noqa: N802 - a class built on first use (numba imports late)
    return _keyed_cache_class()(py_func, key)


def _fingerprint(obj, seen=None) -> str | None:
    """What decides the machine code of a callback, as text; None when a part has no stable
    key. Functions: their bytecode, constants and closure; numba dispatchers of PyTensor:
    PyTensor's cache key; arrays: dtype and rank only (their values are read at run time)."""
    from numba.core.dispatcher import Dispatcher
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return "<seen>"
    seen.add(id(obj))
    if isinstance(obj, Dispatcher):
        pytensor_key = CACHED_SRC_FUNCTIONS.get(obj.py_func)
        if pytensor_key is not None:
            return f"pytensor:{pytensor_key}"
        return _fingerprint(obj.py_func, seen)
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        # a nested function's code object would print its memory address: its bytecode instead
        consts = [
            c.co_code.hex() if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts
        ]
        parts = [obj.__qualname__, code.co_code.hex(), *consts]
        if "_extract" in obj.__code__.co_names:  # our callbacks: nutpie's extract function
            part = _fingerprint(obj.__globals__["_extract"], seen)
            if part is None:
                return None
            parts.append(part)
        for cell in obj.__closure__ or ():
            part = _fingerprint(cell.cell_contents, seen)
            if part is None:
                return None
            parts.append(part)
        if obj.__module__.startswith("nutpie"):
            parts.append(f"nutpie {version('nutpie')}, numba {version('numba')}")
        return "(" + ",".join(parts) + ")"
    if isinstance(obj, np.ndarray):
        return f"array({obj.dtype.str},{obj.ndim})"
    if isinstance(obj, (tuple, list)):
        parts = [_fingerprint(item, seen) for item in obj]
        return None if None in parts else "[" + ",".join(parts) + "]"
    if isinstance(obj, (int, float, str, bytes, bool, np.dtype, np.generic, type(None))):
        return repr(obj)
    if isinstance(obj, range):
        return repr(obj)
    if isinstance(obj, types.ModuleType):  # `import numba` inside nutpie's functions
        return f"module:{obj.__name__}"
    # numba intrinsics and overload stubs made inside nutpie: their behaviour is fixed by the
    # code that made them (nutpie's version, in the function's key) and the values above.
    name = getattr(obj, "__qualname__", None) or getattr(obj, "_name", None)
    if name is not None and type(obj).__module__.startswith(("numba", "nutpie")):
        return f"{type(obj).__name__}:{name}"
    return None
