"""A programme's plants stacked on a `plant` dimension: one graph, whatever the plant count.

The nested programme model (model/programme.py) builds one sub-graph per plant, so its compile
time grows with the plants (about 50 s a plant with nutpie, benchmarks/). When every plant uses
only the core indicators (launches, transfers, production and capacity figures, use lags and
date codes) and the same prior families, the same model can be written once with a `plant`
dimension: each evidence row carries its plant's index, the monthly paths are (plant, month)
arrays on the programme's window (zero outside a plant's own), and each prior's parameters
are vectors over plants. It is the same joint density as the nested model (tests/
test_stacked.py checks the log-density and every variable at a point), and `unstack` turns its
draws into the nested layout (`<plant>::<variable>`, the plant's own dims), so the summary,
report and saved file do not depend on which of the two built the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from model import variables
from model.build import SEP, Readings, measures_use, prior, readings
from model.evidence import EVIDENCE_KINDS, modelled
from model.observation import (
    Observations,
    measurement_draw,
    observations,
    outlier_probability,
    robust_logp,
)
from model.priors import Priors, PriorSpec
from model.production import production_rate, stock_flow

STACK = "plants"  # the sub-model holding the stacked variables: `plants::rate_before` (plant)
STACKING_KINDS = {k.name for k in EVIDENCE_KINDS if k.stacks}
PLANT_PRIORS = tuple(variables.select(variables.PLANT_PRIOR))


@dataclass(frozen=True)
class Plan:
    """Where each plant's months, years, readings and rows sit in the stacked arrays."""

    plants: list[str]
    months: list[slice]  # each plant's months in the programme window
    month_labels: list[list[str]]
    years: list[list[int]]
    year_index: list[list[int]]  # each plant's years among the programme's
    readings: list[list[str]]
    rows: list[slice]  # each plant's rows in the stacked `obs` dimension
    flat_months: list[slice | None]  # each plant's months in `plant_month` (None: no latent use)
    row_ids: list[list[str]]


def why_not_stacked(programme, priors: dict[str, Priors]) -> list[str]:
    """Why the plants cannot share one stacked graph (empty: they can)."""
    reasons = []
    for plant in programme.plants:
        ev = plant.evidence
        other = sorted(set(modelled(ev)["kind"]) - STACKING_KINDS)
        if other:
            reasons.append(f"{plant.id} has {', '.join(other)} rows")
        if "bias_group" in ev and (ev["bias_group"].fillna("") != "").any():
            reasons.append(f"{plant.id} has bias groups")
        if plant.stages:
            reasons.append(f"{plant.id} declares stages")
    if len({len(p.readings) for p in programme.plants}) > 1:
        reasons.append("plants differ in their number of floor-area readings")
    for name in PLANT_PRIORS:
        if len({priors[p.id][name].dist for p in programme.plants}) > 1:
            reasons.append(f"plants' {name} priors are of different families")
    return reasons


def plan(programme, obs: list[Observations]) -> Plan:
    start = programme.window.start.ordinal
    months, row_slices, flat, at, flat_at = [], [], [], 0, 0
    for plant, o in zip(programme.plants, obs, strict=True):
        offset = plant.window.start.ordinal - start
        months.append(slice(offset, offset + plant.window.n_months))
        row_slices.append(slice(at, at + len(o.ids)))
        at += len(o.ids)
        if measures_use(o):  # as in plant_graph: latent use only where a row measures it
            flat.append(slice(flat_at, flat_at + plant.window.n_months))
            flat_at += plant.window.n_months
        else:
            flat.append(None)
    return Plan(
        plants=[p.id for p in programme.plants],
        months=months,
        month_labels=[p.window.labels for p in programme.plants],
        years=[p.window.years for p in programme.plants],
        year_index=[
            [programme.window.years.index(y) for y in p.window.years] for p in programme.plants
        ],
        readings=[list(p.readings) for p in programme.plants],
        rows=row_slices,
        row_ids=[o.ids for o in obs],
        flat_months=flat,
    )


def _stacked_prior(specs: list[PriorSpec]):
    """One random variable over plants whose parameters are the plants' own, as vectors."""
    params = {k: np.array([s.params[k] for s in specs]) for k in specs[0].params}
    return prior(dataclasses.replace(specs[0], params=params), dims="plant")


def stacked_graph(programme, priors: dict[str, Priors], log_e, sd_e, ramp_months) -> Plan:
    """The plants' variables and likelihood, in the current model context (a sub-model named
    STACK), given the pooled terms of build_programme_model. Returns the layout for unstack."""
    plants, window = programme.plants, programme.window
    obs = [observations(p.evidence, p.window, priors[p.id].noise) for p in plants]
    mixes: list[Readings] = [readings(p, priors[p.id]["elasticity"]) for p in plants]
    layout = plan(programme, obs)
    n_months = window.n_months
    pm.modelcontext(None).add_coords(
        {
            "reading": [str(i) for i in range(len(mixes[0].names))],
            "obs": [
                f"{p}{SEP}{i}"
                for p, ids in zip(layout.plants, layout.row_ids, strict=True)
                for i in ids
            ],
            # each plant's own months, one after another: the latent use of each (use_z) of
            # the plants whose rows measure use
            "plant_month": [
                f"{p}{SEP}{m}"
                for p, labels, flat in zip(
                    layout.plants, layout.month_labels, layout.flat_months, strict=True
                )
                if flat is not None
                for m in labels
            ],
        }
    )

    def spread(matrices: list[np.ndarray]) -> np.ndarray:
        """Each plant's (rows, own months) weights on the programme's months, rows stacked."""
        out = np.zeros((sum(m.shape[0] for m in matrices), n_months))
        for m, months, rows in zip(matrices, layout.months, layout.rows, strict=True):
            out[rows, months] = m
        return out

    def joined(field: str) -> np.ndarray:
        return np.concatenate([getattr(o, field) for o in obs])

    plant_of = np.concatenate([np.full(len(o.ids), i) for i, o in enumerate(obs)])
    local = np.arange(n_months)[None, :] - np.array([m.start for m in layout.months])[:, None]
    inside = np.zeros((len(plants), n_months))
    for i, months in enumerate(layout.months):
        inside[i, months] = 1.0
    t_mid = local + 0.5  # each plant's own time (months since its window's start)
    export_start = np.array([p.window.time_of(p.export_start) for p in plants])[:, None]
    exported_share_of_month = np.clip(local + 1 - export_start, 0, 1) * inside

    reading_weight = pm.Data(
        "reading_weight", np.stack([m.weights for m in mixes]), dims=("plant", "reading")
    )
    rate_before = _stacked_prior([priors[p.id]["rate_before"] for p in plants])
    mix_mu = log_e + np.stack([m.log_ln_ratio_mean for m in mixes])
    mix_sigma = pt.sqrt(sd_e**2 + np.stack([m.log_ln_ratio_sd for m in mixes]) ** 2)
    if len(mixes[0].names) == 1:  # as in plant_graph: non-centred
        z = pm.Normal("log_gain_log_z", 0.0, 1.0, dims="plant")
        log_gain_log = pm.Deterministic(
            "log_gain_log", mix_mu[:, 0] + mix_sigma[:, 0] * z, dims="plant"
        )
    else:
        log_gain_log = pm.NormalMixture(
            "log_gain_log", w=reading_weight, mu=mix_mu, sigma=mix_sigma, dims="plant"
        )
    completion = _stacked_prior([priors[p.id]["completion"] for p in plants])
    ramp_months = pm.Deterministic("ramp_months", ramp_months, dims="plant")
    export_share = _stacked_prior([priors[p.id]["export_share"] for p in plants])
    use_lag = _stacked_prior([priors[p.id]["use_lag"] for p in plants])
    burst_sd = _stacked_prior([priors[p.id]["burst_sd"] for p in plants])

    pm.Deterministic("exported_flow", rate_before * export_share, dims="plant")  # as plant_graph
    multiplier = pm.Deterministic("capacity_multiplier", pt.exp(pt.exp(log_gain_log)), dims="plant")
    pm.Deterministic("rate_after", rate_before * multiplier, dims="plant")
    component = pm.logprob.logp(pm.Normal.dist(mix_mu, mix_sigma), log_gain_log[:, None])
    pm.Deterministic(
        "reading_probability",
        pt.special.softmax(pt.log(reading_weight) + component, axis=-1),
        dims=("plant", "reading"),
    )

    def column(x):
        return x[:, None]

    args = (column(rate_before), column(multiplier), column(completion), column(ramp_months))
    production = pm.Deterministic(
        "production", production_rate(t_mid, *args) * inside, dims=("plant", "month")
    )
    pm.Deterministic(
        "production_by_year", pt.dot(production, window.year_of_month.T), dims=("plant", "year")
    )
    exported = column(export_share) * production * exported_share_of_month
    # The stock as in plant_graph, on the programme's months: each plant's latent use lives on
    # its own months only (the same free variables as the nested model), the hazard is 0
    # outside them, so a plant's initial stock waits for its first month. A plant whose rows
    # do not measure use has none: its hazard is the mean pace 1 / use_lag (as plant_graph).
    latent = [i for i, f in enumerate(layout.flat_months) if f is not None]
    sd = column(burst_sd)
    pace = pt.ones((len(plants), n_months))
    if latent:
        m = layout.months
        flat_plant = np.concatenate([np.full(m[i].stop - m[i].start, i) for i in latent])
        flat_month = np.concatenate([np.arange(m[i].start, m[i].stop) for i in latent])
        z_flat = pm.Normal("use_z", 0.0, 1.0, dims="plant_month")
        z = pt.set_subtensor(pt.zeros((len(plants), n_months))[flat_plant, flat_month], z_flat)
        has_latent = np.isin(np.arange(len(plants)), latent)[:, None]
        pace = pt.switch(has_latent, pt.exp(sd * z - sd**2 / 2), 1.0)
    hazard = pace / column(use_lag) * inside
    mean_hazard = 1.0 / column(use_lag)
    steady = column(export_share * rate_before) * pt.exp(-mean_hazard) / -pt.expm1(-mean_hazard)
    initial = steady * (export_start <= 0)  # as in plant_graph: exports began before the window
    first = np.array([m.start for m in layout.months])[:, None]
    used, held, mean_age = stock_flow(exported, hazard, initial, first)
    use = pm.Deterministic("usage", used * inside, dims=("plant", "month"))
    pm.Deterministic("stock", (held - used) * inside, dims=("plant", "month"))

    def seen(weights: list[np.ndarray], path):
        """Per row: the sum over its plant's months of weight x path (only the (plant, month)
        pairs the row's weights touch enter the sum)."""
        w = spread(weights)
        rows, months = np.nonzero(w)
        terms = w[rows, months] * path[plant_of[rows], months]
        return pt.inc_subtensor(pt.zeros(len(plant_of))[rows], terms)

    # what each row measures (model/likelihood.py), on the paths the stacking kinds read;
    # as in plant_graph: terms of paths no plant's ledger reads stay out of the graph
    quantity = seen([o.weights["use"] for o in obs], use)
    if any(o.weights["age"].any() for o in obs):
        quantity = quantity + seen([o.weights["age"] for o in obs], mean_age)
    if any(o.weights["exported"].any() for o in obs):
        quantity = quantity + seen([o.weights["exported"] for o in obs], exported)
    if any(o.weights["production"].any() for o in obs):
        quantity = quantity + seen([o.weights["production"] for o in obs], production)
    predicted = pm.Deterministic("predicted", quantity, dims="obs")

    kind = joined("kind")
    months = spread([o.weights["use"] for o in obs]).sum(axis=1)
    short = np.maximum(1.0 / np.maximum(months, 1e-3) - 1.0, 0.0)  # as in plant_graph
    burst_var = pt.log1p(pt.expm1(burst_sd[plant_of] ** 2) * short)
    sigma = pt.sqrt(joined("sigma") ** 2 + burst_var * (kind == "launches"))

    observed = pm.Data("evidence_observed", joined("observed"), dims="obs")
    lower = pm.Data("evidence_lower", joined("lower"), dims="obs")
    upper = pm.Data("evidence_upper", joined("upper"), dims="obs")
    row_weight = pm.Data("row_weight", np.ones(len(plant_of)), dims="obs")
    share = np.array([priors[p.id].outlier_share for p in plants])[plant_of]
    wide = np.array([priors[p.id].outlier_sd for p in plants])[plant_of]
    # Each row's form (exact or censored) is fixed when the model is built (a programme is
    # fitted once, never refitted with other evidence), so each row gets only its own form's
    # terms: a switch on a constant, which PyTensor removes. The censored form's normal-CDF
    # differences were most of the log-density's cost at 50 plants.
    exact = joined("exact") > 0.5
    forms = [(np.flatnonzero(exact), 1.0), (np.flatnonzero(~exact), 0.0)]

    def by_form(fn, value, mu, sd, lo, hi):
        out = pt.zeros(len(plant_of))
        for rows, form in forms:
            if rows.size:
                part = fn(value[rows], mu[rows], sd[rows], lo[rows], hi[rows], form,
                          share[rows], wide[rows])  # fmt: skip
                out = pt.set_subtensor(out[rows], part)
        return out

    mu = pt.log1p(predicted)
    pm.Deterministic("measurement_sd", sigma, dims="obs")
    measured = (observed, mu, sigma, lower, upper)
    pm.Deterministic("outlier_probability", by_form(outlier_probability, *measured), dims="obs")
    pm.Deterministic("log_likelihood__evidence", by_form(robust_logp, *measured), dims="obs")
    pm.CustomDist(
        "evidence",
        *measured[1:],
        row_weight,
        logp=lambda value, mu, sd, lo, hi, w: w * by_form(robust_logp, value, mu, sd, lo, hi),
        random=lambda mu, sd, lo, hi, w, rng=None, size=None: measurement_draw(
            mu, sd, lo, hi, exact, share, wide, rng=rng, size=size
        ),
        observed=observed,
        dims="obs",
    )
    return layout


def unstack(ds: xr.Dataset, layout: Plan) -> xr.Dataset:
    """The stacked variables (`plants::<v>`) as each plant's own (`<plant>::<v>`, on the plant's
    months, years, readings and rows), as the nested model names them; others kept as they are."""
    prefix = f"{STACK}{SEP}"
    out = {str(k): v for k, v in ds.data_vars.items() if not str(k).startswith(prefix)}
    for name, var in ds.data_vars.items():
        if not str(name).startswith(prefix):
            continue
        base = str(name).removeprefix(prefix)
        for i, plant in enumerate(layout.plants):
            part = var.isel(plant=i, drop=True) if "plant" in var.dims else var
            if "plant_month" in part.dims and layout.flat_months[i] is None:
                continue  # the plant has no latent use (no row measures it), as when nested
            picks = {
                "month": (layout.months[i], layout.month_labels[i]),
                "year": (layout.year_index[i], layout.years[i]),
                "reading": (slice(None), layout.readings[i]),
                "obs": (layout.rows[i], layout.row_ids[i]),
                "plant_month": (layout.flat_months[i], layout.month_labels[i]),
            }
            for dim in [d for d in part.dims if d in picks]:
                where, labels = picks[dim]
                own = f"{plant}{SEP}{'month' if dim == 'plant_month' else dim}"
                part = part.isel({dim: where}).drop_vars(dim, errors="ignore")
                part = part.rename({dim: own}).assign_coords({own: labels})
            out[f"{plant}{SEP}{base}"] = part
    return xr.Dataset(out, attrs=ds.attrs)
