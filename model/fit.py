"""Fit a case: compile once, sample the case once, get each reading of the size ratio and
each scenario by reweighting that fit (or refitting when the weights cannot be trusted), and
return one DataTree holding the posterior, the prior, the evidence and the provenance."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import warnings

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from model import variables
from model.build import Readings, build, build_model, prior_data, prior_families, readings
from model.case import Case
from model.checks import PARETO_K, no_measured_rows, sources_to_refit
from model.diagnostics import CHECKED, check
from model.observation import measurement_draw
from model.priors import Priors, resolve_priors
from model.provenance import ledger_dataset, provenance
from model.reweight import (
    PriorDensity,
    effective_sizes,
    psis,
    reading_log_ratio,
    refit_reason,
    reweighted,
)
from model.sampler import Sampler, SamplerSettings
from model.serials import serial_rows
from model.timing import Stopwatch
from model.voi_refit import refit_flagged

log = logging.getLogger(__name__)

# Scalars and short vectors kept from the conditional fits (one per reading), scenarios and
# leave-one-out refits; the variables kept in the prior group (those the model has).
REFIT_VARS = variables.select(variables.REFIT)
PRIOR_VARS = variables.select(variables.PRIOR_DRAW)


def fit(
    case: Case,
    priors: Priors,
    settings: SamplerSettings = SamplerSettings(),
    *,
    conditional: bool = True,
    checks: bool = True,
    reweight: bool = True,
) -> xr.DataTree:
    """Posterior under the case's reading weights, plus (if `conditional`) the headline
    quantities under each reading alone, and (if `checks`) what the health checks need:
    each of the case's scenarios, and refits without rows that PSIS-LOO cannot leave out
    reliably. Readings and scenarios that change only priors of the same families are the
    main fit reweighted (model/reweight.py) unless PSIS says the weights cannot be trusted;
    then, or with `reweight=False`, they are refitted through the compiled model.
    Deterministic given inputs and settings.seed."""
    watch = Stopwatch("fit")
    watch.begin("building the model")
    model, mix, obs = build(case, priors)
    watch.mark("build model")
    sampler = Sampler(model, settings, watch)
    sampler.retry = True  # a fit that fails the diagnostics is sampled once more
    watch.begin(f"sampling {case.id} with {sampler.name}")
    idata = sampler.sample(mix.weights, settings.seed, stage="sampling (main fit)")
    rng = np.random.default_rng(settings.seed)
    _split_log_densities(idata, obs.kind)
    idata["posterior"] = with_elasticity(idata["posterior"].to_dataset(), mix, rng)
    idata["posterior_predictive"] = _predictive(idata["posterior"].to_dataset(), priors, rng)

    watch.begin("prior predictive draws")
    with model, warnings.catch_warnings():
        # The evidence's random draw is plain numpy (measurement_draw), so numba runs it in
        # object mode and says so; that is expected and costs nothing measurable here.
        warnings.filterwarnings("ignore", message="Numba will use object mode")
        # Serial sightings enter as a Potential, which prior draws cannot honour: the prior
        # predictive is of the measured evidence only (the report's prior columns say so).
        warnings.filterwarnings("ignore", message=".*Potential.*")
        # The C backend (FAST_RUN) compiles this forward pass in seconds, numba in ~20 s.
        prior = pm.sample_prior_predictive(
            draws=settings.prior_draws,
            var_names=[v for v in PRIOR_VARS if v in model.named_vars],
            random_seed=settings.seed,
            compile_kwargs={"mode": "FAST_RUN"},
        )
    watch.mark("prior predictive")
    idata["prior"] = with_elasticity(prior["prior"].to_dataset(), mix, rng)
    idata["prior_predictive"] = prior["prior_predictive"]
    idata["observed_data"] = prior["observed_data"]
    idata["constant_data"] = constant_data(mix, obs)
    idata["evidence"] = ledger_dataset(case)
    sightings = serial_rows(case)
    if sightings is not None:  # which serial rows repeat an item already seen
        idata["constant_data"] = (
            idata["constant_data"]
            .to_dataset()
            .assign(
                serial_duplicate_of=xr.DataArray(
                    np.array(sightings.duplicate_of, dtype=str),
                    dims="serial",
                    coords={"serial": sightings.ids},
                )
            )
        )

    main = Alternatives(idata, sampler.model, sampler.defaults, watch, reweight)
    if conditional:
        for i, name in enumerate(mix.names):
            watch.begin(f"the reading '{name}' alone", i + 1, len(mix.names))
            idata[f"conditional/{name}"] = main.result(
                f"the reading '{name}' alone",
                lambda name=name: reading_log_ratio(main.posterior, name),
                lambda i=i: sampler.sample(np.eye(len(mix.names))[i], settings.seed + i + 1),
            )
    if checks:
        _influence_refits(idata, sampler, mix, settings)
        _source_refits(idata, sampler, mix, settings)
        scenarios = list(case.scenarios)
        for i, name in enumerate(scenarios):
            watch.begin(f"scenario '{name}'", i + 1, len(scenarios))
            idata[f"scenarios/{name}"] = _scenario(case, priors, name, main, sampler, settings)

    watch.mark("other")
    idata.attrs.update(provenance(case, priors, settings, sampler.name))
    if checks:  # what to measure next: values whose reweighting cannot be trusted, refitted
        refit_flagged(idata, case, priors, settings)
        watch.mark("what to measure next (refits)")
    idata.attrs["retries"] = json.dumps(sampler.retries)
    # Seconds per stage of this fit: for the log and benchmarks/, not part of the results.
    timings = {k: round(v, 3) for k, v in watch.seconds.items()}
    timings |= {f"{k} (count)": n for k, n in watch.counts.items() if k != "other"}
    idata.attrs["timings"] = json.dumps(timings)
    return idata


class Alternatives:
    """The case under another reading or other priors: the main fit reweighted (PSIS) when
    its weights can be trusted by the rules every fit meets, else a refit."""

    def __init__(
        self,
        idata: xr.DataTree,
        model: pm.Model,
        defaults: dict[str, np.ndarray],
        watch: Stopwatch,
        reweight: bool = True,
    ):
        self.posterior = idata["posterior"].to_dataset()
        self.diverging = idata["sample_stats"]["diverging"]
        # the model and the pm.Data values the main fit was sampled with
        self.model, self.defaults, self.watch = model, defaults, watch
        self.reweight = reweight
        self._density: PriorDensity | None = None

    @functools.cached_property
    def main_passes(self) -> bool:
        """A main fit that fails its own diagnostics fails the run whatever else is done; a
        refit then cannot change the verdict, so only an untrustworthy k makes one."""
        names = [n for n in CHECKED if n in self.posterior]
        return check(self.posterior, self.diverging, "mixture", names)["passed"]

    def prior_density(self) -> PriorDensity:
        """Compiled on first use (only cases with prior-only scenarios need it)."""
        if self._density is None:
            self._density = PriorDensity(self.model)
        return self._density

    def prior_log_ratio(self, data: dict[str, np.ndarray]) -> xr.DataArray:
        """Log prior density under these pm.Data values over that of the main fit."""
        density = self.prior_density()
        base = self.defaults
        return density(self.posterior, {**base, **data}) - density(self.posterior, base)

    def result(self, what: str, log_ratio, refit, reason: str = "") -> xr.Dataset:
        """`log_ratio()` gives the log density ratio of the target to the main posterior per
        draw; `refit()` samples the target. `reason` (not empty) forces a refit."""
        watch = self.watch
        watch.mark("other")
        weights = None
        if self.reweight and not reason:
            weights = psis(log_ratio())
            node = reweighted(self.posterior, self.diverging, REFIT_VARS, weights)
            reason = refit_reason(weights, effective_sizes(node, REFIT_VARS, weights.efficiency))
            watch.mark("reweighting")
            if reason and not self.main_passes and weights.pareto_k <= PARETO_K:
                log.info(
                    "%s: reweighted although %s: the main fit fails its diagnostics, so "
                    "the run fails and a refit would not change that",
                    what,
                    reason,
                )
                return node
            if not reason:
                log.info(
                    "%s: reweighted the main fit (Pareto k %.2f, efficiency %.2f)",
                    what,
                    weights.pareto_k,
                    weights.efficiency,
                )
                return node
        reason = reason or "reweighting switched off"
        log.info("%s: refitting (%s)", what, reason)
        node = _headline(refit())
        node.attrs.update(method="refit", refit_reason=reason)
        if weights is not None:
            node.attrs.update(pareto_k=weights.pareto_k, efficiency=weights.efficiency)
        return node


def _headline(one: xr.DataTree) -> xr.Dataset:
    node = one["posterior"].to_dataset()[REFIT_VARS]
    node["diverging"] = one["sample_stats"]["diverging"]
    return node


def _influence_refits(idata: xr.DataTree, sampler: Sampler, mix: Readings, settings) -> None:
    """Refit without each row whose Pareto k says PSIS-LOO cannot drop it reliably."""
    if no_measured_rows(idata):
        return
    k = az.loo(idata, pointwise=True, var_name="evidence").pareto_k
    ids = idata["posterior"]["obs"].to_numpy()
    rows = np.flatnonzero(k.to_numpy() > PARETO_K)
    for n, j in enumerate(rows):
        what = f"refit without row {ids[j]} (Pareto k {float(k[j]):.2f})"
        sampler.watch.begin(what, n + 1, len(rows))
        weight = np.ones(len(ids))
        weight[j] = 0.0
        idata[f"influence_refits/{ids[j]}"] = _headline(
            sampler.sample(mix.weights, settings.seed + 100 + j, row_weight=weight)
        )


def _source_refits(idata: xr.DataTree, sampler: Sampler, mix: Readings, settings) -> None:
    """Refit without each source of several rows that PSIS cannot leave out reliably
    (checks.sources_to_refit), keeping its rows' predictions for the source-influence check."""
    for j, (key, rows) in enumerate(sources_to_refit(idata).items()):
        ids = idata["posterior"]["obs"].to_numpy()
        log.info("refitting without the source %s (%d rows)", key, len(rows))
        weight = (~np.isin(ids, rows)).astype(float)
        one = sampler.sample(mix.weights, settings.seed + 500 + j, row_weight=weight)
        node = _headline(one)
        post = one["posterior"].to_dataset()
        for name in ("predicted", "measurement_sd"):
            node[name] = post[name].sel(obs=rows)
        idata[f"source_refits/{key}"] = node


def scenario_priors(case: Case, priors: Priors, name: str) -> tuple[Priors, dict, Readings]:
    """One of the case's [scenarios.<name>]: its priors, its reading weights and the
    mixture they imply."""
    scenario = case.scenarios[name]
    alt = resolve_priors(case, scenario=name) if scenario.priors else priors
    weights = scenario.reading_weights(case.reading_weights)
    alt_mix = readings(dataclasses.replace(case, reading_weights=weights), alt["elasticity"])
    return alt, weights, alt_mix


def scenario_data(alt: Priors, alt_mix: Readings) -> dict[str, np.ndarray]:
    """The pm.Data values of a scenario whose priors have the main fit's families."""
    return {**prior_data(alt, alt_mix), "reading_weight": alt_mix.weights}


def _scenario(case, priors, name, main: Alternatives, sampler: Sampler, settings) -> xr.Dataset:
    """The case under one of its [scenarios.<name>]: other reading weights and/or priors.
    Same prior families: the main fit reweighted by the prior ratio, or a refit of the
    compiled model; other families: the scenario's model is built, compiled and sampled."""
    alt, weights, alt_mix = scenario_priors(case, priors, name)
    seed = settings.seed + 1000
    if prior_families(alt) == prior_families(priors):
        node = main.result(
            f"scenario '{name}'",
            lambda: main.prior_log_ratio(scenario_data(alt, alt_mix)),
            lambda: sampler.sample(alt_mix.weights, seed, **prior_data(alt, alt_mix)),
        )
    else:

        def own_fit():
            own = Sampler(build_model(case, alt), settings, sampler.watch)
            own.retry = sampler.retry
            one = own.sample(alt_mix.weights, seed)
            sampler.retries += own.retries
            return one

        node = main.result(
            f"scenario '{name}'", None, own_fit, reason="it changes the family of a prior"
        )
    node.attrs["description"] = case.scenarios[name].description
    changed = {n: s.describe() for n, s in alt.specs.items() if s != priors.specs[n]}
    node.attrs["priors"] = json.dumps(changed)
    node.attrs["weights"] = json.dumps(weights)
    return node


def constant_data(mix: Readings, obs) -> xr.Dataset:
    """What the checks read about the readings and the modelled rows (their kinds, grades and
    bounds), beside the observed values; a programme saves one per plant (model/programme.py)."""
    return xr.Dataset(
        {
            "reading_weight": ("reading", mix.weights),
            "ratio_low": ("reading", mix.ratio_low),
            "ratio_high": ("reading", mix.ratio_high),
            "kind": ("obs", obs.kind.astype(str)),
            "reliability": ("obs", obs.grade.astype(str)),
            "lower": ("obs", obs.lower),
            "upper": ("obs", obs.upper),
            "exact": ("obs", obs.exact),
        },
        coords={"reading": mix.names, "obs": obs.ids},
    )


def _split_log_densities(idata: xr.DataTree, kinds: np.ndarray) -> None:
    """Move the pointwise log-likelihood and the log-prior densities, computed as
    deterministics with every draw, into the `log_likelihood` and `log_prior` groups.
    The likelihood is also split by evidence stream (dims obs_<kind>; `kinds`: each modelled
    row's kind) for sensitivity."""
    post = idata["posterior"].to_dataset()
    ll = post["log_likelihood__evidence"]
    streams = {"evidence": ll}
    for kind in dict.fromkeys(kinds):
        idx = np.flatnonzero(kinds == kind)
        streams[str(kind)] = ll.isel(obs=idx).rename(obs=f"obs_{kind}")
    extra = [n for n in post.data_vars if n.startswith("log_likelihood__") and n != ll.name]
    for name in extra:  # indicators outside the measurement model, e.g. serials
        streams[name.removeprefix("log_likelihood__")] = post[name]
    prior_names = [n for n in post.data_vars if n.startswith("log_prior__")]
    idata["log_likelihood"] = xr.Dataset(streams)
    idata["log_prior"] = xr.Dataset({n.removeprefix("log_prior__"): post[n] for n in prior_names})
    idata["posterior"] = post.drop_vars([*prior_names, ll.name, *extra])


def _predictive(post: xr.Dataset, priors: Priors, rng: np.random.Generator) -> xr.Dataset:
    """Posterior predictive draws of each row's measured value (log1p scale, before any
    censoring), from the saved `predicted` and `measurement_sd`: no model recompilation."""
    mu = np.log1p(post["predicted"].to_numpy())
    sd = post["measurement_sd"].to_numpy()
    draws = measurement_draw(
        mu, sd, None, None, None, priors.outlier_share, priors.outlier_sd, rng=rng, size=mu.shape
    )
    return xr.Dataset(
        {"evidence": (post["predicted"].dims, draws)}, coords=post["predicted"].coords
    )


def with_elasticity(ds: xr.Dataset, mix: Readings, rng: np.random.Generator) -> xr.Dataset:
    """Add the elasticity and the floor-area ratio to draws of the identified quantities.

    Per draw: a reading from its probability given the draw, a ratio uniform on that reading's
    range, and elasticity = exp(log_gain_log) / ln(ratio), where exp(log_gain_log) is the log
    of the floor-area part of the capacity multiplier."""
    probs = ds["reading_probability"].transpose(..., "reading").to_numpy()
    flat = probs.reshape(-1, probs.shape[-1])
    cumulative = np.cumsum(flat, axis=1)
    u = rng.random(len(flat))[:, None]
    k = np.minimum((u > cumulative).sum(axis=1), len(mix.names) - 1)
    ratio = rng.uniform(mix.ratio_low[k], mix.ratio_high[k])
    shape = probs.shape[:-1]
    dims = ds["capacity_multiplier"].dims
    ratio = ratio.reshape(shape)
    # ln of the floor-area part of the multiplier (the whole of it unless workers enter too)
    elasticity = np.exp(ds["log_gain_log"].to_numpy()) / np.log(ratio)
    return ds.assign(area_ratio=(dims, ratio), elasticity=(dims, elasticity))
