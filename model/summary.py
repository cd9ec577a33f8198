"""The summary: headline quantities with equal-tailed intervals, diagnostics and provenance,
computed from a saved fit alone. Its JSON form (summary.json) is the machine-readable
contract documented in reports/README.md."""

from __future__ import annotations

import json
from pathlib import Path

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from model.checks import PLANT_IN_PROGRAMME, run_checks
from model.diagnostics import check, combine, diagnose
from model.model_comparison import model_comparison
from model.timeline import Window
from model.variables import EFFECT as EFFECT_ROLE
from model.variables import (
    HEADLINE,
    POOLED,
    REGISTRY,
    SHARED,
    SHOWN,
    label,
    select,
    unit_of,
)

SCHEMA_VERSION = 1
INTERVALS = (0.5, 0.8, 0.95)  # equal-tailed, always stated with their probability
DOUBLED = 2.0
# Quantiles whose Monte Carlo standard error is reported: the ends of the 80% and 95%
# intervals and the median (the 50% interval's ends move less than the 80% ones).
MCSE_QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)


def has_chains(draws) -> bool:
    """Draws that keep their chains: the autocorrelation-aware MCSE needs them."""
    return isinstance(draws, xr.DataArray) and {"chain", "draw"} <= set(draws.dims)


def interval_summary(draws: np.ndarray | xr.DataArray, unit: str, description: str) -> dict:
    """Median, mean and equal-tailed intervals; for draws with chains, also the Monte Carlo
    standard error of each quantile in MCSE_QUANTILES (arviz-stats, from the chains' ESS)."""
    mcse = (
        {str(p): float(azs.mcse(draws, method="quantile", prob=p)) for p in MCSE_QUANTILES}
        if has_chains(draws)
        else None
    )
    draws = np.asarray(draws, dtype=float).ravel()
    out = {
        "unit": unit,
        "description": description,
        "median": float(np.median(draws)),
        "mean": float(np.mean(draws)),
        "intervals": {},
    }
    for p in INTERVALS:
        lo, hi = np.quantile(draws, [(1 - p) / 2, (1 + p) / 2])
        out["intervals"][str(p)] = [float(lo), float(hi)]
    if mcse is not None:
        out["mcse"] = mcse
    return out


def probability_summary(event: xr.DataArray, description: str) -> dict:
    """A posterior probability with its Monte Carlo standard error: the MCSE of the mean of
    the indicator, from its effective sample size across chains (arviz-stats), so that
    autocorrelated draws are not counted as independent."""
    event = event.astype(float)
    return {
        "unit": "probability",
        "description": description,
        "value": float(event.mean()),
        "mcse": float(azs.mcse(event, method="mean")),
    }


def year_span(window: Window, year: int) -> str:
    """The months of `year` inside the window, e.g. "Mar-Dec, 10 months"; "" for a whole year."""
    months = [m for m in window.months if m.year == year]
    if len(months) == 12 or not months:
        return ""
    first, last = months[0].strftime("%b"), months[-1].strftime("%b")
    n = len(months)
    return f"{first}, 1 month" if n == 1 else f"{first}-{last}, {n} months"


def window_of(idata: xr.DataTree) -> Window:
    start, end = idata.attrs["window"].split("/")
    return Window(pd.Period(start, "M"), pd.Period(end, "M"))


def _registered(ds: xr.Dataset, name: str, unit: str) -> dict:
    """A registered quantity's interval summary, with its label, unit and description."""
    entry = REGISTRY[name]
    summary = interval_summary(ds[name], unit_of(name, unit), entry.description)
    return {"label": entry.label, **summary}


def quantities(ds: xr.Dataset, unit: str, window: Window | None = None) -> dict:
    """Headline quantities from posterior (or prior) draws; each has its `label`."""
    q = {name: _registered(ds, name, unit) for name in select(HEADLINE)}
    for year in ds["production_by_year"]["year"].to_numpy():
        span = year_span(window, int(year)) if window is not None else ""
        q[f"production_{year}"] = {
            "label": label(f"production_{year}"),
            **interval_summary(
                ds["production_by_year"].sel(year=year),
                unit,
                f"production in {year}" + (f" ({span})" if span else ""),
            ),
        }
        if span:  # a year partly outside the window is never shown as the calendar year
            q[f"production_{year}"]["span"] = span
    q["p_capacity_doubled"] = {
        "label": label("p_capacity_doubled"),
        **probability_summary(
            ds["capacity_multiplier"] >= DOUBLED, REGISTRY["p_capacity_doubled"].description
        ),
    }
    for name in select(SHOWN):
        if name in ds:
            q[name] = _registered(ds, name, unit)
    if window is not None and "completion" in q:
        c = q["completion"]
        c["dates"] = {
            "median": _date(window, c["median"]),
            **{p: [_date(window, v) for v in iv] for p, iv in c["intervals"].items()},
        }
    return q


# What the evidence decided, quantity by quantity (Betancourt 2018, "Calibrating model-based
# inferences"): posterior contraction 1 - var(posterior) / var(prior) says how much narrower
# the evidence made a quantity, the posterior z-score (posterior mean - prior mean) / posterior
# sd how far it moved it. Interval width alone cannot tell a quantity the priors decide from
# one the evidence moved without narrowing.
DECIDED = 0.5  # contraction at or above: decided by the evidence
INFORMED = 0.2  # contraction at or above (or |z| >= MOVED): partly decided by the evidence
MOVED = 1.0
# quantity -> the scale prior and posterior are compared on (log for positive quantities
# whose uncertainty is multiplicative), and the inputs it is made of (for naming the priors
# that decide it); from model/variables.py.
EFFECT = {n: (REGISTRY[n].scale, REGISTRY[n].inputs) for n in select(EFFECT_ROLE)}
# A derived quantity is decided mostly by assumptions when the inputs the priors decide explain
# at least this share of its posterior variance, however much the evidence narrowed its prior
# (a vague prior on the rate narrows a lot even when what is left is the export share's).
ASSUMED_SHARE = 0.5


def _scaled(ds: xr.Dataset, name: str, scale: str) -> np.ndarray:
    x = np.asarray(ds[name], dtype=float).ravel()
    return np.log(x) if scale == "log" else x


def evidence_effect(post: xr.Dataset, prior: xr.Dataset) -> dict:
    """Per quantity: contraction, z-score, and `decided_by` ("evidence", "partly", "priors");
    for a derived quantity also `assumptions` (its inputs the priors decide) and
    `assumed_share` (the share of its posterior variance those inputs explain, the R^2 of a
    linear regression on their scaled draws: exact for a product of inputs on the log scale)."""
    out = {}
    for name, (scale, _) in EFFECT.items():
        if name not in post or name not in prior:
            continue
        a, b = _scaled(post, name, scale), _scaled(prior, name, scale)
        contraction = 1.0 - a.var() / b.var()
        z = (a.mean() - b.mean()) / a.std()
        if contraction >= DECIDED:
            by = "evidence"
        elif contraction >= INFORMED or abs(z) >= MOVED:
            by = "partly"
        else:
            by = "priors"
        out[name] = {
            "scale": scale,
            "contraction": round(float(contraction), 3),
            "z_score": round(float(z), 2),
            "decided_by": by,
        }
    derived = [n for n, (_, inputs) in EFFECT.items() if n in out and inputs]
    # a quantity made of other derived ones (rate_after of the multiplier) comes after them
    for name in sorted(derived, key=lambda n: any(i in derived for i in EFFECT[n][1])):
        scale, inputs = EFFECT[name]
        assumed = [i for i in inputs if i in out and out[i]["decided_by"] == "priors"]
        share = 0.0
        if assumed:
            y = _scaled(post, name, scale)
            x = np.column_stack([_scaled(post, i, scale) for i in assumed])
            x = np.column_stack([x, np.ones(len(y))])
            residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
            share = 1.0 - residual.var() / y.var()
        out[name]["assumptions"] = assumed
        out[name]["assumed_share"] = round(float(share), 3)
        if share >= ASSUMED_SHARE:
            out[name]["decided_by"] = "priors"
    return out


def scenarios_table(idata: xr.DataTree) -> list[dict]:
    """Headline quantities under each of the case's scenarios (saved refits)."""
    unit = idata.attrs["unit"]
    rows = []
    for name, node in idata["scenarios"].children.items() if "scenarios" in idata.children else []:
        ds = node.to_dataset()
        rows.append(
            {
                "scenario": name,
                "description": node.attrs.get("description", ""),
                "priors": json.loads(node.attrs.get("priors", "{}")),
                "weights": json.loads(node.attrs.get("weights", "{}")),
                **alternative_summary(ds, unit),
            }
        )
    return rows


def alternative_summary(ds: xr.Dataset, unit: str) -> dict:
    """Headline quantities of a reading alone or a scenario, and how they were obtained:
    `method` "reweighted" (the main fit's draws with PSIS weights, model/reweight.py) or
    "refit", with the Pareto k and weight efficiency when reweighting was tried."""
    from model import reweight

    if reweight.LOG_WEIGHT in ds:
        w = ds[reweight.LOG_WEIGHT]

        def interval(name, u):
            return reweight.interval_summary(ds[name], w, u, "", INTERVALS, MCSE_QUANTILES)

        doubled = reweight.probability(ds["capacity_multiplier"] >= DOUBLED, w)
    else:

        def interval(name, u):
            return interval_summary(ds[name], u, "")

        doubled = float((ds["capacity_multiplier"] >= DOUBLED).mean())
    out = {
        "rate_before": interval("rate_before", f"{unit}/month"),
        "rate_after": interval("rate_after", f"{unit}/month"),
        "capacity_multiplier": interval("capacity_multiplier", "ratio"),
        "p_capacity_doubled": doubled,
        "method": ds.attrs.get("method", "refit"),
    }
    for key in ("pareto_k", "efficiency", "refit_reason", "reused_from"):
        if key in ds.attrs:
            value = ds.attrs[key]
            out[key] = value if isinstance(value, str) else float(value)
    return out


def monthly_production(post: xr.Dataset, unit: str) -> list[dict]:
    """Production in each month of the window, median and equal-tailed intervals, so that
    "output in June 2025" is read from summary.json (or monthly_production.csv), not
    computed from posterior.nc."""
    production = post["production"]
    return [
        {"month": str(month), **interval_summary(production.sel(month=month), f"{unit}/month", "")}
        for month in production["month"].to_numpy()
    ]


def diagnostics_check(diagnostics: dict, parts: str = "fits") -> dict:
    """The sampler diagnostics as a check like the others (a failure fails the run).
    `parts` names what each entry of diagnostics["fits"] is (a programme: parts of one fit)."""
    failures = [
        f"{f['fit']}: {', '.join(f['failures'])}" for f in diagnostics["fits"] if f["failures"]
    ]
    t = diagnostics["thresholds"]
    return {
        "name": "sampler diagnostics",
        "status": "pass" if diagnostics["passed"] else "fail",
        "rule": f"every fit: R-hat <= {t['max_rhat']}, bulk ESS >= {t['min_ess_bulk']}, tail "
        f"ESS >= {t['min_ess_tail']}, no divergences",
        "finding": "; ".join(failures)
        if failures
        else (
            f"{len(diagnostics['fits'])} {parts}: max R-hat {diagnostics['max_rhat']:.3f}, "
            f"min bulk ESS {diagnostics['min_ess_bulk']:.0f}, "
            f"{diagnostics['divergences']} divergences"
        ),
    }


def summarize(idata: xr.DataTree) -> dict:
    attrs = idata.attrs
    unit = attrs["unit"]
    window = window_of(idata)
    post = idata["posterior"].to_dataset()
    prior = idata["prior"].to_dataset()
    ledger = idata["evidence"].to_dataset()
    outliers = post["outlier_probability"].mean(("chain", "draw"))
    priors = json.loads(attrs["priors"])
    diagnostics = diagnose(idata)
    checks = [diagnostics_check(diagnostics), *run_checks(idata)]
    from model.voi import what_to_measure_next

    return {
        **_header(attrs, diagnostics, checks),
        **what_to_measure_next(idata),  # what_to_measure_next and value_of_learning
        "quantities": quantities(post, unit, window),
        "prior_quantities": quantities(prior, unit, window),
        "evidence_effect": evidence_effect(post, prior),
        "monthly_production": monthly_production(post, unit),
        "readings": readings_table(idata),
        "stages": stages_table(post, prior),
        "scenarios": scenarios_table(idata),
        "model_comparison": model_comparison(attrs["model_version"]),  # stock vs flow, LOO
        "priors": priors,
        "borrowed_priors": [n for n, s in priors.items() if s["borrowed"]],
        "evidence": {
            "ids": [str(i) for i in ledger["row"].to_numpy()],
            "superseded": {
                str(i): str(b)
                for i, b in zip(
                    ledger["row"].to_numpy(), ledger["superseded_by"].to_numpy(), strict=True
                )
                if b
            },
            # rows that relay a figure another row counts (same_as): id -> the counted row
            "counted_as": {
                str(i): str(c)
                for i, c in zip(
                    ledger["row"].to_numpy(), ledger["counted_as"].to_numpy(), strict=True
                )
                if c
            },
            "serial_duplicates": serial_duplicates(idata),
            "rows": int(ledger.sizes["row"]),
            "modelled": int(post.sizes["obs"]),
            "by_kind": pd.Series(ledger["kind"].to_numpy()).value_counts().to_dict(),
            "outlier_probability": {
                k: float(v)
                for k, v in zip(outliers["obs"].to_numpy(), outliers.to_numpy(), strict=True)
            },
        },
    }


def headline(q: dict) -> str:
    """The estimate in one line, from `quantities` (the rates' medians and 95% intervals,
    P(doubled)): what the command line says as soon as the main fit has sampled
    (provisional) and again when the report is written."""

    def rate(name: str) -> str:
        lo, hi = q[name]["intervals"]["0.95"]
        return f"{q[name]['median']:.3g}/month (95%: {lo:.3g}-{hi:.3g})"

    return (
        f"rate before {rate('rate_before')}, after {rate('rate_after')}, "
        f"P(doubled) {q['p_capacity_doubled']['value']:.2f}"
    )


def _header(attrs: dict, diagnostics: dict, checks: list[dict]) -> dict:
    """What every summary opens with: the case, the run's provenance and its verdict."""
    return {
        "schema_version": SCHEMA_VERSION,
        "case_id": attrs["case_id"],
        "case_title": attrs["case_title"],
        "created": attrs["created"],
        "unit": attrs["unit"],
        "window": attrs["window"],
        "provenance": provenance(attrs),
        "passed": all(c["status"] != "fail" for c in checks),
        "diagnostics": diagnostics,
        # fits that failed the diagnostics and were sampled again (diagnostics.sample_with_retry)
        "retries": json.loads(attrs.get("retries", "[]")),
        "checks": checks,
    }


REPOSITORY = Path(__file__).resolve().parent.parent


def repo_relative(path: str) -> str:
    """A saved input path as the reader should see it: relative to the repository, never the
    absolute path of the machine that ran the fit (which says nothing to another reader and
    tells them about that machine). A file outside the repository shows its folder and name."""
    p = Path(path)
    try:
        return p.resolve().relative_to(REPOSITORY).as_posix()
    except ValueError:
        return p.as_posix() if not p.is_absolute() else f".../{p.parent.name}/{p.name}"


def provenance(attrs: dict) -> dict:
    settings = json.loads(attrs["sampler_settings"])
    return {
        "input_hash": attrs["input_hash"],
        "input_files": [repo_relative(f) for f in json.loads(attrs["input_files"])],
        "git_commit": attrs["git_commit"],
        "model_version": attrs["model_version"],
        "capest_version": attrs["capest_version"],
        "packages": json.loads(attrs["packages"]),
        "sampler": attrs["sampler"],
        "draws": settings["draws"],
        "tune": settings["tune"],
        "chains": settings["chains"],
        "seed": int(attrs["seed"]),
        "sampler_settings": settings,
        "evidence_as_of": attrs.get("evidence_as_of", ""),
        "replay": bool(int(attrs.get("replay", 0))),
    }


POOLED_QUANTITIES = {n: (REGISTRY[n].unit, REGISTRY[n].description) for n in select(POOLED)}


def summarize_programme(idata: xr.DataTree) -> dict:
    """The summary of a programme fit (model/programme.py): programme totals in `quantities`
    (the same keys as a single plant's, so the index, history and diff work unchanged), each
    plant's estimate next to its outside view (its prior), and the pooled parameters."""
    from model.programme import plant_dataset, plant_windows

    attrs = idata.attrs
    unit = attrs["unit"]
    post = idata["posterior"].to_dataset()
    prior = idata["prior"].to_dataset()
    diverging = idata["sample_stats"]["diverging"]
    windows = plant_windows(idata)
    plants, fits = [], [check(post, diverging, "programme", names=list(POOLED_QUANTITIES))]
    for plant, title in json.loads(attrs["plants"]).items():
        part, part_prior = plant_dataset(post, plant), plant_dataset(prior, plant)
        fits.append(check(part, diverging, f"plant: {plant}"))
        ledger = idata[f"evidence/{plant}"].to_dataset()
        plants.append(
            {
                "plant": plant,
                "title": title,
                "window": f"{windows[plant].start}/{windows[plant].end}",
                "quantities": quantities(part, unit, windows[plant]),
                "prior_quantities": quantities(part_prior, unit, windows[plant]),
                "evidence_effect": evidence_effect(part, part_prior),
                "stages": stages_table(part, part_prior),
                "evidence": {
                    "rows": int(ledger.sizes["row"]),
                    "by_kind": pd.Series(ledger["kind"].to_numpy()).value_counts().to_dict(),
                },
            }
        )
    diagnostics = combine(fits)
    diagnostics["divergences"] = int(diverging.sum())  # one fit: count its divergences once
    checks = [diagnostics_check(diagnostics, "parts of one fit (the pooled terms, each plant)")]
    checks += plant_checks(idata, plants)
    priors = json.loads(attrs["priors"])
    return {
        **_header(attrs, diagnostics, checks),
        "programme": True,
        "quantities": quantities(post, unit, window_of(idata)),
        "prior_quantities": quantities(prior, unit, window_of(idata)),
        "evidence_effect": evidence_effect(post, prior),
        "monthly_production": monthly_production(post, unit),
        "plants": plants,
        "pooling": {
            name: {
                "posterior": interval_summary(post[name], u, description),
                "prior": interval_summary(prior[name], u, description),
            }
            for name, (u, description) in POOLED_QUANTITIES.items()
        },
        "hyperpriors": json.loads(attrs["hyperpriors"]),
        # one graph with a plant dimension, or one sub-graph per plant (same model; why)
        "programme_model": attrs.get("programme_model", "nested"),
        "programme_model_reasons": json.loads(attrs.get("programme_model_reasons", "[]")),
        "model_comparison": model_comparison(attrs["model_version"]),  # stock vs flow, LOO
        "priors": priors,
        "borrowed_priors": select(SHARED),  # the pooled priors come from the reference class
        "evidence": {"rows": sum(p["evidence"]["rows"] for p in plants)},
    }


def plant_checks(idata: xr.DataTree, plants: list[dict]) -> list[dict]:
    """The single-plant predictive and sensitivity checks (checks.PLANT_IN_PROGRAMME) on each
    plant of a programme fit (programme.plant_view), named `<plant>: <check>` and added to
    the plant's entry of `plants` as `checks`. A fit saved before programmes kept what they
    need (no `log_prior` group) has none."""
    from model.programme import plant_view

    if "log_prior" not in idata.children:
        return []
    out = []
    for entry in plants:
        results = run_checks(plant_view(idata, entry["plant"]), PLANT_IN_PROGRAMME)
        entry["checks"] = results
        out += [{**c, "name": f"{entry['plant']}: {c['name']}", "plant": entry["plant"],
                 "check": c["name"]} for c in results]  # fmt: skip
    return out


def readings_table(idata: xr.DataTree) -> list[dict]:
    """Per reading of the size ratio: prior weight, posterior probability, and the headline
    quantities when that reading alone is assumed (its conditional fit)."""
    const = idata["constant_data"].to_dataset()
    post = idata["posterior"].to_dataset()
    unit = idata.attrs["unit"]
    rows = []
    for name in const["reading"].to_numpy():
        row = {
            "reading": str(name),
            "ratio_low": float(const["ratio_low"].sel(reading=name)),
            "ratio_high": float(const["ratio_high"].sel(reading=name)),
            "prior_weight": float(const["reading_weight"].sel(reading=name)),
            "posterior_probability": float(post["reading_probability"].sel(reading=name).mean()),
        }
        path = f"conditional/{name}"
        if "conditional" in idata.children and name in idata["conditional"].children:
            row.update(alternative_summary(idata[path].to_dataset(), unit))
        rows.append(row)
    return rows


def stages_table(post: xr.Dataset, prior: xr.Dataset) -> list[dict]:
    """Per production stage (only when the case declares stages): its growth, and the
    probability that it binds (has the smallest growth of all stages in a draw), in the
    posterior and in the prior."""
    if "stage_growth" not in post:
        return []

    def growth_and_binding(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
        growth = ds["stage_growth"].transpose(..., "stage").to_numpy()
        growth = growth.reshape(-1, growth.shape[-1])
        binds = np.bincount(growth.argmin(axis=1), minlength=growth.shape[1]) / len(growth)
        return growth, binds

    growth, binds = growth_and_binding(post)
    prior_growth, prior_binds = growth_and_binding(prior)
    return [
        {
            "stage": str(stage),
            "growth": interval_summary(growth[:, i], "ratio", "stage capacity after / before"),
            "binding_probability": float(binds[i]),
            "prior_growth": interval_summary(prior_growth[:, i], "ratio", ""),
            "prior_binding_probability": float(prior_binds[i]),
        }
        for i, stage in enumerate(post["stage"].to_numpy())
    ]


def _date(window: Window, t: float) -> str:
    return window.date_of(t).strftime("%Y-%m-%d")


def serial_duplicates(idata: xr.DataTree) -> dict[str, str]:
    """Serial rows that repeat an item already seen: {row id: id of the first sighting}."""
    const = idata["constant_data"].to_dataset() if "constant_data" in idata.children else {}
    if "serial_duplicate_of" not in const:
        return {}
    dup = const["serial_duplicate_of"]
    return {
        str(i): str(d) for i, d in zip(dup["serial"].to_numpy(), dup.to_numpy(), strict=True) if d
    }
