"""Health checks of a fit, computed from the saved DataTree alone.

Each check returns {"name", "status" (pass/warn/fail), "rule", "finding", ...details}.
A `fail` fails the run (report marked FAILED, exit code 1); a `warn` is shown, not fatal.

- prior predictive: can the priors produce what was observed?
- posterior predictive, per evidence stream: does each row fit the others (LOO-PIT)?
- prior and likelihood sensitivity: power-scaling (Kallioinen et al. 2023, arviz-stats psense)
- influence: how far each row moves the headline quantities (PSIS-LOO, refit where k > 0.7)
"""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from model.variables import HEADLINE as HEADLINE_ROLE
from model.variables import label, labelled, select

PASS, WARN, FAIL = "pass", "warn", "fail"
HEADLINE = select(HEADLINE_ROLE)
PRIOR_TAIL = 0.01  # prior predictive: outside the 99% interval
POSTERIOR_TAIL = 0.01  # LOO predictive: outside the 99% interval
STREAM_FAIL_SHARE = 0.25  # a stream fails when more than this share of its rows is flagged
SENSITIVITY = 0.05  # psense's threshold on the CJS distance (its default)
PARETO_K = 0.7  # above this, PSIS-LOO is unreliable for a row and it is refit


def _stacked(da: xr.DataArray) -> np.ndarray:
    """(sample, ...) array from a (chain, draw, ...) DataArray."""
    return da.stack(sample=("chain", "draw")).transpose("sample", ...).to_numpy()


def _region_p(draws: np.ndarray, weights: np.ndarray, data: dict) -> np.ndarray:
    """Per row, the (weighted) predictive probability of what the row states: for an exact
    row, twice the smaller tail probability of the observed value; for a bound, the
    probability of the stated range. draws and weights are (sample, obs)."""
    y, lo, hi = data["observed"], data["lower"], data["upper"]
    below = (weights * (draws <= y)).sum(0)
    above = (weights * (draws >= y)).sum(0)
    inside = (weights * ((draws >= lo) & (draws <= hi))).sum(0)
    return np.where(data["exact"] > 0.5, np.minimum(1.0, 2 * np.minimum(below, above)), inside)


def _rows(idata: xr.DataTree) -> dict[str, np.ndarray]:
    const = idata["constant_data"].to_dataset()
    return {
        "observed": idata["observed_data"]["evidence"].to_numpy(),
        "lower": const["lower"].to_numpy(),
        "upper": const["upper"].to_numpy(),
        "exact": const["exact"].to_numpy(),
        "kind": const["kind"].to_numpy().astype(str),
        "ids": const["obs"].to_numpy().astype(str),
    }


def no_measured_rows(idata: xr.DataTree) -> bool:
    """True when no row is in the measurement model (e.g. a case with serials only): the
    leave-one-out checks then have nothing to leave out."""
    return idata["posterior"].sizes.get("obs", 0) == 0


def prior_predictive_check(idata: xr.DataTree) -> dict:
    if no_measured_rows(idata):
        # Serial sightings are a Potential, which prior draws cannot honour: nothing to check.
        return {
            "name": "prior predictive",
            "status": PASS,
            "rule": "-",
            "finding": "no measured rows to check",
            "flagged": [],
            "p": {},
        }
    rows = _rows(idata)
    draws = _stacked(idata["prior_predictive"]["evidence"])
    p = _region_p(draws, np.full_like(draws, 1.0 / len(draws)), rows)
    flagged = [str(i) for i, v in zip(rows["ids"], p, strict=True) if v < PRIOR_TAIL]
    return {
        "name": "prior predictive",
        "status": WARN if flagged else PASS,
        "rule": f"warn if the priors give a row's observation less than {PRIOR_TAIL:.0%} "
        "predictive probability (outside the prior predictive 99% interval)",
        "finding": (
            f"{len(flagged)} row(s) the priors make nearly impossible: {', '.join(flagged)}"
            if flagged
            else f"all {len(p)} rows are within the prior predictive range"
        ),
        "flagged": flagged,
        "p": {str(i): float(v) for i, v in zip(rows["ids"], p, strict=True)},
    }


def posterior_predictive_check(idata: xr.DataTree) -> dict:
    """Each row against its leave-one-out predictive distribution: LOO-PIT for exact rows,
    the LOO probability of the stated range for bounds; per evidence stream."""
    if no_measured_rows(idata):
        return {
            "name": "posterior predictive",
            "status": PASS,
            "rule": "-",
            "p": {},
            "finding": "no measured rows to check",
            "flagged": [],
            "streams": {},
        }
    rows = _rows(idata)
    loo = az.loo(idata, pointwise=True, var_name="evidence")
    log_w = _stacked(loo.log_weights)
    weights = np.exp(log_w - log_w.max(0))
    weights /= weights.sum(0)
    p = _region_p(_stacked(idata["posterior_predictive"]["evidence"]), weights, rows)
    k = loo.pareto_k.to_numpy()
    streams, status = {}, PASS
    for kind in dict.fromkeys(rows["kind"]):
        ids = rows["ids"][rows["kind"] == kind]
        bad = [
            str(i) for i, v in zip(ids, p[rows["kind"] == kind], strict=True) if v < POSTERIOR_TAIL
        ]
        fails = len(bad) >= 2 and len(bad) > STREAM_FAIL_SHARE * len(ids)
        streams[str(kind)] = {
            "rows": len(ids),
            "flagged": bad,
            "status": FAIL if fails else WARN if bad else PASS,
        }
        status = FAIL if fails else (WARN if bad and status == PASS else status)
    flagged = [i for s in streams.values() for i in s["flagged"]]
    return {
        "name": "posterior predictive",
        "status": status,
        "rule": f"per evidence stream: a row is flagged when its leave-one-out predictive "
        f"probability is under {POSTERIOR_TAIL:.0%} (LOO-PIT outside the 99% interval for exact "
        f"rows; probability of the stated range for bounds); warn if any row is flagged, fail if "
        f"more than {STREAM_FAIL_SHARE:.0%} of a stream's rows (and at least 2) are",
        "finding": (
            f"rows the model cannot explain from the rest: {', '.join(flagged)}"
            if flagged
            else "every row is within what the other rows predict"
        ),
        "streams": streams,
        "p": {str(i): float(v) for i, v in zip(rows["ids"], p, strict=True)},
        "pareto_k": {str(i): float(v) for i, v in zip(rows["ids"], k, strict=True)},
        "elpd_loo": float(loo.elpd),
    }


def sensitivity_check(idata: xr.DataTree) -> dict:
    """Power-scaling sensitivity of the headline quantities to each prior and to each
    evidence stream's likelihood, in words."""
    lp = idata["log_prior"].to_dataset()
    priors, flat = {}, []
    for name in lp.data_vars:
        values = lp[name].to_numpy()
        if np.ptp(values) <= 1e-9 * (1 + np.abs(values).max()):  # flat: power-scaling is a no-op
            flat.append(str(name))
            continue
        ps = az.psense(idata, var_names=HEADLINE, group="prior", group_var_names=[name])
        priors[str(name)] = {q: float(ps[q]) for q in HEADLINE}
    streams = {}
    for name in idata["log_likelihood"].data_vars:
        if idata["log_likelihood"][name].size == 0:  # a stream with no rows
            continue
        ps = az.psense(idata, var_names=HEADLINE, group="likelihood", group_var_names=[name])
        streams[str(name)] = {q: float(ps[q]) for q in HEADLINE}
    # The evidence as a whole: the measured rows ("evidence") and any stream outside them
    # (serials); the per-kind streams are parts of "evidence", shown in the table only.
    per_kind = set(idata["constant_data"]["kind"].to_numpy().astype(str))
    words, status = [], PASS
    for q in HEADLINE:
        drivers = [n for n, v in priors.items() if v[q] >= SENSITIVITY]
        likelihood = max((s[q] for n, s in streams.items() if n not in per_kind), default=0.0)
        if not drivers:
            continue
        status = WARN
        named = ", ".join(f"{labelled(n)} ({priors[n][q]:.2f})" for n in drivers)
        if likelihood >= SENSITIVITY:
            words.append(
                f"{label(q)}: prior-data conflict: sensitive both to the prior on {named} and to "
                f"the evidence ({likelihood:.3f}); check that prior against the evidence"
            )
        else:
            words.append(
                f"{label(q)}: strong prior influence: sensitive to the prior on {named}, while "
                f"power-scaling the evidence changes it little ({likelihood:.3f}); it is only "
                "as good as that prior"
            )
    return {
        "name": "prior sensitivity",
        "status": status,
        "rule": "power-scaling sensitivity (CJS distance, arviz-stats psense) of "
        f"{', '.join(map(label, HEADLINE))} to each prior and each evidence stream; warn when "
        f"a prior's sensitivity is at least {SENSITIVITY}",
        "finding": "; ".join(words) if words else "no prior drives the headline quantities",
        "priors": priors,
        "flat_priors": flat,
        "likelihood": streams,
    }


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def influence_check(idata: xr.DataTree, top: int = 5) -> dict:
    """How far leaving each row out moves the headline medians, in posterior sds: PSIS-LOO
    weights, or the saved refit without the row where Pareto k > 0.7."""
    if no_measured_rows(idata):
        return {
            "name": "influence",
            "status": PASS,
            "rule": "-",
            "unresolved": [],
            "finding": "no measured rows to leave out",
            "top_rate_after": [],
            "shifts": {q: {} for q in HEADLINE},
            "method": {},
        }
    rows = _rows(idata)
    post = idata["posterior"].to_dataset()
    loo = az.loo(idata, pointwise=True, var_name="evidence")
    log_w = _stacked(loo.log_weights)
    k = loo.pareto_k.to_numpy()
    refits = idata["influence_refits"].children if "influence_refits" in idata.children else {}
    shifts, methods, unresolved = {q: {} for q in HEADLINE}, {}, []
    for j, row_id in enumerate(rows["ids"]):
        if k[j] > PARETO_K and row_id in refits:
            methods[row_id] = "refit"
            dropped = refits[row_id].to_dataset()
            for q in HEADLINE:
                x = _stacked(post[q])
                shifts[q][row_id] = float(
                    (np.median(_stacked(dropped[q])) - np.median(x)) / x.std()
                )
            continue
        methods[row_id] = "psis"
        if k[j] > PARETO_K:
            unresolved.append(row_id)
        w = np.exp(log_w[:, j] - log_w[:, j].max())
        for q in HEADLINE:
            x = _stacked(post[q])
            shifts[q][row_id] = float((_weighted_median(x, w) - np.median(x)) / x.std())
    ranked = sorted(shifts["rate_after"], key=lambda i: -abs(shifts["rate_after"][i]))[:top]
    return {
        "name": "influence",
        "status": WARN if unresolved else PASS,
        "rule": "shift of each headline median when a row is left out, in posterior sds "
        f"(PSIS-LOO; refit without the row where Pareto k > {PARETO_K}); warn if a row has "
        "k > 0.7 and no refit",
        "finding": f"rows that move the {label('rate_after')} most: "
        + ", ".join(f"{i} ({shifts['rate_after'][i]:+.2f} sd)" for i in ranked),
        "top_rate_after": ranked,
        "shifts": shifts,
        "method": methods,
        "unresolved": unresolved,
    }


CHECKS = {
    "prior predictive": prior_predictive_check,
    "posterior predictive": posterior_predictive_check,
    "prior sensitivity": sensitivity_check,
    "influence": influence_check,
}


def run_checks(idata: xr.DataTree) -> list[dict]:
    """Every check; one that cannot be computed fails visibly instead of stopping the report."""
    results = []
    for name, check in CHECKS.items():
        try:
            results.append(check(idata))
        except Exception as exc:  # noqa: BLE001 - any error must surface in the report
            results.append(
                {
                    "name": name,
                    "status": FAIL,
                    "rule": "the check must compute",
                    "finding": f"could not be computed: {type(exc).__name__}: {exc}",
                }
            )
    return results
