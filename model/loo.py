"""PSIS-LOO of a fit's modelled rows, computed once per fit.

fit() reads it to choose its leave-one-out refits, and three checks read it (posterior
predictive, LOO-PIT ECDF, influence). fit() saves it in the DataTree's `loo` node
(`log_weights` (chain, draw, obs), `pareto_k` (obs), attrs `elpd`), so the checks of a fit,
fresh or loaded from posterior.nc, never recompute it; a tree without the node (a programme
plant's view, a fit saved before it, a test's hand-made tree) gets it computed, once per
`run_checks`.

ArviZ warns whenever a row's Pareto k is high; on the February 11 case that is every run. The
warning is not shown: the influence check states each row's k and what was done about it (a
refit without the row, or a warning when there is none).
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import xarray as xr

NODE = "loo"
# Above this Pareto k an importance-sampling estimate rests on a few draws and is not trusted
# (Vehtari et al. 2024, "Pareto smoothed importance sampling"; arviz-stats' threshold): PSIS-LOO
# rows, reweighted alternatives and value-of-information values all use this one threshold.
PARETO_K = 0.7


def compute(idata: xr.DataTree) -> xr.Dataset:
    """PSIS-LOO of the `evidence` log-likelihood: smoothed log weights, Pareto k, elpd."""
    with warnings.catch_warnings():  # a high k is reported by the influence check instead
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        loo = az.loo(idata, pointwise=True, var_name="evidence")
    ds = xr.Dataset(
        {
            "log_weights": loo.log_weights.transpose("chain", "draw", ...),
            "pareto_k": loo.pareto_k,
        }
    )
    ds.attrs["elpd"] = float(loo.elpd)
    return ds


def rows(idata: xr.DataTree) -> xr.Dataset:
    """The fit's saved PSIS-LOO, or computed when it has none."""
    if NODE in idata.children:
        return idata[NODE].to_dataset()
    return compute(idata)


def with_loo(idata: xr.DataTree) -> xr.DataTree:
    """`idata`, or a shallow copy of it with the `loo` node, so that the checks run on it
    compute PSIS-LOO once between them. Left as it is when it has the node already, or when
    PSIS-LOO cannot be computed (each check that needs it then fails, saying why)."""
    if NODE in idata.children:
        return idata
    try:
        node = compute(idata)
    except Exception:  # noqa: BLE001 - the checks report it, each under its own name
        return idata
    copy = idata.copy()
    copy[NODE] = node
    return copy


def weights(loo: xr.Dataset) -> np.ndarray:
    """The leave-one-out importance weights of `rows`, normalised per row: (sample, obs)."""
    log_w = loo["log_weights"].stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()
    w = np.exp(log_w - log_w.max(0))
    return w / w.sum(0)
