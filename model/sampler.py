"""Sampler settings and the sampler: compile a model once (nutpie, or PyMC's NUTS as a
fallback) and sample it under any pm.Data values, retrying once a fit that fails the
diagnostics (model/diagnostics.py)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from dataclasses import dataclass
from math import prod

import numpy as np
import pymc as pm
import xarray as xr
from pymc.backends.ndarray import NDArray

from model.diagnostics import RETRY_MIN_DRAWS, sample_with_retry
from model.reweight import SAMPLE
from model.timing import SamplingProgress, Stopwatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplerSettings:
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 20241125  # any fixed number; the same seed and inputs give the same numbers
    # "nutpie" (Rust NUTS on numba, the default and fastest here, see benchmarks/), "pymc"
    # (PyMC's NUTS on numba, the fallback if nutpie is missing) or "pymc-c" (PyMC's NUTS on
    # the C backend, PyMC 5's default, kept as the benchmark's baseline).
    sampler: str = "nutpie"
    target_accept: float = 0.9
    # nutpie's mass-matrix adaptation. "draw_diag" (variances of the draws, as PyMC adapts)
    # beat nutpie's own "diag" (draws and gradients) in effective draws per second on the
    # Feb 11 case and on 50-plant programmes, with fewer divergences (benchmarks/README.md).
    # PyMC's samplers ignore it.
    adaptation: str = "draw_diag"
    prior_draws: int = 2000
    cores: int = 2
    # Tuning of a refit that starts where the main fit ended (`Start`): its chains begin at
    # the main fit's draws, in the typical set, so only the step size and mass matrix adapt.
    # 300: on February 11 a source's refit tuned 200 draws missed R-hat (1.013) and was
    # retried; at 300 both refits met the rules (benchmarks/README.md, "Refits that start
    # where the main fit ended"). None: refits start afresh and tune as long as the main fit.
    refit_tune: int | None = 300


def for_model(model: pm.Model, settings: SamplerSettings) -> SamplerSettings:
    """`settings`, with the target acceptance raised to the highest that any of the model's
    sampler coordinates asks for (its transform's `target_accept`, as serials.ShiftedLog on
    sightings on several dates): the geometry needs the smaller steps whoever fits it, and
    the fit's provenance records what it was sampled at."""
    transforms = model.rvs_to_transforms.values()
    need = max((getattr(t, "target_accept", None) or 0.0 for t in transforms), default=0.0)
    if need <= settings.target_accept:
        return settings
    log.info("target acceptance %s, as the model's coordinates ask (not %s)", need,
             settings.target_accept)  # fmt: skip
    return dataclasses.replace(settings, target_accept=need)


def stored_names(model: pm.Model) -> list[str]:
    """Every variable a fit stores, in the model's order: the free variables (on their own
    scale, not the sampler's), the deterministics and the pointwise log densities."""
    sampler_scale = {
        model.rvs_to_values[rv].name for rv in model.free_RVs if model.rvs_to_transforms.get(rv)
    }
    return [v.name for v in model.unobserved_value_vars if v.name not in sampler_scale]


class Sampler:
    """Compiles a model once and samples it under several reading weights."""

    def __init__(self, model: pm.Model, settings: SamplerSettings, watch: Stopwatch | None = None):
        self.model, self.settings = model, for_model(model, settings)
        self.watch = watch or Stopwatch()
        self.watch.mark("other")
        # Every fit starts from the model's own data, whatever an earlier fit changed.
        self.defaults = {v.name: v.get_value() for v in model.data_vars}
        self.name = settings.sampler
        self.compiled = None
        self.retries: list[dict] = []  # fits sampled again (diagnostics.sample_with_retry)
        # Off unless the caller's fits are a report's (fit, fit_programme): calibration's many
        # fits are judged as a set, and retrying the failing ones would change what it measures.
        self.retry = False
        if self.name == "nutpie":
            try:
                import nutpie  # noqa: F401 - is it installed? (compile_nutpie uses it)
            except ImportError:  # pragma: no cover - depends on the environment
                log.warning("nutpie is not installed: falling back to PyMC's NUTS")
                self.name = "pymc"
            else:
                from model.callbacks import compile_nutpie

                self.watch.begin("compiling the model for nutpie")
                # nutpie's compile, with its numba callbacks cached on disk (model/callbacks.py),
                # storing the free variables only: the rest is `expanded` after sampling
                self.compiled = compile_nutpie(model, [v.name for v in model.free_RVs])
        # PyMC's NUTS compiles in its first fit only (PyMCNuts)
        self.pymc = None
        if self.compiled is None:
            self.pymc = PyMCNuts(model, "c" if self.name == "pymc-c" else "numba")
        self.watch.mark("compile")

    @functools.cached_property
    def density(self):
        """The model's log density and every stored variable at unconstrained draws
        (model/moment_match.py), its log density nutpie's when nutpie samples: what turns
        nutpie's draws of the free variables into every variable (`expanded`), and what
        moment matching and reuse evaluate."""
        from model.moment_match import Density

        return Density(self.model, self.stored, nutpie=self.compiled)

    @functools.cached_property
    def stored(self) -> list[str]:
        """`stored_names` of the model, once (PyMC builds the transforms' graphs at each ask)."""
        return stored_names(self.model)

    @functools.cached_property
    def layout(self) -> list[tuple[str, int]]:
        """The free variables' value variables and sizes, in the order nutpie lays them out
        in its unconstrained vector (the model's free_RVs): what a `Start` must match."""
        point = self.model.initial_point()
        names = [self.model.rvs_to_values[v].name for v in self.model.free_RVs]
        return [(name, int(np.size(point[name]))) for name in names]

    def sample(
        self,
        weights: np.ndarray | None,
        seed: int,
        stage: str = "sampling",
        label: str | None = None,
        start: Start | None = None,
        keep_start: bool = False,
        **data: np.ndarray,
    ) -> xr.DataTree:
        """Sample with these reading weights and any other pm.Data values (by name); a fit
        that fails the diagnostics is sampled once more, more carefully (`self.retries`, where
        `label`, else the stage, names it). With `start` (a finished fit's, `Start.take`) the
        chains begin at its draws and tune `start.tune` draws, not the settings' (nutpie
        only; PyMC's NUTS starts as always); `keep_start` keeps each draw's unconstrained
        values in sample_stats for `Start.take`."""
        self.watch.mark("other")
        s = self.settings
        if start is not None and (self.compiled is None or not start.fits(self.layout)):
            start = None  # PyMC's NUTS, or another model's draws: a fresh start
        first = {} if start is None else {"start": start, "tune": start.tune}
        if keep_start:
            first["keep_start"] = True
        first["progress"] = SamplingProgress(self.watch, label or stage)
        first["stage"] = stage
        try:
            if not self.retry or s.chains * s.draws < RETRY_MIN_DRAWS:
                return self._sample(weights, seed, data, **first)
            one, retry = sample_with_retry(
                lambda **over: self._sample(weights, seed, dict(data), **{**first, **over}),
                f"{label or stage}, seed {seed}",
                s.target_accept,
                first.get("tune", s.tune),
            )
            if retry is not None:
                self.retries.append(retry)
            return one
        finally:
            # PyMC's NUTS compiles inside pm.sample, so for it this includes compiling.
            self.watch.mark(stage)

    @property
    def resizable(self) -> bool:
        """Whether `resized` can serve: PyMC's NUTS always; nutpie when its callbacks are
        model/callbacks.py's (another nutpie version's have the sizes built in)."""
        from model.callbacks import sizeless

        return self.compiled is None or sizeless(self.compiled)

    def resized(
        self,
        coords: dict[str, list],
        data: dict[str, np.ndarray],
        settings: SamplerSettings | None = None,
        watch: Stopwatch | None = None,
    ) -> Sampler:
        """This compiled model with its data on the dims of `coords` of other lengths (e.g.
        `obs`, the ledger's rows with candidates' rows appended: model/voi_refit.py), sampled
        at `settings` (else this sampler's), not retried. Nothing compiles: the graph reads
        every size at run time (nutpie: its callbacks are model/callbacks.py's, PyMC: its
        dims are shared variables). Only data on a dim of `coords` may change length, and
        all of it must be in `data` (the returned sampler's defaults); no free variable may
        lie on such a dim (the sampler's parameters stay the same)."""
        if not self.resizable:
            raise ValueError("this nutpie model's callbacks have its sizes built in")
        dims = self.model.named_vars_to_dims
        free = [v.name for v in self.model.free_RVs if set(dims.get(v.name, ())) & set(coords)]
        on = {n for n in self.defaults if set(dims.get(n, ())) & set(coords)}
        if free or on - set(data):
            raise ValueError(
                f"cannot resize {sorted(coords)}: free variables {free} lie on them"
                if free
                else f"cannot resize {sorted(coords)}: no values for {sorted(on - set(data))}"
            )
        for name, value in data.items():
            shape = np.shape(self.defaults[name])
            named = dims.get(name) or (None,) * len(shape)
            want = tuple(
                len(coords[d]) if d in coords else n for d, n in zip(named, shape, strict=True)
            )
            if np.shape(value) != want:
                raise ValueError(f"{name}: expected shape {want}, got {np.shape(value)}")
        if self.compiled is not None:
            self.density  # noqa: B018 - compiled once, shared by every view
        view = copy.copy(self)
        view.settings = settings or self.settings
        view.watch = watch or self.watch
        view.retries, view.retry = [], False
        view.defaults = {**self.defaults, **data}
        if self.compiled is not None:
            from model.callbacks import with_data

            lengths = {d: len(v) for d, v in coords.items()}
            view.compiled = _nutpie_resized(
                with_data(self.compiled, view.defaults), self.model, lengths, coords
            )
        else:
            view.pymc = self.pymc.resized(coords)
        return view

    def _sample(
        self,
        weights: np.ndarray | None,
        seed: int,
        data: dict,
        start: Start | None = None,
        keep_start: bool = False,
        progress: SamplingProgress | None = None,
        stage: str = "sampling",
        **over,
    ) -> xr.DataTree:
        s = dataclasses.replace(self.settings, **over)  # over: a start's or a retry's settings
        if weights is not None:  # None: a programme (each plant has its own weights)
            data["reading_weight"] = weights
        unknown = sorted(set(data) - set(self.defaults))
        if unknown:  # nutpie would only sample without them
            raise KeyError(f"the model has no pm.Data {unknown}")
        data = {**self.defaults, **data}
        if self.compiled is not None:
            import nutpie

            from model.callbacks import with_data

            compiled = with_data(self.compiled, data)
            warm = {}
            if start is not None:
                # nutpie asks the model for each chain's start with a seed of that chain's
                # own random stream: the draw it gets depends on the seed, not on the order
                # in which the chains' threads ask
                compiled = dataclasses.replace(compiled, initial_point_func=start.point)
                warm["initial_step"] = start.step_size  # the search for a first step begins here
            tree = nutpie.sample(
                compiled,
                draws=s.draws,
                tune=s.tune,
                chains=s.chains,
                cores=s.cores,
                seed=seed,
                progress_bar=False,
                progress_callback=progress,  # lines on stderr while a fit samples for long
                progress_rate=1000,
                save_warmup=False,
                target_accept=s.target_accept,
                adaptation=s.adaptation,
                store_unconstrained=True,  # what `expanded` reads
                **warm,
            )
            self.watch.mark(stage, count=False)  # counted once, by `sample`
            tree = self.expanded(tree, data, keep_start)
            self.watch.mark("expanding the draws")
            return tree
        return self.pymc.sample(s, seed, data, progress)

    def expanded(self, tree: xr.DataTree, data: dict, keep_start: bool) -> xr.DataTree:
        """nutpie's fit with every stored variable: the deterministics (and pointwise log
        densities) computed from its unconstrained draws in one batched call of `density`,
        where nutpie would compute them draw by draw in a callback of its own, whose numba
        compile was 35 s of a cold run's 88 (benchmarks/README.md, nineteenth and twentieth
        sessions). The unconstrained draws stay in sample_stats with `keep_start` (for
        `Start.take`), and nowhere else."""
        stats = tree["sample_stats"].to_dataset()
        flat = stats["unconstrained_draw"].transpose(*SAMPLE, ...)
        shape = flat.shape[:2]
        posterior = tree["posterior"].to_dataset()
        rest = [n for n in self.stored if n not in posterior]
        if rest:
            upars = flat.to_numpy().reshape(-1, flat.shape[-1])
            extra = self.density.draws(upars, shape, data, self.compiled.coords, rest)
            extra = extra.assign_coords({d: posterior[d] for d in SAMPLE})
            posterior = posterior.assign(extra.data_vars)
            posterior = posterior[[n for n in self.stored if n in posterior]]  # the model's order
        tree["posterior"] = posterior.assign_attrs(tree["posterior"].attrs)
        if not keep_start:
            drop = ["unconstrained_draw", "unconstrained_parameter"]
            tree["sample_stats"] = stats.drop_vars(drop, errors="ignore")
        for group in ("unconstrained_posterior", "warmup_unconstrained_posterior"):
            if group in tree.children:
                del tree[group]
        return tree


# Where a refit's chains start: from the outer half of the main fit's draws (by their
# standardised distance from its mean), so the chains begin further apart than two typical
# draws would, and R-hat can still see chains that disagree (a mode one of them missed).
START_OUTER_QUANTILE = 0.5


@dataclass(frozen=True)
class Start:
    """Where a refit starts: a finished fit's draws, on the sampler's unconstrained scale
    (each free variable's values by its value variable's name, one row a draw), the step
    size it ended with, and how many draws a chain started here tunes."""

    values: dict[str, np.ndarray]  # value variable -> (draws, size)
    step_size: float
    tune: int

    @classmethod
    def take(cls, tree: xr.DataTree, layout: list[tuple[str, int]], tune: int) -> Start | None:
        """The start a fit sampled with `keep_start` leaves, its unconstrained values taken
        out of `tree` (they are no result); None for a fit without them (PyMC's NUTS)."""
        if "unconstrained_draw" not in tree["sample_stats"]:
            return None
        stats = tree["sample_stats"].to_dataset()
        flat = stats["unconstrained_draw"].to_numpy()
        flat = flat.reshape(-1, flat.shape[-1])  # chain and draw into one axis
        tree["sample_stats"] = stats.drop_vars("unconstrained_draw")
        # outer half: squared distance from the mean in posterior standard deviations
        z = (flat - flat.mean(axis=0)) / np.where(flat.std(axis=0) > 0, flat.std(axis=0), 1.0)
        distance = (z**2).sum(axis=1)
        outer = flat[distance >= np.quantile(distance, START_OUTER_QUANTILE)]
        values, at = {}, 0
        for name, size in layout:
            values[name] = outer[:, at : at + size]
            at += size
        # after tuning a chain's step size stays the one it ended tuning with
        step_size = float(np.median(stats["step_size"].isel(draw=-1)))
        return cls(values, step_size, int(tune))

    def fits(self, layout: list[tuple[str, int]]) -> bool:
        """Whether a model of this `layout` (Sampler.layout) has the same free variables,
        transforms and sizes in the same order (one with other prior families may not: it
        starts afresh)."""
        return [(n, v.shape[1]) for n, v in self.values.items()] == layout

    def point(self, seed: int) -> np.ndarray:
        """The start of the chain whose random stream gave `seed`: one of the draws, its
        variables in the compiled model's order (`fits`)."""
        n = len(next(iter(self.values.values())))
        row = np.random.default_rng(seed).integers(n)
        return np.concatenate([v[row] for v in self.values.values()]).astype("float64")


class PyMCNuts:
    """PyMC's NUTS on a model compiled once: the fallback when nutpie is missing, and the
    benchmarks' C-backend baseline. A fit runs pm.sample's own initialisation and sampler
    (jitter+adapt_diag, a fresh step each fit: mass matrix and step size adapted anew, from
    the seeds pm.sample would draw), but what pm.sample compiles or derives in every call is
    made once: the log density and its gradient and the initial point (`reusable`), the
    function that records each draw (`_Recorder`), and the choice of step method (symbolic
    gradients of the whole model, 4.6 s a fit). What is left each fit is one relink of the
    compiled log density (about 1.7 s) and a start point per chain (constants, compiled by
    Python's VM)."""

    def __init__(self, model: pm.Model, backend: str):
        from pymc.pytensorf import resolve_backend_compile_kwargs

        self.model, self.backend = reusable(model), backend
        self.compile_kwargs = resolve_backend_compile_kwargs(backend, None)
        self.trace = None
        # the labels of each dim, set with every fit's data: a resized view (`resized`) and
        # this one take turns on the one compiled copy
        self.coords = {d: v for d, v in self.model.coords.items() if v is not None}

    def resized(self, coords: dict[str, list]) -> PyMCNuts:
        """The same compiled copy with these dims' labels (and lengths: Sampler.resized); its
        own recorder, made at its first fit for the new shapes."""
        view = copy.copy(self)
        view.coords, view.trace = {**self.coords, **coords}, None
        return view

    def sample(
        self, s: SamplerSettings, seed: int, data: dict, progress: SamplingProgress | None = None
    ) -> xr.DataTree:
        from pymc.util import get_random_generator

        with self.model:
            pm.set_data(data, coords=self.coords)
            if self.trace is None:  # after set_data: it evaluates the model at its start
                self.trace = _Recorder(model=self.model)
            # pm.sample's initialisation (jitter+adapt_diag) with the chains' seeds it draws
            chains = get_random_generator(seed).spawn(s.chains)
            start, step = pm.init_nuts(
                init="jitter+adapt_diag",
                chains=s.chains,
                random_seed=[rng.integers(2**30) for rng in chains],
                progressbar=False,
                quiet=True,
                tune=s.tune,
                compile_kwargs=self.compile_kwargs,
                target_accept=s.target_accept,
            )
            return pm.sample(
                draws=s.draws,
                tune=s.tune,
                chains=s.chains,
                cores=s.cores,
                random_seed=seed,
                step=step,
                initvals=start,
                trace=self.trace,
                nuts_sampler="pymc",
                backend=self.backend,
                progressbar=False,
                # progress lines on stderr (its own bar is off: it is not a log)
                callback=progress and progress.pymc_callback(s.chains, s.tune + s.draws),
            )


class _Recorder(NDArray):
    """PyMC's in-memory trace, whose copies share its compiled function but not its arrays.
    pm.sample copies the trace it is given for each chain with copy.copy, which shares the
    arrays too: every chain would write its draws into the same ones (tests/test_sampler.py
    compares the draws with pm.sample's own)."""

    def __copy__(self):
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        new.samples, new._stats, new.draws, new.draw_idx = {}, None, None, 0
        return new


def reusable(model: pm.Model) -> pm.Model:
    """A copy of `model` whose compiled functions PyMC caches across pm.sample calls,
    whatever pm.Data values are set between them (same shapes).

    A plain model recompiles them in every pm.sample. PyMC 6's `freeze_model` caches them,
    but also turns into constants the pm.Data that free variables depend on, here the priors'
    parameters, which a scenario's refit changes (set_data on one then raises). So this is
    freeze_model with every pm.Data and dim left as it is: the cached functions read the
    data's values at each call. The copy's graph is the model's, rewritten in another order:
    its gradient can differ from the model's in the last bits, so the draws are pm.sample's
    in law, not bit for bit (bit for bit on a small model: tests/test_sampler.py)."""
    from pymc.model.core import FrozenModel
    from pymc.model.transform.optimization import freeze_dims_and_data

    copy = freeze_dims_and_data(model, dims=[], data=[])
    # The copy lists its variables in graph order; the model's order decides where each sits
    # in the sampler's vector, so each gets the start point and momentum it gets from
    # pm.sample on the model as built.
    for group in ("free_RVs", "observed_RVs", "potentials", "deterministics"):
        order = {v.name: i for i, v in enumerate(getattr(model, group))}
        getattr(copy, group).sort(key=lambda v: order.get(v.name, len(order)))
    copy.__class__ = FrozenModel  # as freeze_model retypes its copy: its functions are cached
    return copy


def _nutpie_resized(compiled, model: pm.Model, lengths: dict[str, int], coords: dict):
    """nutpie's compiled model (its data already set, `with_data`) told the new lengths of
    `lengths`' dims: what it reads of the sizes at run time (the draws' values per draw,
    `n_expanded`, and each variable's shape and labels, by the model's dims). The free
    variables' sizes are unchanged (Sampler.resized checks it)."""
    import pandas as pd

    dims = model.named_vars_to_dims
    names, _, shapes = compiled.shape_info
    new = [
        tuple(lengths.get(d, n) for d, n in zip(dims[name], shape, strict=True))
        if name in dims
        else tuple(shape)
        for name, shape in zip(names, shapes, strict=True)
    ]
    slices, count = [], 0
    for shape in new:
        slices.append(slice(count, count + prod(shape)))
        count += prod(shape)
    return dataclasses.replace(
        compiled,
        n_expanded=count,
        shape_info=(list(names), slices, new),
        _shapes=dict(zip(names, new, strict=True)),
        _coords={**compiled.coords, **{d: pd.Index(v) for d, v in coords.items()}},
    )
