"""Results under another reading of the size ratio or other priors, from the main fit's draws.

The posterior under one reading alone is the mixture posterior reweighted by that reading's
responsibility (its `reading_probability` per draw, over its prior weight); the posterior
under other priors of the same families is the posterior reweighted by the prior ratio.
Pareto-smoothed importance sampling (PSIS, Vehtari et al. 2024; arviz-stats) stabilises the
weights and its k says when they cannot be trusted: fit.py refits through the compiled model
when k > PARETO_K or when the reweighted effective sample size is below the diagnostics'
threshold, so a reweighted result is held to the same rules as a refit.

A reweighted result is saved as the main fit's draws of the refit variables plus
`log_weight` (normalised PSIS log weights per draw); its intervals are weighted quantiles
and its ESS that of the draws times the importance-sampling efficiency 1 / sum(w^2) / n.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import xarray as xr

from model import compiled
from model.diagnostics import MAX_RHAT, MIN_ESS_BULK, MIN_ESS_TAIL
from model.loo import PARETO_K

SAMPLE = ("chain", "draw")
LOG_WEIGHT = "log_weight"  # the variable that marks a saved result as reweighted
# What a source left out keeps of its rows (for the source-influence check): no fit's rules
# cover them (the main fit's and a refit's R-hat and ESS are of diagnostics.CHECKED)
ROW_PREDICTIONS = ["predicted", "measurement_sd"]


@dataclass(frozen=True)
class Weights:
    """PSIS log weights (normalised, dims chain and draw), their Pareto k, and the
    importance-sampling efficiency 1 / sum(w^2) / n (1 when every weight is equal)."""

    log_weight: xr.DataArray
    pareto_k: float
    efficiency: float


def psis(log_ratio: xr.DataArray) -> Weights:
    """Pareto-smoothed importance weights for these log density ratios (target over the
    sampled posterior), per draw."""
    values = log_ratio.to_numpy()
    uniform = xr.full_like(log_ratio.transpose(*SAMPLE), -np.log(values.size), dtype=float)
    if not np.isfinite(values).all():  # e.g. a reading of weight 0 in the main fit: refit
        return Weights(uniform.rename(LOG_WEIGHT), np.inf, 0.0)
    if np.ptp(values) == 0.0:  # the same target: every draw counts alike
        return Weights(uniform.rename(LOG_WEIGHT), 0.0, 1.0)
    # arviz-stats' psislw smooths the weights of -input (it is written for LOO, where the
    # ratios are 1 / likelihood), hence the minus sign.
    log_w, k = (-log_ratio).azstats.psislw(dim=list(SAMPLE))
    log_w = log_w.transpose(*SAMPLE)
    log_w = log_w - _logsumexp(log_w.to_numpy())
    w = np.exp(log_w.to_numpy())
    return Weights(log_w.rename(LOG_WEIGHT), float(k), float(1.0 / np.sum(w**2) / w.size))


def _logsumexp(x: np.ndarray) -> float:
    top = np.max(x)
    return float(top + np.log(np.sum(np.exp(x - top))))


def reading_log_ratio(posterior: xr.Dataset, reading: str) -> xr.DataArray:
    """Log ratio of the posterior under `reading` alone to the mixture posterior, up to a
    constant: the reading's responsibility per draw (its prior weight is the constant)."""
    return np.log(posterior["reading_probability"].sel(reading=reading)).drop_vars("reading")


class PriorDensity:
    """Log prior density of the model's free variables at posterior draws, as a function of
    the prior parameters (the model's pm.Data), compiled once for every scenario."""

    def __init__(self, model):
        # PyMC and PyTensor only here: the report (how_obtained) imports this module too.
        import pymc as pm
        import pytensor.tensor as pt
        from pytensor.graph.replace import graph_replace
        from pytensor.graph.traversal import ancestors

        data = {d.name: d for d in model.data_vars}
        self.variables, self.data_names, terms = [], [], []
        for rv in model.free_RVs:
            upstream = set(ancestors(rv.owner.inputs, blockers=model.free_RVs))
            deps = [d for d in data.values() if d in upstream]
            if not deps:  # structure, not a prior (e.g. the latent use's N(0, 1))
                continue
            value = pt.tensor(dtype=rv.dtype, shape=(None,) * (rv.ndim + 1), name=rv.name)
            lp = pm.logp(rv, value)
            terms.append(lp.sum(axis=tuple(range(1, lp.ndim))) if lp.ndim > 1 else lp)
            self.variables.append(value)
            self.data_names += [d.name for d in deps if d.name not in self.data_names]
        symbols = {data[n]: data[n].type(name=n) for n in self.data_names}
        total = graph_replace(pt.add(*terms), symbols) if terms else None
        self.dtypes = [data[n].type.dtype for n in self.data_names]
        self.inputs = [*self.variables, *symbols.values()]
        # numba ("FAST_RUN" in PyTensor 3), cached on disk; its rewritten graph too
        # (model/compiled.py): a warm run loads both.
        self.fn = compiled.function(self.inputs, total, mode="FAST_RUN") if terms else None

    def __call__(self, posterior: xr.Dataset, data: dict[str, np.ndarray]) -> xr.DataArray:
        """Summed log prior density per draw with these prior parameters (by pm.Data name)."""
        shape = tuple(posterior.sizes[d] for d in SAMPLE)
        if self.fn is None:
            return xr.DataArray(np.zeros(shape), dims=SAMPLE)
        # own writable C arrays: numba compiles (and caches) one version per array layout and
        # flags, and model/warmup.py's child must call the version the run calls
        values = []
        for v in self.variables:
            draws = posterior[v.name].transpose(*SAMPLE, ...).to_numpy()
            values.append(np.array(draws.reshape(-1, *draws.shape[2:]), dtype=v.dtype, order="C"))
        params = [
            np.array(data[n], dtype=t, order="C")
            for n, t in zip(self.data_names, self.dtypes, strict=True)
        ]
        out = self.fn(*values, *params)
        return xr.DataArray(np.asarray(out).reshape(shape), dims=SAMPLE)


def reweighted(
    posterior: xr.Dataset, diverging: xr.DataArray, names: list[str], weights: Weights
) -> xr.Dataset:
    """A saved reweighted result: the main fit's draws of `names`, its divergences and the
    PSIS log weights; k and the efficiency in its attributes."""
    node = posterior[names].assign(diverging=diverging, log_weight=weights.log_weight)
    node.attrs.update(method="reweighted", pareto_k=weights.pareto_k, efficiency=weights.efficiency)
    return node


def refit_reason(weights: Weights, ess: dict) -> str:
    """Why the reweighted result cannot stand in for a refit ("" when it can): the rules
    of the diagnostics (model/diagnostics.py) and PSIS's k."""
    reasons = []
    if not weights.pareto_k <= PARETO_K:
        reasons.append(f"Pareto k {weights.pareto_k:.2f} > {PARETO_K}")
    if not ess["min_ess_bulk"] >= MIN_ESS_BULK:
        reasons.append(f"reweighted bulk ESS {ess['min_ess_bulk']:.0f} < {MIN_ESS_BULK}")
    if not ess["min_ess_tail"] >= MIN_ESS_TAIL:
        reasons.append(f"reweighted tail ESS {ess['min_ess_tail']:.0f} < {MIN_ESS_TAIL}")
    return "; ".join(reasons)


def effective_sizes(ds: xr.Dataset, names: list[str], efficiency: float) -> dict:
    """Bulk and tail ESS of the reweighted draws: each variable's ESS over its chains times
    the importance-sampling efficiency (the smallest over `names`)."""
    names = [n for n in names if n in ds]
    bulk, tail = az.ess(ds[names], method="bulk"), az.ess(ds[names], method="tail")
    return {
        "min_ess_bulk": efficiency * min(float(np.min(bulk[n].to_numpy())) for n in names),
        "min_ess_tail": efficiency * min(float(np.min(tail[n].to_numpy())) for n in names),
    }


def check(ds: xr.Dataset, label: str) -> dict:
    """The diagnostics entry of a saved reweighted result, by the rules every fit meets
    (model/diagnostics.py) plus PSIS's k: R-hat and divergences are those of the draws it
    weighs (the main fit's; a reused result's, the previous run's refit's). fit.py accepts a
    moment-matched or reused result only when this passes."""
    names = [n for n in ds.data_vars if n not in ("diverging", LOG_WEIGHT, *ROW_PREDICTIONS)]
    w = np.exp(ds[LOG_WEIGHT].to_numpy())
    efficiency = float(1.0 / np.sum(w**2) / w.size)
    k = float(ds.attrs["pareto_k"])
    ess = effective_sizes(ds, names, efficiency)
    rhat = az.rhat(ds[names])
    out = {
        "fit": label,
        "method": ds.attrs.get("method", "reweighted"),  # or "moment matched", "reused"
        "pareto_k": k,
        "max_rhat": max(float(np.max(rhat[n].to_numpy())) for n in names),
        **ess,
        "divergences": int(ds["diverging"].sum()),
        "draws": int(ds["diverging"].size),
    }
    if "reused_from" in ds.attrs:  # the previous run's refit (model/reuse.py)
        out["reused_from"] = str(ds.attrs["reused_from"])
    failures = []
    if not out["max_rhat"] <= MAX_RHAT:
        failures.append(f"R-hat {out['max_rhat']:.3f} > {MAX_RHAT}")
    if out["divergences"] > 0:
        failures.append(f"{out['divergences']} divergent transition(s)")
    reason = refit_reason(Weights(ds[LOG_WEIGHT], k, efficiency), ess)
    failures += reason.split("; ") if reason else []
    return {**out, "passed": not failures, "failures": failures}


def weighted_quantile(x: np.ndarray, w: np.ndarray, probs) -> np.ndarray:
    """Quantiles of draws `x` with normalised weights `w`: the weighted empirical CDF,
    interpolated between the midpoints of each draw's weight."""
    order = np.argsort(x)
    xs, ws = x[order], w[order]
    mid = np.cumsum(ws) - ws / 2
    return np.interp(probs, mid, xs)


def interval_summary(
    values: xr.DataArray, log_weight: xr.DataArray, unit: str, description: str, intervals, probs
) -> dict:
    """As summary.interval_summary, for weighted draws. The MCSE of a quantile q_p is half the
    width between the quantiles at p -/+ the standard error of the weighted CDF at q_p
    (self-normalised importance sampling, divided by the draws' relative ESS)."""
    relative = float(az.ess(values, method="bulk")) / values.size
    x = values.transpose(*SAMPLE).to_numpy().ravel()
    w = np.exp(log_weight.transpose(*SAMPLE).to_numpy().ravel())
    w = w / w.sum()
    out = {
        "unit": unit,
        "description": description,
        "median": float(weighted_quantile(x, w, 0.5)),
        "mean": float(np.sum(w * x)),
        "intervals": {},
    }
    for p in intervals:
        lo, hi = weighted_quantile(x, w, [(1 - p) / 2, (1 + p) / 2])
        out["intervals"][str(p)] = [float(lo), float(hi)]
    mcse = {}
    for p in probs:
        q = weighted_quantile(x, w, p)
        se = float(np.sqrt(np.sum(w**2 * ((x <= q) - p) ** 2) / relative))
        lo, hi = weighted_quantile(x, w, [max(p - se, 0.0), min(p + se, 1.0)])
        mcse[str(p)] = float((hi - lo) / 2)
    out["mcse"] = mcse
    return out


def probability(event: xr.DataArray, log_weight: xr.DataArray) -> float:
    """The weighted share of draws in which `event` holds."""
    w = np.exp(log_weight.transpose(*SAMPLE).to_numpy().ravel())
    return float(np.sum(w * event.transpose(*SAMPLE).to_numpy().ravel()) / w.sum())


def how_obtained(rows: list[dict], key: str) -> str:
    """One sentence for the report: which rows of a readings or scenarios table (summary.json)
    are the main fit reweighted and which were refitted, and why."""
    from model.reuse import REUSED  # it reads this module's SAMPLE

    reweighted = [str(r[key]) for r in rows if r.get("method") == "reweighted"]
    matched = [str(r[key]) for r in rows if r.get("method") == "moment matched"]
    reused = [str(r[key]) for r in rows if r.get("method") == REUSED]
    refitted = [r for r in rows if r.get("method") == "refit"]
    parts = []
    if reweighted:
        parts.append(
            f"{', '.join(reweighted)}: the main fit reweighted (Pareto-smoothed importance "
            f"sampling; Pareto k <= {PARETO_K} and reweighted ESS >= {MIN_ESS_BULK})"
        )
    if matched:
        parts.append(
            f"{', '.join(matched)}: the main fit's draws moved by importance-weighted moment "
            f"matching, then reweighted (Pareto k <= {PARETO_K} and reweighted ESS >= "
            f"{MIN_ESS_BULK})"
        )
    if reused:
        parts.append(
            f"{', '.join(reused)}: the previous run's refit, reweighted to this ledger "
            f"(Pareto k <= {PARETO_K} and reweighted ESS >= {MIN_ESS_BULK})"
        )
    for r in refitted:
        why = r.get("refit_reason", "")
        parts.append(f"{r[key]}: refitted" + (f" ({why})" if why else ""))
    return "How each row was obtained: " + "; ".join(parts) + "." if parts else ""
