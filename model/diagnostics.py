"""Convergence checks on a fit. Thresholds follow Vehtari et al. (2021): R-hat <= 1.01, bulk
and tail ESS >= 400 (100 per chain for 4 chains; the tail ESS bounds the Monte Carlo error of
the 2.5% and 97.5% quantiles the report's 95% intervals are made of); any divergence fails
(the posterior may be biased where the sampler could not go)."""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from model import variables

MAX_RHAT = 1.01
MIN_ESS_BULK = 400
MIN_ESS_TAIL = MIN_ESS_BULK  # same rule: the intervals' ends need as many effective draws
# Checked in every fit: the free parameters and the headline quantities.
CHECKED = variables.select(variables.CHECKED)


def check(
    posterior: xr.Dataset, diverging: xr.DataArray, label: str, names: list[str] = CHECKED
) -> dict:
    """R-hat, ESS and divergences of one fit (of `names`), and whether they pass."""
    names = [v for v in names if v in posterior]
    ds = posterior[names]
    rhat = az.rhat(ds)
    ess_bulk = az.ess(ds, method="bulk")
    ess_tail = az.ess(ds, method="tail")

    def extreme(result, fn) -> float:
        return float(fn([float(fn(result[v].to_numpy())) for v in names]))

    out = {
        "fit": label,
        "max_rhat": extreme(rhat, np.max),
        "min_ess_bulk": extreme(ess_bulk, np.min),
        "min_ess_tail": extreme(ess_tail, np.min),
        "divergences": int(diverging.sum()),
        "draws": int(diverging.size),
    }
    failures = []
    if not out["max_rhat"] <= MAX_RHAT:  # also catches NaN
        failures.append(f"R-hat {out['max_rhat']:.3f} > {MAX_RHAT}")
    if not out["min_ess_bulk"] >= MIN_ESS_BULK:
        failures.append(f"bulk ESS {out['min_ess_bulk']:.0f} < {MIN_ESS_BULK}")
    if not out["min_ess_tail"] >= MIN_ESS_TAIL:
        failures.append(f"tail ESS {out['min_ess_tail']:.0f} < {MIN_ESS_TAIL}")
    if out["divergences"] > 0:
        failures.append(f"{out['divergences']} divergent transition(s)")
    return {**out, "passed": not failures, "failures": failures}


def diagnose(idata: xr.DataTree) -> dict:
    """Checks of the main fit and of each conditional (one-reading) fit."""
    from model import reweight  # it uses this module's thresholds

    fits = [check(idata["posterior"].to_dataset(), idata["sample_stats"]["diverging"], "mixture")]
    for group, label in (
        ("conditional", "reading"),
        ("scenarios", "scenario"),
        ("influence_refits", "without row"),
    ):
        if group in idata.children:
            for name, node in idata[group].children.items():
                ds = node.to_dataset()
                if reweight.LOG_WEIGHT in ds:  # the main fit's draws, reweighted
                    fits.append(reweight.check(ds, f"{label}: {name}"))
                    continue
                fits.append(check(ds.drop_vars("diverging"), ds["diverging"], f"{label}: {name}"))
    return combine(fits)


def combine(fits: list[dict]) -> dict:
    """The checks of several fits (or parts of one) as one verdict: the worst of each."""
    worst = {
        "max_rhat": max(f["max_rhat"] for f in fits),
        "min_ess_bulk": min(f["min_ess_bulk"] for f in fits),
        "min_ess_tail": min(f["min_ess_tail"] for f in fits),
        "divergences": sum(f["divergences"] for f in fits),
    }
    return {
        "passed": all(f["passed"] for f in fits),
        **worst,
        "thresholds": {
            "max_rhat": MAX_RHAT,
            "min_ess_bulk": MIN_ESS_BULK,
            "min_ess_tail": MIN_ESS_TAIL,
            "divergences": 0,
        },
        "fits": fits,
    }
