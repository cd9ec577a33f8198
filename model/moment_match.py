"""Importance-weighted moment matching (Paananen et al. 2021, "Implicitly adaptive importance
sampling"): when PSIS weights from the main fit to a target cannot be trusted (Pareto k >
0.7), move the main fit's draws by an affine map in the unconstrained space (match the
weighted mean, then the marginal variances, then the covariance) until the weights of the
moved draws can be. Every draw is moved by the same map (not arviz-stats' default "split",
half moved and half kept): each chain stays a chain, so the result's diagnostics are read as
a reweighted result's.

The target here is the same model under other pm.Data values: a row or a source left out
(`row_weight` 0), a scenario's prior parameters. So one compiled log density, with the data
as inputs, serves every target (`Density`); arviz-stats' `loo_moment_match` covers only a
single row left out and returns no draws, which the checks need (the row's or source's
refit node). A moment-matched result is held to the same rules as a reweighted one
(reweight.refit_reason): fit.py refits when they fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from model import compiled
from model.loo import PARETO_K
from model.reweight import SAMPLE, Weights, psis

MAX_ITERATIONS = 30  # as arviz-stats' loo_moment_match and loo's R package
MOMENT_MATCHED = "moment matched"  # a saved result's `method`


class Density:
    """The model's joint log density (with the transforms' Jacobians) at draws in the
    unconstrained space, as a function of every pm.Data value; the draws of `names` (free
    variables or deterministics) at those points, batched; and the main posterior's draws
    mapped to the unconstrained space. Compiled once per model, with numba ("FAST_RUN" is
    numba in PyTensor 3: it jits each function at its first call, and caches it on disk),
    its rewritten graphs from the disk cache (model/compiled.py). With `nutpie` (the model
    nutpie compiled) the log density is nutpie's own callback, point by point on a thread a
    core (about 1.2x the batched one's time, and no second compile of it: benchmarks/
    README.md, twentieth session); else a batched one, compiled at its first use. The C
    backend evaluates the batched density 3-4 times slower (benchmarks/README.md, "The side
    compiles")."""

    def __init__(self, model, names: list[str], nutpie=None):
        import pytensor.tensor as pt
        from pytensor.graph.replace import graph_replace, vectorize_graph

        point = model.initial_point()
        self.value_vars = list(model.value_vars)
        self.initial = np.concatenate([np.ravel(point[v.name]) for v in self.value_vars])
        self.shapes = [point[v.name].shape for v in self.value_vars]
        sizes = [int(np.prod(s, dtype=int)) for s in self.shapes]
        self.slices = np.split(np.arange(sum(sizes)), np.cumsum(sizes)[:-1])
        self.names = names
        # pm.Data as inputs: a target is the same graph with other values
        self.data_names = [d.name for d in model.data_vars]
        symbols = {d: d.type(name=d.name) for d in model.data_vars}
        blocks = [pt.matrix(f"upars__{v.name}") for v in self.value_vars]
        batched = {
            v: b.reshape((b.shape[0], *s))
            for v, b, s in zip(self.value_vars, blocks, self.shapes, strict=True)
        }
        inputs = [*blocks, *symbols.values()]
        # A parameter check that fails raises, for the whole batch: PyMC's rewrite of the
        # checks into -inf (pm.compile's) would, once vectorised, give every point -inf when
        # one point fails (its `all` spans the batch). nutpie's callback gives -inf per point.
        kw = {"mode": "FAST_RUN", "on_unused_input": "ignore"}
        self.nutpie = nutpie
        if nutpie is not None and nutpie.shape_info[0][: len(blocks)] != [
            v.name for v in self.value_vars
        ]:
            raise ValueError("nutpie's unconstrained layout is not the model's value variables'")

        def batched_logp(to_blocks=batched):  # `batched` is rebound below
            logp = graph_replace(model.logp(jacobian=True, sum=True), symbols, strict=False)
            return compiled.function(inputs, vectorize_graph(logp, to_blocks), **kw)

        self._batched_logp, self._logp = batched_logp, None
        outputs = [model.replace_rvs_by_values([model[n]])[0] for n in names]
        outputs = graph_replace(outputs, symbols, strict=False)
        self._outputs = compiled.function(inputs, vectorize_graph(outputs, batched), **kw)
        # each output's dims, as nutpie (ArviZ) names them in a posterior
        named = model.named_vars_to_dims
        self.dims = {
            n: tuple(
                d if d is not None else f"{n}_dim_{i}"
                for i, d in enumerate(named.get(n) or (None,) * model[n].ndim)
            )
            for n in names
        }
        # constrained -> unconstrained, per free variable
        self.free = [model.values_to_rvs[v] for v in self.value_vars]
        self._constrained = [
            pt.tensor(dtype="float64", shape=(None,) * (rv.ndim + 1), name=rv.name)
            for rv in self.free
        ]
        # The transforms' parameters are constants, pm.Data, or other free variables
        # (serials.ShiftedLog's shift): those are read at the same draw, never drawn afresh
        # from their priors (what an RV left in the graph would do). One draw's value of each
        # free variable stands in for it (replaced with the pm.Data in one graph_replace,
        # which copies the graph), then the batched draws for those.
        one = {rv: rv.type(name=rv.name) for rv in self.free}
        batched = dict(zip(one.values(), self._constrained, strict=True))
        forward = []
        for rv, x in zip(self.free, self._constrained, strict=True):
            transform = model.rvs_to_transforms[rv]
            if transform is None:
                forward.append(x)
                continue
            y = transform.forward(one[rv], *rv.owner.inputs)
            y = graph_replace(y, {**symbols, **one}, strict=False)
            forward.append(vectorize_graph(y, batched))
        flat = [f.reshape((f.shape[0], -1)) for f in forward]
        self._forward = compiled.function(
            [*self._constrained, *symbols.values()], pt.concatenate(flat, axis=1), **kw
        )
        self.defaults = {d.name: d.get_value() for d in model.data_vars}

    def _data(self, data: dict | None) -> list[np.ndarray]:
        values = {**self.defaults, **(data or {})}
        # own writable C arrays: numba compiles (and caches) one version per array layout and
        # flags, and `warm` must call the version the run calls
        return [
            np.array(values[n], dtype=self.defaults[n].dtype, order="C") for n in self.data_names
        ]

    def warm(self, model, logp: bool = True) -> xr.Dataset:
        """Call each compiled function once, at the model's initial point: numba compiles at
        the first call and caches on disk (model/warmup.py's child); the batched log density
        only with `logp` (a fit sampled by nutpie uses nutpie's). Returns that point as a
        one-draw posterior of the free variables, for other functions to be called at."""
        from pytensor.compile.maker import function  # PyTensor's own: nothing cached

        constrain = function(  # Python mode: no compile to wait for
            self.value_vars,
            model.replace_rvs_by_values(self.free),
            mode="FAST_COMPILE",
            on_unused_input="ignore",
        )
        blocks = [self.initial[i].reshape(s) for i, s in zip(self.slices, self.shapes, strict=True)]
        point = xr.Dataset(
            {
                rv.name: (("chain", "draw", *(f"{rv.name}_dim_{i}" for i in range(np.ndim(v)))),
                          np.asarray(v, dtype="float64")[None, None])
                for rv, v in zip(self.free, constrain(*blocks), strict=True)
            }
        )  # fmt: skip
        upars = self.unconstrained(point)
        if logp:
            self.logp(upars)
        self._outputs(*self._blocks(upars), *self._data(None))
        return point

    def _blocks(self, upars: np.ndarray) -> list[np.ndarray]:
        return [np.ascontiguousarray(upars[:, s]) for s in self.slices]

    def unconstrained(self, posterior: xr.Dataset, data: dict | None = None) -> np.ndarray:
        """(chain x draw, parameters): the posterior's draws, chain after chain, through the
        transforms under these pm.Data values (the main fit's otherwise): those the draws
        were sampled under, as an interval's bounds are a scenario's."""
        draws = []
        for rv in self.free:
            x = posterior[rv.name].transpose(*SAMPLE, ...).to_numpy()
            # a C array whatever the posterior's order: the version `warm` compiled
            draws.append(np.array(x.reshape(-1, *x.shape[2:]), dtype="float64", order="C"))
        return np.asarray(self._forward(*draws, *self._data(data)))

    def logp(self, upars: np.ndarray, data: dict | None = None) -> np.ndarray:
        """Joint log density per draw under these pm.Data values (the main fit's otherwise)."""
        if self.nutpie is not None:
            from model.callbacks import log_densities

            return log_densities(self.nutpie, upars, {**self.defaults, **(data or {})})
        if self._logp is None:
            self._logp = self._batched_logp()
        return np.asarray(self._logp(*self._blocks(upars), *self._data(data)))

    def draws(
        self,
        upars: np.ndarray,
        shape: tuple[int, int],
        data: dict | None,
        coords: xr.Dataset | dict,
        names: list[str] | None = None,
    ) -> xr.Dataset:
        """The `names` (default: all of the density's) at these points under these pm.Data
        values, as (chain, draw, ...) draws on the model's dims, with the coords of `coords`
        (a posterior's, or labels by dim)."""
        values = self._outputs(*self._blocks(upars), *self._data(data))
        out = {}
        for name, v in zip(self.names, values, strict=True):
            if names is not None and name not in names:
                continue
            v = np.asarray(v)
            out[name] = ((*SAMPLE, *self.dims[name]), v.reshape(*shape, *v.shape[1:]))
        ds = xr.Dataset(out)
        labels = dict(coords.coords if isinstance(coords, xr.Dataset) else coords)
        # a dim without labels is numbered, as ArviZ numbers it
        return ds.assign_coords(
            {d: labels.get(d, np.arange(n)) for d, n in ds.sizes.items() if d not in SAMPLE}
        )


@dataclass(frozen=True)
class Matched:
    """The moved draws (unconstrained, chain after chain) and their PSIS weights to the
    target; the k of plain reweighting; the accepted steps; and the Pareto k of the weights
    from the moved draws back to the main posterior (`k_posterior`, recorded: above 0.7 the
    moved draws no longer cover the posterior they came from, which matters for LOO's elpd
    but not for expectations under the target, which rest on the target's weights)."""

    upars: np.ndarray
    weights: Weights
    k_before: float
    steps: int
    k_posterior: float


def _affine_step(upars: np.ndarray, w: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The map x -> A x + b that moves the draws' mean to their weighted mean and (`scale`)
    their marginal variances, or (`cov`) their covariance, to the weighted ones."""
    mean, wmean = upars.mean(axis=0), w @ upars
    d = upars.shape[1]
    if kind == "shift":
        a = np.eye(d)
    elif kind == "scale":
        var = upars.var(axis=0, ddof=1)
        wvar = (w @ (upars - wmean) ** 2) * len(w) / (len(w) - 1)
        ok = (var > 1e-9) & (wvar > 1e-9)
        scale = np.ones(d)
        scale[ok] = np.sqrt(wvar[ok] / var[ok])
        a = np.diag(scale)
    else:
        cov = np.cov(upars, rowvar=False, ddof=1)
        wcov = np.cov(upars, rowvar=False, aweights=w, ddof=1)
        a = np.linalg.cholesky(_positive(wcov)) @ np.linalg.inv(np.linalg.cholesky(_positive(cov)))
    return a, wmean - a @ mean


def _positive(cov: np.ndarray) -> np.ndarray:
    low = np.min(np.linalg.eigvalsh(cov))
    return cov + np.eye(len(cov)) * (1e-6 - low) if low <= 0 else cov


def _weights(log_ratio: np.ndarray, shape: tuple[int, int]) -> Weights:
    ratio = np.where(np.isnan(log_ratio), -np.inf, log_ratio)
    return psis(xr.DataArray(ratio.reshape(shape), dims=SAMPLE))


def trusted_k(weights: Weights) -> bool:
    return weights.pareto_k <= PARETO_K


def match(
    log_target,
    log_posterior,
    upars: np.ndarray,
    shape: tuple[int, int],
    done=trusted_k,
    max_iterations: int = MAX_ITERATIONS,
) -> Matched:
    """Moment matching of the main fit's draws `upars` ((chains x draws, parameters), chain
    after chain; `shape` (chains, draws)) to a target: `log_target(upars)` and
    `log_posterior(upars)` give the target's and the main posterior's unnormalised log
    density per draw. Steps as Paananen et al.: the first of shift, scale, covariance that
    improves the weights is kept (a lower k; once k <= 0.7, a higher efficiency at k <= 0.7),
    and it starts again, until `done(weights)`.

    Every draw is moved by the same map (no split of the draws): each chain stays a chain,
    so the result's R-hat and ESS are those of its draws, as for a reweighted result."""
    base = log_posterior(upars)
    weights = _weights(log_target(upars) - base, shape)
    k_before = weights.pareto_k
    moved, steps = upars, 0
    kinds = ["shift", "scale"] + (["cov"] if len(upars) >= 10 * upars.shape[1] else [])
    while steps < max_iterations and not done(weights):
        w = np.exp(weights.log_weight.to_numpy().ravel())
        for kind in kinds:
            try:
                a, b = _affine_step(moved, w, kind)
            except np.linalg.LinAlgError:
                continue
            trial = moved @ a.T + b
            # the proposal's density at the moved draw is the posterior's at the draw
            # (the map is affine: its Jacobian is a constant, which normalisation removes)
            tried = _weights(log_target(trial) - base, shape)
            if _better(tried, weights):
                moved, weights, steps = trial, tried, steps + 1
                break
        else:
            break  # no step improves the weights
    k_posterior = 0.0
    if steps:
        k_posterior = _weights(log_posterior(moved) - base, shape).pareto_k
    return Matched(moved, weights, k_before, steps, k_posterior)


def _better(new: Weights, old: Weights) -> bool:
    if old.pareto_k > PARETO_K:
        return new.pareto_k < old.pareto_k
    return new.pareto_k <= PARETO_K and new.efficiency > old.efficiency
