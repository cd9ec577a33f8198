"""Health checks of a fit, computed from the saved DataTree alone.

Each check returns {"name", "status" (pass/warn/fail), "rule", "finding", ...details}.
A `fail` fails the run (report marked FAILED, exit code 1); a `warn` is shown, not fatal.

- prior predictive: can the priors produce what was observed?
- posterior predictive, per evidence stream: does each row fit the others (LOO-PIT)?
- prior and likelihood sensitivity: power-scaling (Kallioinen et al. 2023, arviz-stats psense)
- influence: how far each row moves the headline quantities (PSIS-LOO, refit where k > 0.7)
- LOO-PIT ECDF per evidence stream: are the rows' leave-one-out PIT values uniform as a set
  (the exact Kolmogorov-Smirnov band), which sees a stream off in one direction that
  no single row's tail probability flags
- time pattern: posterior predictive test statistics the LOO-PIT cannot see (Gelman et al.
  2013, ch. 6): launches stated for a period never above the transfers stated by its end, and
  how much of a long period's launches its shorter, busiest rows hold
- source influence: how far each source (a bias group, or the rows of one source) moves what
  the evidence decides and the headline quantities, and whether the rest of the ledger
  disagrees with it (leave-one-source-out: PSIS on the source's summed log-likelihood, the
  refit without the source where k > 0.7)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection

import arviz as az
import numpy as np
import xarray as xr
from scipy.special import ndtr
from scipy.stats import kstest

from model.loo import PARETO_K, with_loo
from model.loo import rows as loo_rows
from model.loo import weights as loo_weights
from model.reuse import REUSED
from model.reweight import LOG_WEIGHT
from model.timeline import parse_date
from model.variables import EFFECT, REFIT, label, labelled, select
from model.variables import HEADLINE as HEADLINE_ROLE

PASS, WARN, FAIL = "pass", "warn", "fail"
HEADLINE = select(HEADLINE_ROLE)
PRIOR_TAIL = 0.01  # prior predictive: outside the 99% interval
POSTERIOR_TAIL = 0.01  # LOO predictive: outside the 99% interval
STREAM_FAIL_SHARE = 0.25  # a stream fails when more than this share of its rows is flagged
SENSITIVITY = 0.05  # psense's threshold on the CJS distance (its default)
# LOO-PIT ECDF: a stream fails when the ECDF of its rows' PIT values leaves the simultaneous
# 99% band of uniform ones: the Kolmogorov-Smirnov band, exact for any number of rows (scipy).
# Not arviz-stats' ecdf_pit band: with the few rows a stream has it is too narrow (measured on
# uniform samples at a nominal 1%: 25% false alarms with 2 rows, 3% with 4, 2% with 12).
PIT_BAND = 0.99
# Time-pattern statistics: posterior predictive p-values (fail below PATTERN_FAIL, warn below
# PATTERN_WARN), from replicates of the measurement's normal component: the outlier allowance
# (10% of rows, sd 1.5 on the log scale) puts a floor of a few percent under any tail
# probability, so a check that allowed for it could not fail on a pattern that the estimate
# explains only by calling rows outliers; that is what these checks exist to say.
PATTERN_FAIL = 0.01
PATTERN_WARN = 0.05
PATTERN_SEED = 20241125  # the replicates' noise: a fixed seed, so a saved fit checks the same
# Source influence (data/README.md 3.4 states the rule and why). Leaving out one source should
# move an estimate that rests on several by less than the estimate's own posterior sd; beyond
# that the estimate rests on that source (warn). It fails when leaving the source out moves it
# by more than SOURCE_FAIL_SD and the rest of the ledger disagrees with the source: one of its
# rows is outside the rest's 99% predictive range (SOURCE_TAIL), outlier allowance excluded.
SOURCE_WARN_SD = 1.0
SOURCE_FAIL_SD = 2.0
SOURCE_TAIL = 0.01
# What the check measures: the quantities kept by every refit that the evidence may decide
# (the exported flow first, then the headline quantities).
INFLUENCED = [q for q in select(REFIT) if q in select(EFFECT)]


def _stacked(da: xr.DataArray) -> np.ndarray:
    """(sample, ...) array from a (chain, draw, ...) DataArray, chain after chain (as
    xarray's stack, without building its MultiIndex: 0.8 ms a call, 146 calls a run)."""
    values = da.transpose("chain", "draw", ...).to_numpy()
    return values.reshape(-1, *values.shape[2:])


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


def _nothing_measured(name: str, rule: str, **empty) -> dict:
    """A check's verdict on a fit with no measured rows (serial sightings only): it passes,
    saying there was nothing to check, with its detail fields empty."""
    return {"name": name, "status": PASS, "rule": rule, "finding": "no measured rows", **empty}


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
    loo = loo_rows(idata)
    weights = loo_weights(loo)
    p = _region_p(_stacked(idata["posterior_predictive"]["evidence"]), weights, rows)
    k = loo["pareto_k"].to_numpy()
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
        "elpd_loo": float(loo.attrs["elpd"]),
    }


def loo_pit_ecdf_check(idata: xr.DataTree) -> dict:
    """Per evidence stream, the ECDF of its rows' LOO-PIT values against the simultaneous band
    of uniform ones. An exact row's PIT is its LOO predictive CDF at the value; a bound's is
    drawn uniformly between the CDF at its ends (randomised PIT of a censored value, uniform
    when the model is right), with a fixed seed."""
    name = "LOO-PIT ECDF"
    rule = (
        "per evidence stream: the ECDF of the rows' leave-one-out PIT values (bounds: a "
        f"randomised PIT between the CDF at their ends) must stay inside the {PIT_BAND:.0%} "
        "simultaneous (Kolmogorov-Smirnov) band of uniform PIT values; fail if it leaves it"
    )
    if no_measured_rows(idata):
        return _nothing_measured(name, rule, streams={})
    rows = _rows(idata)
    weights = loo_weights(loo_rows(idata))
    draws = _stacked(idata["posterior_predictive"]["evidence"])

    def cdf(v: np.ndarray) -> np.ndarray:
        return (weights * (draws <= v)).sum(0)

    rng = np.random.default_rng(PATTERN_SEED)
    low, high = cdf(rows["lower"]), cdf(rows["upper"])
    pit = np.where(rows["exact"] > 0.5, cdf(rows["observed"]), rng.uniform(low, high))
    streams, failed = {}, []
    for kind in dict.fromkeys(rows["kind"]):
        u = np.sort(pit[rows["kind"] == kind])
        p = float(kstest(u, "uniform", method="exact").pvalue)
        streams[str(kind)] = {
            "rows": len(u),
            "pit": u.round(4).tolist(),
            "ks_p": p,
            "status": FAIL if p < 1 - PIT_BAND else PASS,
        }
        if p < 1 - PIT_BAND:
            side = "above" if np.median(u) > 0.5 else "below"
            failed.append(f"{kind} (p = {p:.4f}; most rows {side} what the rest predict)")
    return {
        "name": name,
        "status": FAIL if failed else PASS,
        "rule": rule,
        "finding": (
            "streams whose rows the rest of the evidence does not predict as a set: "
            + ", ".join(failed)
            if failed
            else f"every stream's LOO-PIT values are within the {PIT_BAND:.0%} band"
        ),
        "streams": streams,
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


def _node_median(node: xr.Dataset, name: str) -> float:
    """The median of a saved refit's draws, weighted when the node is the main fit's draws
    reweighted or moment matched (model/moment_match.py)."""
    if LOG_WEIGHT not in node:
        return float(np.median(node[name]))
    return _weighted_median(_stacked(node[name]), np.exp(_stacked(node[LOG_WEIGHT])))


def _node_weights(node: xr.Dataset) -> np.ndarray:
    """(sample,) normalised weights of a saved refit's draws: equal, or its log weights."""
    if LOG_WEIGHT not in node:
        n = node.sizes["chain"] * node.sizes["draw"]
        return np.full(n, 1.0 / n)
    w = np.exp(_stacked(node[LOG_WEIGHT]))
    return w / w.sum()


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
    loo = loo_rows(idata)
    log_w = _stacked(loo["log_weights"])
    k = loo["pareto_k"].to_numpy()
    refits = idata["influence_refits"].children if "influence_refits" in idata.children else {}
    shifts, methods, unresolved = {q: {} for q in HEADLINE}, {}, []
    for j, row_id in enumerate(rows["ids"]):
        if k[j] > PARETO_K and row_id in refits:
            dropped = refits[row_id].to_dataset()
            # or "moment matched", or reuse.REUSED
            methods[row_id] = dropped.attrs.get("method", "refit")
            for q in HEADLINE:
                x = _stacked(post[q])
                shifts[q][row_id] = float((_node_median(dropped, q) - np.median(x)) / x.std())
            continue
        methods[row_id] = "psis"
        if k[j] > PARETO_K:
            unresolved.append(row_id)
        w = np.exp(log_w[:, j] - log_w[:, j].max())
        for q in HEADLINE:
            x = _stacked(post[q])
            shifts[q][row_id] = float((_weighted_median(x, w) - np.median(x)) / x.std())
    ranked = sorted(shifts["rate_after"], key=lambda i: -abs(shifts["rate_after"][i]))[:top]
    # ArviZ's warning about high k is not shown (model/loo.py): the finding says it instead
    refitted = [i for i, m in methods.items() if m == "refit"]
    matched = [i for i, m in methods.items() if m == "moment matched"]
    reused = [i for i, m in methods.items() if m == REUSED]
    high_k = [
        f"Pareto k > {PARETO_K} for {len(ids)} row(s), {what}: {', '.join(ids)}"
        for ids, what in (
            (refitted, "each refitted without it"),
            (matched, "each left out by moment matching (its k now <= 0.7)"),
            (reused, "each the previous run's refit without it, reweighted to this ledger"),
            (unresolved, "not refitted"),
        )
        if ids
    ]
    return {
        "name": "influence",
        "status": WARN if unresolved else PASS,
        "rule": "shift of each headline median when a row is left out, in posterior sds "
        f"(PSIS-LOO; where Pareto k > {PARETO_K}, moment matching or a refit without the "
        f"row); warn if a row has k > {PARETO_K} and no refit",
        "finding": "; ".join(
            [
                f"rows that move the {label('rate_after')} most: "
                + ", ".join(f"{i} ({shifts['rate_after'][i]:+.2f} sd)" for i in ranked),
                *high_k,
            ]
        ),
        "top_rate_after": ranked,
        "shifts": shifts,
        "method": methods,
        "unresolved": unresolved,
    }


def _slug(text: str) -> str:
    """A source's name as a DataTree node name (no '/'): lowercase words joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "source"


def source_groups(idata: xr.DataTree) -> dict[str, list[str]]:
    """The modelled rows by source, in ledger order: the rows of a `bias_group` together (one
    source's figures, which share a bias), every other row with the rows of the same `source`
    text. Rows that relay one figure (`same_as`) are already one modelled row."""
    if no_measured_rows(idata):
        return {}
    ledger = idata["evidence"].to_dataset()
    groups: dict[str, list[str]] = {}
    for row_id in idata["posterior"]["obs"].to_numpy().astype(str):
        cell = ledger.sel(row=row_id)
        bias = str(cell["bias_group"].item()) if "bias_group" in ledger else ""
        name = f"bias group {bias}" if bias else str(cell["source"].item())
        groups.setdefault(name, []).append(row_id)
    return groups


def source_loo(idata: xr.DataTree) -> tuple[dict[str, list[str]], xr.DataArray, np.ndarray]:
    """PSIS leave-one-source-out: the groups, their smoothed log weights (chain, draw, source)
    and Pareto k. A source's weight per draw is 1 / p(its rows | draw): the sum of its rows'
    pointwise log-likelihood, which the fit saved."""
    groups = source_groups(idata)
    ll = idata["log_likelihood"]["evidence"]
    summed = xr.concat([ll.sel(obs=rows).sum("obs") for rows in groups.values()], dim="source")
    tree = xr.DataTree.from_dict(
        {
            "posterior": idata["posterior"].to_dataset(),  # as the row-level loo: same k
            "log_likelihood": xr.Dataset({"source": summed.assign_coords(source=list(groups))}),
        }
    )
    with warnings.catch_warnings():  # a high k is handled (refit or warn), not a surprise
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        loo = az.loo(tree, pointwise=True, var_name="source")
    return groups, loo.log_weights, loo.pareto_k.to_numpy()


def sources_to_refit(
    idata: xr.DataTree, refitted: Collection[str] | None = None
) -> dict[str, list[str]]:
    """Sources that PSIS cannot leave out reliably (Pareto k > PARETO_K), by node name
    (`source_refits/<name>`): fit() refits without them. A one-row source that has its
    row-level refit (`influence_refits/<id>`, or among the row ids `refitted`, when fit()
    samples both at once) uses that one."""
    if no_measured_rows(idata):
        return {}
    groups, _, k = source_loo(idata)
    if refitted is None:
        has = "influence_refits" in idata.children
        refitted = idata["influence_refits"].children if has else {}
    return {
        _slug(name): rows
        for (name, rows), kj in zip(groups.items(), k, strict=True)
        if kj > PARETO_K and (len(rows) > 1 or rows[0] not in refitted)
    }


def _stated_p(mu: np.ndarray, sd: np.ndarray, weights: np.ndarray, data: dict) -> np.ndarray:
    """Per row, the predictive probability of what the row states, from the measurement's
    normal component only (no outlier allowance): for an exact row twice its smaller tail,
    for a bound the probability of its range. mu, sd, weights: (sample, rows)."""
    y, lo, hi = data["observed"], data["lower"], data["upper"]
    below = (weights * ndtr((y - mu) / sd)).sum(0)
    inside = (weights * (ndtr((hi - mu) / sd) - ndtr((lo - mu) / sd))).sum(0)
    return np.where(data["exact"] > 0.5, np.minimum(1.0, 2 * np.minimum(below, 1 - below)), inside)


def source_influence_check(idata: xr.DataTree) -> dict:
    """Leave each source out: how far its absence moves the exported flow and the headline
    medians (in posterior sds), and how probable the rest of the ledger finds its rows. That
    probability reads the rows' predictions from the source's refit (or weighted draws),
    which no ESS rule covers (reweight.ROW_PREDICTIONS); the quantities the shifts are of are."""
    name = "source influence"
    rule = (
        f"leave one source out (a bias group, or the rows of one source; PSIS; where "
        f"Pareto k > {PARETO_K}, moment matching or a refit): warn if it moves "
        f"{label(INFLUENCED[0])} or a headline median "
        f"by more than {SOURCE_WARN_SD:g} posterior sd (the estimate rests on that source); "
        f"fail if by more than {SOURCE_FAIL_SD:g} sd and the rest of the ledger gives one of the "
        f"source's rows less than {SOURCE_TAIL:.0%} predictive probability (the estimate rests "
        "on a source the rest contradicts)"
    )
    if no_measured_rows(idata):
        return _nothing_measured(name, rule, sources={})
    rows = _rows(idata)
    where = {r: j for j, r in enumerate(rows["ids"])}
    post = idata["posterior"].to_dataset()
    groups, log_w, k = source_loo(idata)
    row_refits = idata["influence_refits"].children if "influence_refits" in idata.children else {}
    source_refits = idata["source_refits"].children if "source_refits" in idata.children else {}
    sources, status = {}, PASS
    for j, (source, ids) in enumerate(groups.items()):
        idx = [where[i] for i in ids]
        data = {c: rows[c][idx] for c in ("observed", "lower", "upper", "exact")}
        node = source_refits.get(_slug(source), row_refits.get(ids[0]) if len(ids) == 1 else None)
        entry = {"rows": ids, "pareto_k": float(k[j])}
        if k[j] <= PARETO_K:
            w = _stacked(log_w.isel(source=j))
            w = np.exp(w - w.max())
            w /= w.sum()
            entry["method"] = "psis"
            entry["shifts"] = {
                q: float(
                    (_weighted_median(_stacked(post[q]), w) - np.median(post[q])) / post[q].std()
                )
                for q in INFLUENCED
            }
            mu = np.log1p(_stacked(post["predicted"].sel(obs=ids)))
            sd = _stacked(post["measurement_sd"].sel(obs=ids))
            entry["p"] = _stated_p(mu, sd, np.repeat(w[:, None], len(ids), 1), data).tolist()
        elif node is not None:
            dropped = node.to_dataset()
            # or "moment matched", or reuse.REUSED
            entry["method"] = dropped.attrs.get("method", "refit")
            entry["shifts"] = {
                q: float((_node_median(dropped, q) - np.median(post[q])) / post[q].std())
                for q in INFLUENCED
                if q in dropped
            }
            if "predicted" in dropped:
                mu = np.log1p(_stacked(dropped["predicted"].sel(obs=ids)))
                sd = _stacked(dropped["measurement_sd"].sel(obs=ids))
                w = np.repeat(_node_weights(dropped)[:, None], len(ids), 1)
                entry["p"] = _stated_p(mu, sd, w, data).tolist()
        else:
            entry["method"] = "unresolved"
        largest = max((abs(v) for v in entry.get("shifts", {}).values()), default=0.0)
        disagrees = min(entry.get("p", [1.0])) < SOURCE_TAIL
        entry["max_shift"] = largest
        entry["disagrees"] = bool(disagrees)
        entry["status"] = (
            FAIL if largest > SOURCE_FAIL_SD and disagrees
            else WARN if largest > SOURCE_WARN_SD or entry["method"] == "unresolved"
            else PASS
        )  # fmt: skip
        sources[source] = entry
        status = max(status, entry["status"], key=[PASS, WARN, FAIL].index)

    def shift_words(s: str) -> str:
        e = sources[s]
        q = max(e["shifts"], key=lambda q: abs(e["shifts"][q]))
        return f"{s} ({len(e['rows'])} row(s)) moves {label(q)} {e['shifts'][q]:+.1f} sd"

    failed = [s for s, e in sources.items() if e["status"] == FAIL]
    rests = [s for s, e in sources.items() if e["status"] == WARN and "shifts" in e]
    unresolved = [s for s, e in sources.items() if e["method"] == "unresolved"]
    words = []
    if failed:
        words.append("the estimate rests on a source the rest of the ledger contradicts: "
                     + "; ".join(map(shift_words, failed)))  # fmt: skip
    if rests:
        words.append("the estimate rests on one source: " + "; ".join(map(shift_words, rests)))
    if unresolved:
        words.append(f"not left out reliably (Pareto k > {PARETO_K}, no refit): "
                     + ", ".join(unresolved))  # fmt: skip
    if not words:
        top = max(sources, key=lambda s: sources[s]["max_shift"])
        words.append(f"no source moves the estimate by more than {SOURCE_WARN_SD:g} sd; the "
                     f"most: {shift_words(top)}")  # fmt: skip
    return {"name": name, "status": status, "rule": rule, "finding": "; ".join(words),
            "sources": sources}  # fmt: skip


def _ledger_cells(idata: xr.DataTree, ids: np.ndarray, column: str) -> list[str]:
    return [str(v) for v in idata["evidence"][column].sel(row=list(ids)).to_numpy()]


def _clean_replicates(idata: xr.DataTree, ids: list[str]) -> np.ndarray:
    """(sample, rows) replicated log1p measurements of these rows from their normal
    component (see PATTERN_FAIL), one per posterior draw."""
    post = idata["posterior"].to_dataset()
    mu = np.log1p(_stacked(post["predicted"].sel(obs=ids)))
    sd = _stacked(post["measurement_sd"].sel(obs=ids))
    return np.random.default_rng(PATTERN_SEED).normal(mu, sd)


def _pattern_verdict(p: float) -> str:
    return FAIL if p < PATTERN_FAIL else WARN if p < PATTERN_WARN else PASS


def launches_within_transfers(idata: xr.DataTree) -> dict:
    """Everything launched was delivered first: a launch row's count is at most the transfers
    stated by its period's end. Statistic: the largest log ratio, over every launch row (its
    exact value or stated minimum) and transfer row dated on or after its end (exact value or
    stated maximum), of launches to transfers, standardised by the pair's replicated spread;
    p = P(replicated statistic >= observed)."""
    name = "launches within transfers"
    rule = (
        "posterior predictive p-value of the largest ratio (log, standardised) of a launch row's "
        "count to the transfers stated by its period's end (launches: exact or stated minimum; "
        "transfers: "
        f"exact or stated maximum); fail if p < {PATTERN_FAIL}, warn if p < {PATTERN_WARN}"
    )
    rows = _rows(idata) if not no_measured_rows(idata) else {"kind": np.array([])}
    launches = [j for j in np.flatnonzero(rows["kind"] == "launches") if rows["lower"][j] > -1e2]
    transfers = [j for j in np.flatnonzero(rows["kind"] == "transfers") if rows["upper"][j] < 1e2]
    if not launches or not transfers:
        return {"name": name, "status": PASS, "rule": rule, "p": None,
                "finding": "no launch and transfer rows to compare"}  # fmt: skip
    ends = {j: parse_date(e, end=True) for j, e in
            zip(launches + transfers, _ledger_cells(idata, rows["ids"][launches + transfers],
                                                    "period_end"), strict=True)}  # fmt: skip
    pairs = [(i, j) for i in launches for j in transfers if ends[i] <= ends[j]]
    if not pairs:
        return {"name": name, "status": PASS, "rule": rule, "p": None,
                "finding": "no transfer row is dated after a launch row's period"}  # fmt: skip
    # exact rows state their value; a launch bound its minimum, a transfer bound its maximum
    stated_launch = np.where(rows["exact"] > 0.5, rows["observed"], rows["lower"])
    stated_transfer = np.where(rows["exact"] > 0.5, rows["observed"], rows["upper"])
    li, tj = np.array(pairs).T
    observed = stated_launch[li] - stated_transfer[tj]
    rep = _clean_replicates(idata, list(rows["ids"]))
    # Each pair's log ratio standardised by its replicates' spread: a launch row of a few days
    # varies far more than one of months (salvos), and an unstandardised maximum would be
    # decided by the shortest rows whatever the others say.
    diff = rep[:, li] - rep[:, tj]
    centre, spread = diff.mean(0), diff.std(0)
    z = (observed - centre) / spread
    worst = int(np.argmax(z))
    p = float((((diff - centre) / spread).max(1) >= z[worst]).mean())
    status = _pattern_verdict(p)
    pair = f"{rows['ids'][li[worst]]} against {rows['ids'][tj[worst]]}"
    return {
        "name": name,
        "status": status,
        "rule": rule,
        "p": p,
        "worst_pair": [str(rows["ids"][li[worst]]), str(rows["ids"][tj[worst]])],
        "finding": (
            f"{pair}: launches {np.expm1(observed[worst] + stated_transfer[tj[worst]]):.0f} "
            f"against transfers {np.expm1(stated_transfer[tj[worst]]):.0f}, p = {p:.3f}"
            + (": more launched than the stated transfers can supply" if status != PASS else "")
        ),
    }


def busiest_months_share(idata: xr.DataTree) -> dict:
    """How concentrated launches are: for each exact launch row spanning several months, the
    share of its count held by the shorter exact rows inside its period (its busiest months
    the ledger names). Statistic: the largest share; p = P(replicated >= observed)."""
    name = "busiest months"
    rule = (
        "posterior predictive p-value of the largest share of a long launch row's count held by "
        "the shorter rows inside its period (exact rows); fail if p < "
        f"{PATTERN_FAIL}, warn if p < {PATTERN_WARN}"
    )
    if no_measured_rows(idata):  # e.g. serials only: no launch rows to compare
        return _nothing_measured(name, rule, p=None)
    rows = _rows(idata)
    exact = [j for j in np.flatnonzero(rows["kind"] == "launches") if rows["exact"][j] > 0.5]
    starts = _ledger_cells(idata, rows["ids"][exact], "period_start")
    ends = _ledger_cells(idata, rows["ids"][exact], "period_end")
    span = {
        j: (parse_date(a), parse_date(b, end=True))
        for j, a, b in zip(exact, starts, ends, strict=True)
    }
    nested = {}
    for j in exact:  # the shorter rows inside j's period that do not overlap each other
        inside = sorted(
            (i for i in exact if i != j and span[j][0] <= span[i][0] and span[i][1] <= span[j][1]
             and span[i][1] - span[i][0] < span[j][1] - span[j][0]),
            key=lambda i: span[i][0],
        )  # fmt: skip
        parts = []
        for i in inside:
            if not parts or span[i][0] > span[parts[-1]][1]:
                parts.append(i)
        if parts:
            nested[j] = parts
    if not nested:
        return {"name": name, "status": PASS, "rule": rule, "p": None,
                "finding": "no launch row holds shorter rows inside its period"}  # fmt: skip
    rep = np.expm1(_clean_replicates(idata, list(rows["ids"])))
    y = np.expm1(rows["observed"])

    def share(values: np.ndarray, j: int) -> np.ndarray:
        return values[..., nested[j]].sum(-1) / np.maximum(values[..., j], 1e-9)

    observed = {j: float(share(y, j)) for j in nested}
    worst = max(observed, key=observed.get)
    replicated = np.max([share(rep, j) for j in nested], axis=0)
    p = float((replicated >= observed[worst]).mean())
    status = _pattern_verdict(p)
    parts = ", ".join(str(rows["ids"][i]) for i in nested[worst])
    return {
        "name": name,
        "status": status,
        "rule": rule,
        "p": p,
        "shares": {str(rows["ids"][j]): v for j, v in observed.items()},
        "finding": (
            f"{parts} hold {observed[worst]:.0%} of {rows['ids'][worst]}, p = {p:.3f}"
            + (
                ": launches more concentrated than the model's month-to-month variation allows"
                if status != PASS
                else ""
            )  # fmt: skip
        ),
    }


CHECKS = {
    "prior predictive": prior_predictive_check,
    "posterior predictive": posterior_predictive_check,
    "LOO-PIT ECDF": loo_pit_ecdf_check,
    "prior sensitivity": sensitivity_check,
    "launches within transfers": launches_within_transfers,
    "busiest months": busiest_months_share,
    "influence": influence_check,
    "source influence": source_influence_check,
}


# What a programme runs on each plant (programme.plant_view): every check but the influence
# ones, which need refits without a row or source (each plant's own estimate has them).
PLANT_IN_PROGRAMME = [n for n in CHECKS if n not in ("influence", "source influence")]


def run_checks(idata: xr.DataTree, names: list[str] | None = None) -> list[dict]:
    """Every check (or those `names`d); one that cannot be computed fails visibly instead of
    stopping the report."""
    idata = with_loo(idata)  # PSIS-LOO once for the checks that read it
    results = []
    for name, check in CHECKS.items():
        if names is not None and name not in names:
            continue
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
