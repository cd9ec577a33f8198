"""The generative model of a case, as a function of the validated case and its priors.

    production[t]  = rate_before x (1 + (capacity_multiplier - 1) x ramp(t))
    capacity_multiplier = (floor-area ratio) ^ elasticity
    exported[t]    = export_share x production[t]   (after exports began)
    stock          the user's stock between delivery and use (model/production.py stock_flow):
                   exported units arrive as they are made; each month the user uses a share
                   1 - exp(-hazard[t]) of what it holds, hazard[t] = exp(burst_sd x z[t] -
                   burst_sd^2 / 2) / use_lag, z[t] ~ Normal(0, 1): use_lag is the mean months
                   an item is held, burst_sd how much the pace of use changes month to month
    usage[t]       = units used in month t (latent, one per month, shared by every row; at
                     the mean pace, hazard 1 / use_lag, when no row measures use)
    launches(P)    = the sum of usage over the months of P (a share of a partial month)
    transfers(D)   = exported production up to date D
    use_lag / date_code rows = the mean age of the items used in the row's month
    production(P)  = production in period P; capacity(D) = 12 x production[D]
    shipments(P)   = exported production in P / (units_per_shipment x shipment_share)
    workforce_ratio rows measure the worker ratio W; with them the multiplier is
                     area ratio ^ elasticity x W ^ labour_elasticity (Cobb-Douglas)
    declared stages ([stages.<s>]): each has a growth g_s (stage_ratio rows measure it) and
                     the multiplier is the smooth minimum of the assembly floor's and the g_s
    each evidence row ~ censored, robust normal on log(1 + predicted quantity), times
                     exp(source_bias) for rows in a bias_group; rows that relay one figure
                     (`same_as`) enter once (model/evidence.py)
    serial sightings ~ the German-tank likelihood on the production path (model/serials.py)

The floor-area ratio is ambiguous: each reading of the wording gives a range. Rather than a
discrete reading (which NUTS cannot sample), the model samples the identified quantity
log(elasticity x ln ratio) from the mixture that the elasticity prior and the readings imply,
and records each reading's posterior probability. See ARCHITECTURE.md for dimension names.

`dynamics="flow"` builds the model as it was before the stock (use = export_share x
production lagged by use_lag, with independent salvo noise per row); it is kept only so that
benchmarks/compare_models.py can compare the two by PSIS-LOO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.transforms import Interval

from model.candidates import candidate_paths
from model.case import ASSEMBLY, Case
from model.evidence import modelled
from model.observation import (
    Observations,
    measurement_draw,
    observations,
    outlier_probability,
    robust_logp,
)
from model.priors import Priors, PriorSpec, stage_prior
from model.production import production_rate, smooth_min, stock_flow, usage
from model.serials import (
    LAG_BOUNDED_RULES,
    RIDGE_TARGET_ACCEPT,
    SerialData,
    Serials,
    ShiftedLog,
    candidates,
    lag_bound,
    ridge_shift,
    serial_data,
    serial_logp,
    serial_rows,
)


@dataclass(frozen=True)
class Readings:
    """The readings of the floor-area ratio and the mixture they imply for
    log(elasticity x ln ratio)."""

    names: list[str]
    weights: np.ndarray
    ratio_low: np.ndarray
    ratio_high: np.ndarray
    mu: np.ndarray  # mixture component means
    sigma: np.ndarray  # mixture component sds
    log_ln_ratio_mean: np.ndarray  # mean and sd of log(ln ratio), ratio uniform on the range
    log_ln_ratio_sd: np.ndarray


def readings(case: Case, elasticity: PriorSpec) -> Readings:
    """Each reading's ratio range from its ledger rows; its mixture component is the
    log-normal elasticity prior times ln(ratio) with ratio uniform on the range, matched in
    the first two moments of the log (the range is narrow, so the match is close)."""
    ev = case.evidence
    rows = modelled(ev)
    rows = rows[rows["kind"] == "area_ratio"]
    names = case.readings
    low, high, grid_mean, grid_sd = [], [], [], []
    for name in names:
        r = rows[rows["reading"] == name]
        lo = float(np.nanmin(np.concatenate([r["lower"], r["value"]])))
        hi = float(np.nanmax(np.concatenate([r["upper"], r["value"]])))
        grid = np.log(np.log(np.linspace(lo, hi, 201)))  # log(ln ratio), ratio ~ Uniform(lo, hi)
        low.append(lo)
        high.append(hi)
        grid_mean.append(grid.mean())
        grid_sd.append(grid.std())
    return Readings(
        names,
        np.array([case.reading_weights[n] for n in names]),
        np.array(low),
        np.array(high),
        np.log(elasticity.params["median"]) + np.array(grid_mean),
        np.hypot(elasticity.params["sigma"], np.array(grid_sd)),
        np.array(grid_mean),
        np.array(grid_sd),
    )


def prior_data(priors: Priors, mix: Readings) -> dict[str, np.ndarray]:
    """Every prior parameter, by the name of the pm.Data that holds it in the model. A
    scenario with other parameters of the same families refits without recompiling."""
    data = {
        f"prior__{s.name}__{k}": np.asarray(v)
        for s in priors.specs.values()
        for k, v in s.params.items()
        if s.name != "elasticity"  # it enters through the mixture below
    }
    data["prior__log_gain_log__mu"] = mix.mu
    data["prior__log_gain_log__sigma"] = mix.sigma
    return data


def prior_families(priors: Priors) -> dict[str, str]:
    return {name: spec.dist for name, spec in priors.specs.items()}


def _family(dist: str, p: dict):
    """A prior family's PyMC class and its arguments from the parameters `p`."""
    match dist:
        case "LogNormal":
            return pm.LogNormal, {"mu": pt.log(p["median"]), "sigma": p["sigma"]}
        case "Beta":
            return pm.Beta, {"alpha": p["alpha"], "beta": p["beta"]}
        case "HalfNormal":
            return pm.HalfNormal, {"sigma": p["sigma"]}
        case "Uniform":
            return pm.Uniform, {"lower": p["lower"], "upper": p["upper"]}
    raise ValueError(f"unknown distribution {dist}")


def prior(spec: PriorSpec, **kwargs):
    """A PyMC random variable from a PriorSpec; its parameters are pm.Data (see prior_data)."""
    p = {k: pm.Data(f"prior__{spec.name}__{k}", v) for k, v in spec.params.items()}
    family, args = _family(spec.dist, p)
    return family(spec.name, **args, **kwargs)


# Families on (0, inf), which the ridge coordinate (serials.ShiftedLog) maps onto the line.
POSITIVE_FAMILIES = ("LogNormal", "HalfNormal")


# Sightings on several dates: "capped", with use_lag bounded, at RIDGE_TARGET_ACCEPT (why and
# what it measured: serials.py, "Geometry"). None would keep log(rate_before) and the fit's
# own target acceptance.
SEVERAL_DATES_RULE: str | None = "capped"


def ridge_rule(serials, priors: Priors) -> str | None:
    """Which bound rate_before's sampler coordinate is measured from (serials.ridge_shift), or
    None for log(rate_before), for a prior on (0, inf): the largest serial's when every
    sighting is on one date (then it binds); on several dates SEVERAL_DATES_RULE, with use_lag
    kept below serials.lag_bound (lag_transform), if use_lag's prior lives on (0, inf) too and
    every sighting is after its block's start. Without the lag's bound "capped" stuck on
    the serial recovery test's plant (serials.py, "Geometry"; benchmarks/README.md)."""
    if serials is None or priors["rate_before"].dist not in POSITIVE_FAMILIES:
        return None
    if serials.one_bound:
        return "largest"
    if priors["use_lag"].dist in POSITIVE_FAMILIES and lag_bound(serials) > 0:
        return SEVERAL_DATES_RULE
    return None


def lag_transform(serials, rule: str | None) -> dict:
    """use_lag's transform under a several-date ridge rule: onto (0, serials.lag_bound), so
    that the sampler never reaches a lag that leaves a sighting no item made (serials.py,
    "Geometry"); otherwise PyMC's default for its family (no argument). The bound is a
    constant of the graph (PyMC's Interval takes constants, or the distribution's own
    parameters): a sighting earlier than every other compiles the model again."""
    if rule not in LAG_BOUNDED_RULES:
        return {}
    return {"default_transform": Interval(0.0, lag_bound(serials))}  # not chained to the log


def shifted_prior(spec: PriorSpec, shift, target_accept: float | None = None):
    """The same prior as prior(spec), sampled on the coordinate log(value) - shift
    (serials.ShiftedLog, which asks the sampler for at least `target_accept`): its density,
    draws and pm.Data are prior(spec)'s; only the sampler's coordinate differs. For a family
    on (0, inf) only."""
    p = {k: pm.Data(f"prior__{spec.name}__{k}", v) for k, v in spec.params.items()}
    keys = list(p)

    def family(values, size=None):
        family, args = _family(spec.dist, dict(zip(keys, values, strict=True)))
        return family.dist(**args, size=size)

    def dist(shift, *values_and_size):  # CustomDist passes the size last
        return family(values_and_size[:-1], values_and_size[-1])

    def logp(value, shift, *values):  # the prior's own density: the shift is not in it
        return pm.logp(family(values), value)

    return pm.CustomDist(
        spec.name, shift, *p.values(), dist=dist, logp=logp, transform=ShiftedLog(target_accept)
    )


@dataclass(frozen=True)
class Pooled:
    """Programme-level terms a plant's graph uses instead of its own priors (model/programme.py):
    the floor-area elasticity's log location and plant-to-plant sd, and the plant's ramp."""

    log_elasticity: pt.TensorVariable
    elasticity_sd: pt.TensorVariable
    ramp_months: pt.TensorVariable


DYNAMICS = ("stock", "flow")
SEP = "::"  # a programme's names: `<plant>::<variable>` (model/programme.py, model/stacked.py)


def measures_use(obs: Observations) -> bool:
    """Whether any row depends on the month-to-month pace of use: launches (the use in their
    months) or use_lag and date_code rows (the age of what was used, which the pace sets).
    Only then does the stock model need its latent monthly use."""
    return bool(obs.weights["use"].any() or obs.weights["age"].any())


class Built(NamedTuple):
    """A case's model and what building it computed, so that nobody computes it again."""

    model: pm.Model
    readings: Readings
    observations: Observations


def build(
    case: Case, priors: Priors, dynamics: str = "stock", paths: tuple[str, ...] | None = None
) -> Built:
    """The case's model. Its graph also holds every monthly path the case's candidate
    measurements read (`paths`, by default candidate_paths(case)), with zero weights when no
    ledger row reads them: the joint density is the same, and the value-of-information refits
    sample the candidates' rows through this compiled model (model/voi_refit.py)."""
    paths = candidate_paths(case) if paths is None else paths
    with pm.Model() as model:
        mix, obs = plant_graph(case, priors, dynamics=dynamics, paths=paths)
        add_log_priors(model)
    return Built(model, mix, obs)


def build_model(case: Case, priors: Priors, dynamics: str = "stock") -> pm.Model:
    return build(case, priors, dynamics).model


def add_log_priors(model: pm.Model) -> None:
    """Each free variable's log prior density per draw, on the variable's dims, for the
    power-scaling sensitivity check: `log_prior__<v>`; in a programme `<plant>::log_prior__<v>`
    (stacked: `plants::log_prior__<v>` on the `plant` dim, which unstack splits) and
    `log_prior__<v>` for the pooled terms. The check scales the priors an analyst sets: a
    non-centred N(0, 1) (`*_z`: use_z, log_gain_log_z, ramp_z) is structure, not one; its
    scale (burst_sd, the pooled sds) carries the prior."""
    with model:
        for rv in list(model.free_RVs):
            if rv.name.endswith("_z"):
                continue
            owner, _, name = rv.name.rpartition(SEP)
            pm.Deterministic(
                f"{owner}{SEP}log_prior__{name}" if owner else f"log_prior__{name}",
                pm.logp(rv, rv),
                dims=model.named_vars_to_dims.get(rv.name),
            )


def plant_graph(
    case: Case,
    priors: Priors,
    ns: str = "",
    pooled: Pooled | None = None,
    dynamics: str = "stock",
    paths: tuple[str, ...] = (),
) -> tuple[Readings, Observations]:
    """One plant's variables and likelihood, in the current model context. Alone (`ns` ""),
    this is the whole model; in a programme each plant is a named sub-model whose dims are
    prefixed with `ns` and whose elasticity and ramp come from `pooled`. `paths`: monthly
    paths to keep in the graph though no row reads them (kept_paths). Returns the readings
    and the observations it built the likelihood from."""
    obs: Observations = observations(case.evidence, case.window, priors.noise)
    mix = readings(case, priors["elasticity"])
    window = case.window
    t_mid = np.arange(window.n_months) + 0.5
    export_start = window.time_of(case.export_start)
    exported_share_of_month = np.clip(np.arange(window.n_months) + 1 - export_start, 0, 1)
    years = window.years
    serials = serial_rows(case)
    # The plant's dimensions; `ns` prefixes their names ("<plant>::" in a programme, whose
    # plants have different windows and ledgers; PyMC keeps all coords in the root model).
    coords = {"month": window.labels, "year": years, "reading": mix.names, "obs": obs.ids}
    if obs.bias_groups:
        coords["bias_group"] = obs.bias_groups
    if serials is not None:
        coords["serial"] = serials.ids
    if case.stages:
        coords["stage"] = [ASSEMBLY, *case.stages]
    pm.modelcontext(None).add_coords({f"{ns}{k}": v for k, v in coords.items()})
    sightings = None if serials is None else serial_data(serials, ns)
    values = row_values(obs, kept_paths(obs, paths))
    rows = _row_data(values, ns)
    # Mutable so that one compiled model serves every reading (conditional fits).
    reading_weight = pm.Data("reading_weight", mix.weights, dims=f"{ns}reading")

    # On the serials' ridge rate_before is made below, once the shift of its ridge coordinate
    # (serials.ridge_shift) can be; otherwise the graph is what it always was.
    rule = ridge_rule(serials, priors)
    rate_before = None if rule else prior(priors["rate_before"])
    if pooled is None:
        mix_mu = pm.Data("prior__log_gain_log__mu", mix.mu, dims=f"{ns}reading")
        mix_sigma = pm.Data("prior__log_gain_log__sigma", mix.sigma, dims=f"{ns}reading")
    else:
        # The plant's elasticity ~ LogNormal(log_elasticity, elasticity_sd), integrated out
        # as in the single-plant mixture (see readings()).
        mix_mu = pooled.log_elasticity + mix.log_ln_ratio_mean
        mix_sigma = pt.sqrt(pooled.elasticity_sd**2 + mix.log_ln_ratio_sd**2)
    if pooled is not None and len(mix.names) == 1:
        # One reading in a programme: non-centred, so that a small plant-to-plant sd does not
        # make a funnel (a mixture of several readings cannot be written this way).
        z = pm.Normal("log_gain_log_z", 0.0, 1.0)
        log_gain_log = pm.Deterministic("log_gain_log", mix_mu[0] + mix_sigma[0] * z)
    else:
        log_gain_log = pm.NormalMixture(
            "log_gain_log", w=reading_weight, mu=mix_mu, sigma=mix_sigma
        )  # log(elasticity x ln ratio) = log(ln capacity_multiplier)
    completion = prior(priors["completion"])
    if pooled is None:
        ramp_months = prior(priors["ramp_months"])
    else:
        ramp_months = pm.Deterministic("ramp_months", pooled.ramp_months)
    export_share = prior(priors["export_share"])
    use_lag = prior(priors["use_lag"], **lag_transform(serials, rule))
    burst_sd = prior(priors["burst_sd"])

    log_multiplier = pt.exp(log_gain_log)  # ln(area ratio ^ elasticity)
    # The variables a row may measure directly (likelihood.OnVariable), by name.
    direct = {"completion": completion, "export_share": export_share}
    direct |= {"ramp_months": ramp_months, "use_lag": use_lag, "burst_sd": burst_sd}
    if "workforce_ratio" in obs.variable:
        # Cobb-Douglas in floor area and workers: ln M = a ln(area) + b ln(workers).
        workers = direct["workforce_ratio"] = prior(priors["workforce_ratio"])
        log_multiplier = log_multiplier + prior(priors["labour_elasticity"]) * pt.log(workers)
    if case.stages:
        # Bottleneck: the plant makes no more than its slowest stage. The assembly floor's
        # growth is the multiplier above; each declared stage has its own (model/priors.py).
        # Assumption: every stage ran at capacity before the expansion (balanced plant).
        direct |= {stage_prior(s): prior(priors[stage_prior(s)]) for s in case.stages}
        declared = pt.stack([direct[stage_prior(s)] for s in case.stages])
        log_growth = pt.concatenate([log_multiplier[None], pt.log(declared)])
        pm.Deterministic("stage_growth", pt.exp(log_growth), dims=f"{ns}stage")
        log_multiplier = smooth_min(log_growth)
    first = None if serials is None else first_serials(serials, sightings)
    if rule:
        # The serials bound rate_before below through every other variable of the production
        # path: sampled as log(rate_before) less that bound, the ridge is straight (serials.py).
        shape = production_rate(t_mid, 1.0, pt.exp(log_multiplier), completion, ramp_months)
        shift = ridge_shift(sightings, shape, use_lag, first, rule)
        ask = RIDGE_TARGET_ACCEPT if rule in LAG_BOUNDED_RULES else None  # several dates
        rate_before = shifted_prior(priors["rate_before"], shift, ask)
    direct["rate_before"] = rate_before
    # The one rate the launch and transfer evidence sees directly (rate_before alone also
    # needs the export share, which only its prior sets unless a row measures it).
    pm.Deterministic("exported_flow", rate_before * export_share)
    multiplier = pm.Deterministic("capacity_multiplier", pt.exp(log_multiplier))
    pm.Deterministic("rate_after", rate_before * multiplier)
    component = pm.logprob.logp(pm.Normal.dist(mix_mu, mix_sigma), log_gain_log)
    pm.Deterministic(
        "reading_probability",
        pt.special.softmax(pt.log(reading_weight) + component),
        dims=f"{ns}reading",
    )

    production = pm.Deterministic(
        "production",
        production_rate(t_mid, rate_before, multiplier, completion, ramp_months),
        dims=f"{ns}month",
    )
    pm.Deterministic(
        "production_by_year", pt.dot(window.year_of_month, production), dims=f"{ns}year"
    )
    exported = export_share * production * exported_share_of_month
    if dynamics == "stock":
        if measures_use(obs):
            # Latent monthly use, shared by every row that covers the month: nested and
            # overlapping counts agree or conflict through the same months (non-centred z).
            z = pm.Normal("use_z", 0.0, 1.0, dims=f"{ns}month")
            hazard = pt.exp(burst_sd * z - burst_sd**2 / 2) / use_lag
        else:
            # No row measures use: the latent months would touch no likelihood term, so NUTS
            # would only sample their prior (one dimension a month, the slowest part of a
            # serials- or production-only plant). Without them every other variable's
            # posterior is the same; use follows the stock at its mean pace (data/README.md).
            hazard = pt.ones(window.n_months) / use_lag
        initial = None
        if export_start <= 0:
            # Exports began before the window: the user then holds the steady-state stock of
            # the exported flow at the pre-expansion rate (an assumption, data/README.md).
            mean_hazard = 1.0 / use_lag
            initial = export_share * rate_before * pt.exp(-mean_hazard) / -pt.expm1(-mean_hazard)
        used, held, mean_age = stock_flow(exported, hazard, initial)
        use = pm.Deterministic("usage", used, dims=f"{ns}month")
        pm.Deterministic("stock", held - used, dims=f"{ns}month")  # held at each month's end
        age = pt.dot(rows["age"], mean_age)
    else:
        use = pm.Deterministic(
            "usage",
            usage(
                t_mid,
                rate_before,
                multiplier,
                completion,
                ramp_months,
                export_share,
                use_lag,
                export_start,
            ),
            dims=f"{ns}month",
        )
        age = rows["age"].sum(axis=1) * use_lag  # the flow model's lag is use_lag
    # What each row measures (model/likelihood.py): one product per path the graph keeps (of
    # every row: zeros for the rows of other paths), then the variables rows measure directly.
    # Terms no row (nor candidate, kept_paths) has stay out of the graph (compile time grows
    # with it); use, exported and age are always in, in this order, so that the graph and its
    # numbers are those of before.
    quantity = pt.dot(rows["use"], use) + pt.dot(rows["exported"], exported) + age
    if "production" in rows:
        quantity = quantity + pt.dot(rows["production"], production)
    for name in dict.fromkeys(obs.variable[obs.variable != ""]):
        quantity = quantity + rows[f"is_{name}"] * direct[name]
    if "shipped" in rows:  # the "shipped" path: exported / per_shipment
        # Shipments seen = exported units in the period / (units a carrying shipment holds
        # x share of shipments that carry the product); both priors come from the case.
        per_shipment = prior(priors["units_per_shipment"]) * prior(priors["shipment_share"])
        quantity = quantity + pt.dot(rows["shipped"], exported) / per_shipment
    if obs.bias_groups:
        # A source's figures may share one multiplicative bias (rows in a bias_group).
        bias_sd = pm.Data("prior__source_bias__sigma", priors.bias_sd)
        bias = pm.Normal("source_bias", 0.0, bias_sd, dims=f"{ns}bias_group")
        factor = pt.exp(pt.concatenate([bias, pt.zeros(1)]))[rows["bias_index"]]
        quantity = quantity * factor
    predicted = pm.Deterministic("predicted", quantity, dims=f"{ns}obs")

    months = rows["use"].sum(axis=1)
    if dynamics == "stock":
        # Salvos inside a month are not shared between rows: a row shorter than a month sees
        # its share of the month's use times day-to-day clustering, taken as independent with
        # the month-to-month sd (an assumption): variance log(1 + (e^sd^2 - 1)(1/n - 1)) for
        # a row covering n < 1 months, none for a row of whole months.
        short = pt.maximum(1.0 / pt.maximum(months, 1e-3) - 1.0, 0.0)
        burst_var = pt.log1p(pt.expm1(burst_sd**2) * short)
    else:
        # The flow model: each row's own salvo noise, as if its months were independent.
        burst_var = pt.log1p(pt.expm1(burst_sd**2) / pt.maximum(months, 1e-3))
    sigma = pt.sqrt(rows["sd"] ** 2 + burst_var * rows["is_launches"])

    # The observed values and their forms are data, so that checks can refit one compiled
    # model without a row (row_weight 0) or with simulated evidence (calibration).
    observed = pm.Data("evidence_observed", values["evidence_observed"], dims=f"{ns}obs")
    lower = pm.Data("evidence_lower", values["evidence_lower"], dims=f"{ns}obs")
    upper = pm.Data("evidence_upper", values["evidence_upper"], dims=f"{ns}obs")
    exact = pm.Data("evidence_exact", values["evidence_exact"], dims=f"{ns}obs")
    row_weight = pm.Data("row_weight", values["row_weight"], dims=f"{ns}obs")
    mu = pt.log1p(predicted)
    pm.Deterministic("measurement_sd", sigma, dims=f"{ns}obs")
    measured = (mu, sigma, lower, upper, exact, priors.outlier_share, priors.outlier_sd)
    pm.Deterministic(
        "outlier_probability", outlier_probability(observed, *measured), dims=f"{ns}obs"
    )
    # Pointwise log-likelihood and log-prior densities, computed with every draw (cheap),
    # for LOO and power-scaling sensitivity; fit() moves them to their own groups.
    pm.Deterministic("log_likelihood__evidence", robust_logp(observed, *measured), dims=f"{ns}obs")

    if serials is not None:
        _serial_likelihood(sightings, first, production, use_lag, export_start, ns)

    pm.CustomDist(
        "evidence",
        *measured,
        row_weight,
        logp=lambda value, mu, sd, lo, hi, ex, share, wide, w: (
            w * robust_logp(value, mu, sd, lo, hi, ex, share, wide)
        ),
        random=lambda mu, sd, lo, hi, ex, share, wide, w, rng=None, size=None: measurement_draw(
            mu, sd, lo, hi, ex, share, wide, rng=rng, size=size
        ),
        observed=observed,
        dims=f"{ns}obs",
    )
    return mix, obs


# Paths whose term adds no variable to the graph (model/likelihood.py PATHS; "shipped" adds
# the shipment priors): kept for a candidate measurement though no ledger row reads them,
# with zero weights, they leave the joint density as it is.
FREE_PATHS = ("use", "exported", "age", "production")


def kept_paths(obs: Observations, paths: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The monthly paths the graph reads, in PATHS order: use, exported and age always, the
    others when a row reads them, and those of `paths` that add no variable (FREE_PATHS)."""
    return tuple(
        p
        for p, w in obs.weights.items()
        if p in ("use", "exported", "age") or w.any() or (p in paths and p in FREE_PATHS)
    )


def row_values(obs: Observations, paths: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every array the graph holds on the rows' dimension `obs` (and `month`), by the name of
    its pm.Data: what the rows read of each kept path (`paths`) and their noise (names
    `evidence_<what>`), then their measured values, bounds and weights. The same arrays of
    a longer ledger (candidates' rows appended: model/voi_refit.py) are data for the same
    compiled model."""
    values = {f"evidence_weights__{p}": obs.weights[p] for p in paths}
    values["evidence_sd"] = obs.sigma
    values["evidence_is_launches"] = (obs.kind == "launches") * 1.0
    for name in dict.fromkeys(obs.variable[obs.variable != ""]):
        values[f"evidence_is__{name}"] = (obs.variable == name) * 1.0
    if obs.bias_groups:
        values["evidence_bias_index"] = obs.bias_index
    return values | {
        "evidence_observed": obs.observed,
        "evidence_lower": obs.lower,
        "evidence_upper": obs.upper,
        "evidence_exact": obs.exact,
        "row_weight": np.ones(len(obs.ids)),
    }


def _row_data(values: dict[str, np.ndarray], ns: str = "") -> dict:
    """What the rows read and their noise (row_values), as pm.Data (dims obs, month), not
    constants: the compiled graph is then the same for a ledger with one row more of kinds
    it has, and the compile cache (model/callbacks.py) serves the rerun. nutpie knows only
    the data its graph uses: the paths kept (kept_paths), not all of PATHS."""
    short = {
        "evidence_sd": "sd",
        "evidence_is_launches": "is_launches",
        "evidence_bias_index": "bias_index",
    }
    data = {}
    for name, value in values.items():  # in row_values' order, which is that of before
        if name.startswith("evidence_weights__"):
            key, dims = name.removeprefix("evidence_weights__"), (f"{ns}obs", f"{ns}month")
        elif name.startswith("evidence_is__"):
            key, dims = "is_" + name.removeprefix("evidence_is__"), f"{ns}obs"
        elif name in short:
            key, dims = short[name], f"{ns}obs"
        else:  # the measured values, bounds and weights: plant_graph makes them
            continue
        data[key] = pm.Data(name, value, dims=dims)
    return data


def first_serials(serials: Serials, data: SerialData) -> pt.TensorVariable:
    """Each sighting's block's first serial: known, or uniform between the block's lower
    bound and the lowest serial seen (a free variable per such block)."""
    firsts = []
    for i, block in enumerate(serials.blocks):
        if block.first is not None:
            firsts.append(pt.as_tensor(block.first))
        elif np.isnan(serials.lowest[i]):
            firsts.append(pt.as_tensor(block.first_lower))  # no sighting: unused
        else:
            firsts.append(
                pm.Uniform(f"first_serial__{block.name}", block.first_lower, data.lowest[i])
            )
    return pt.stack(firsts)[data.block_of]


def _serial_likelihood(
    serials: SerialData, first, production, use_lag, export_start: float, ns: str = ""
) -> None:
    """Serial sightings (model/serials.py): per sighting, the block's items exported and
    made by the sighting's date less `use_lag` (`serial_candidates`), the serial counted
    from its block's `first`; the sightings' log-likelihood as a Potential plus a
    deterministic copy (Potentials are invisible to PyMC's log-likelihood; LOO and psense
    need it)."""
    made, before = candidates(serials, production, use_lag, export_start)
    pm.Deterministic("serial_candidates", made - before, dims=f"{ns}serial")
    needed = serials.serial - first + 1
    ll = serial_logp(made, before, serials.order, needed, serials.width)
    pm.Deterministic("log_likelihood__serials", ll, dims=f"{ns}serial")
    pm.Potential("serials", pt.sum(serials.weight * ll))
