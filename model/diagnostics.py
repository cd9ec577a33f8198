"""Convergence checks on a fit. Thresholds follow Vehtari et al. (2021): R-hat <= 1.01, bulk
and tail ESS >= 400 (100 per chain for 4 chains; the tail ESS bounds the Monte Carlo error of
the 2.5% and 97.5% quantiles the report's 95% intervals are made of); any divergence fails
(the posterior may be biased where the sampler could not go)."""

from __future__ import annotations

from collections.abc import Callable

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
        ("source_refits", "without source"),
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


# A fit that fails the rules above is sampled once more, more carefully, before it may fail the
# report: divergences and low ESS at default settings are often the step size adapted too
# coarsely or too briefly (a realistic high-volume case failed on 2 divergences in one refit
# and passed with twice the tuning). Higher target acceptance means smaller steps; longer
# tuning a better-adapted mass matrix. Only a fit that still fails marks the report FAILED.
RETRY_TARGET_ACCEPT = 0.98
RETRY_TUNE_FACTOR = 2
# A run with fewer draws than this is a quick look (the tests' small fits, the notebook's): it
# cannot be expected to reach the ESS rule however it is tuned, so it is not sampled again.
RETRY_MIN_DRAWS = 2 * MIN_ESS_BULK


def retry_settings(target_accept: float, tune: int) -> dict:
    """The settings of the one retry: the higher of the two target acceptances, tuning doubled."""
    return {
        "target_accept": max(target_accept, RETRY_TARGET_ACCEPT),
        "tune": int(tune) * RETRY_TUNE_FACTOR,
    }


def sample_with_retry(
    sample: Callable[..., xr.DataTree],
    label: str,
    target_accept: float,
    tune: int,
    names: list[str] = CHECKED,
) -> tuple[xr.DataTree, dict | None]:
    """Call `sample()`; if its fit fails the diagnostics, call `sample(target_accept=...,
    tune=...)` once more with `retry_settings` and keep that fit. Returns the kept fit and the
    retry record (None when the first fit passed): the fit's label, what failed, the settings
    of the retry and what the retry found (`passed`)."""
    first = sample()

    def verdict(tree: xr.DataTree) -> dict:
        post = tree["posterior"].to_dataset()
        # a programme's variables are prefixed by their plant (`<plant>::rate_before`)
        own = [v for v in post.data_vars if str(v).rsplit("::", 1)[-1] in names]
        return check(post, tree["sample_stats"]["diverging"], label, own)

    before = verdict(first)
    if before["passed"]:
        return first, None
    settings = retry_settings(target_accept, tune)
    second = sample(**settings)
    after = verdict(second)
    record = {
        "fit": label,
        "failures": before["failures"],
        "settings": {"target_accept": target_accept, "tune": int(tune)},
        "retry_settings": settings,
        "retry_failures": after["failures"],
        "passed": after["passed"],
    }
    return second, record
