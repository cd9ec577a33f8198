"""Fit a case: compile once, sample the case once, get each reading of the size ratio and
each scenario by reweighting that fit (or refitting when the weights cannot be trusted), and
return one DataTree holding the posterior, the prior, the evidence and the provenance."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from dataclasses import dataclass, field
from importlib.util import find_spec

import numpy as np
import pymc as pm
import xarray as xr

from model import compiled, loo, variables, voi, warmup
from model.build import Readings, build, build_model, prior_data, prior_families, readings
from model.case import Case
from model.checks import no_measured_rows, sources_to_refit
from model.diagnostics import CHECKED, check
from model.distribute import (
    Job,
    cached,
    cluster,
    inside_job,
    job_seed,
    run,
    scheduler_address,
    structural_key,
)
from model.loo import PARETO_K
from model.moment_match import MOMENT_MATCHED, Density, match
from model.observation import measurement_draw
from model.prior_draws import prior_predictive
from model.priors import Priors, resolve_priors
from model.provenance import ledger_dataset, provenance
from model.reuse import GROUP, REUSED, Previous, layout, proposal, reweighing
from model.reweight import (
    ROW_PREDICTIONS,
    SAMPLE,
    PriorDensity,
    effective_sizes,
    psis,
    reading_log_ratio,
    refit_reason,
    reweighted,
)
from model.reweight import check as check_reweighted  # beside diagnostics.check
from model.sampler import Sampler, SamplerSettings, Start, stored_names
from model.serials import serial_rows
from model.summary import headline, quantities
from model.timing import ESTIMATE_SAID, Stopwatch, progress_log
from model.voi_refit import refit_flagged

log = logging.getLogger(__name__)

# Scalars and short vectors kept from the conditional fits (one per reading), scenarios and
# leave-one-out refits; the variables kept in the prior group (those the model has).
REFIT_VARS = variables.select(variables.REFIT)
# what moment matching's density gives at moved draws: a refit's variables, and what the
# checks read of a row left out
DENSITY_VARS = [*REFIT_VARS, *ROW_PREDICTIONS]
PRIOR_VARS = variables.select(variables.PRIOR_DRAW)


def fit(
    case: Case,
    priors: Priors,
    settings: SamplerSettings = SamplerSettings(),
    *,
    conditional: bool = True,
    checks: bool = True,
    reweight: bool = True,
    scheduler: str | None = None,
    previous: Previous | None = None,
) -> xr.DataTree:
    """Posterior under the case's reading weights, plus (if `conditional`) the headline
    quantities under each reading alone, and (if `checks`) what the health checks need:
    each of the case's scenarios, and refits without rows that PSIS-LOO cannot leave out
    reliably. Readings and scenarios that change only priors of the same families are the
    main fit reweighted (model/reweight.py) unless PSIS says the weights cannot be trusted;
    then, or with `reweight=False`, they are refitted through the compiled model: one job
    each (`run_refits`), here one after another, or on the Dask cluster of `scheduler` (or
    $CAPEST_SCHEDULER). `previous`: an earlier run's refits (model/reuse.py), reweighted to a
    target before it is refitted. Deterministic given inputs, settings.seed and `previous`,
    wherever the jobs run."""
    watch = Stopwatch("fit")
    watch.begin("building the model")
    model, mix, obs = build(case, priors)
    watch.mark("build model")
    # On a machine whose caches are cold, what this fit compiles after nutpie's compile is
    # compiled meanwhile in a child, on the core nutpie leaves idle (model/warmup.py)
    side = warmup.Beside(functools.partial(_side_compiles, model, settings))
    try:
        with compiled.on_miss(side.start):
            sampler = Sampler(model, settings, watch)
        sampler.retry = True  # a fit that fails the diagnostics is sampled once more
        watch.begin(f"sampling {case.id} with {sampler.name}")
        warm = settings.refit_tune is not None  # refits start where the main fit ended
        idata = sampler.sample(
            mix.weights, settings.seed, stage="sampling (main fit)", keep_start=warm
        )
        # a refit tunes no longer than the main fit did (a quick look's short tuning stays short)
        tune = min(settings.refit_tune or 0, settings.tune)
        start = Start.take(idata, sampler.layout, tune) if warm else None
        rng = np.random.default_rng(settings.seed)
        _split_log_densities(idata, obs.kind)
        idata["posterior"] = with_elasticity(idata["posterior"].to_dataset(), mix, rng)
        main = Alternatives(
            idata, sampler.model, sampler.defaults, watch, reweight, previous, sampler
        )
        # the answer as soon as it is sampled: an analyst who reruns sees it here, not after the
        # scenarios, checks and report (the same draws; the report's line repeats it), with the
        # main fit's own diagnostics, which the report's verdict includes
        failures = main.main_check["failures"]
        verdict = f"FAIL ({'; '.join(failures)})" if failures else "pass"
        watch.begin(
            f"main fit: {headline(quantities(main.posterior, case.unit))}; its diagnostics "
            f"{verdict} (provisional: scenarios, checks and the report follow)"
        )
        said = watch.elapsed()
        idata["posterior_predictive"] = _predictive(idata["posterior"].to_dataset(), priors, rng)
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

        # each node reweighted, or the Refit that samples it (below, as jobs), in the order
        # the DataTree keeps them (readings in the case's order, the checks' refits, scenarios)
        nodes: dict[str, xr.Dataset | Refit] = {}
        if conditional:
            for i, name in enumerate(mix.names):
                watch.begin(f"the reading '{name}' alone", i + 1, len(mix.names))
                what = f"the reading '{name}' alone"
                nodes[f"conditional/{name}"] = main.result(
                    what,
                    lambda name=name: reading_log_ratio(main.posterior, name),
                    Refit(f"conditional/{name}", what, np.eye(len(mix.names))[i]),
                )
        if checks:
            if not no_measured_rows(idata):  # once, for these refits and the checks (loo.py)
                idata[loo.NODE] = loo.compute(idata)  # on the final posterior: r_eff reads all
            for r in _influence_refits(idata, mix) + _source_refits(idata, mix):
                watch.begin(f"from draws already made: {r.what}")
                nodes[r.node] = main.without_refit(r)  # else (a rule still fails) refitted
        # What follows loads what the child compiles last (the prior draws, the scenarios'
        # prior density); what came before needs only the density, which it compiles first.
        side.wait_timed(watch)
    finally:
        side.stop()  # after an error or an interrupted wait, no child is left behind
    watch.begin("prior predictive draws")
    watch.mark("other")
    # After the main fit, in this process: drawing it in a forked child beside the compile
    # of a warm run was measured slower on 2 cores, nutpie sampling on both (benchmarks/
    # README.md, "Quiet-machine run, fifth session"); only a cold run's compiles go there.
    prior = _prior_draws(model, settings)
    watch.mark("prior predictive")
    idata["prior"] = with_elasticity(prior["prior"].to_dataset(), mix, rng)
    idata["prior_predictive"] = prior["prior_predictive"]
    idata["observed_data"] = prior["observed_data"]
    if checks:
        scenarios = list(case.scenarios)
        for i, name in enumerate(scenarios):
            watch.begin(f"scenario '{name}'", i + 1, len(scenarios))
            nodes[f"scenarios/{name}"] = _scenario(case, priors, name, main)
    refits = [n for n in nodes.values() if isinstance(n, Refit)]
    sampled = run_refits(refits, sampler, case, priors, settings, scheduler, start)
    for path, node in nodes.items():
        idata[path] = sampled[path][0] if isinstance(node, Refit) else node
    # what the next run reweights before it refits: each sampled refit's draws, and the
    # draws a reused result came from (model/reuse.py)
    for path, saved in main.proposals(refits, sampled).items():
        idata[f"{GROUP}/{path}"] = saved

    watch.mark("other")
    idata.attrs.update(provenance(case, priors, sampler.settings, sampler.name))
    if checks:  # what to measure next: values whose reweighting cannot be trusted, refitted
        refit_flagged(
            idata,
            case,
            priors,
            settings,
            watch=watch,
            sampler=sampler,
            density=lambda: main.compiled_density,
            previous=None if previous is None else previous.voi,
            previous_run="" if previous is None else previous.run,
        )
        watch.mark("what to measure next: simulation")
    idata.attrs["retries"] = json.dumps(sampler.retries)
    # Seconds per stage of this fit: for the log and benchmarks/, not part of the results.
    timings = {k: round(v, 3) for k, v in watch.seconds.items()}
    timings |= {f"{k} (count)": n for k, n in watch.counts.items() if k != "other"}
    timings[ESTIMATE_SAID] = round(said, 3)
    idata.attrs["timings"] = json.dumps(timings)
    return idata


def _prior_draws(model: pm.Model, settings: SamplerSettings) -> xr.DataTree:
    """The fit's prior and prior predictive draws: one call, the fit's and its side compiles'
    (the same graph, so the child's compile is the one the fit loads)."""
    names = [v for v in PRIOR_VARS if v in model.named_vars]
    return prior_predictive(model, names, settings.prior_draws, settings.seed)


def _side_compiles(model: pm.Model, settings: SamplerSettings) -> None:
    """What a fit compiles after nutpie's compile, compiled now (model/warmup.py's child):
    moment matching's density, the prior draws and the scenarios' prior density, each called
    once as the fit calls it (numba compiles at the first call, and caches on disk), and the
    value of information's observation densities (C modules, compiled as they are made)."""
    # the sampler's density (the same graph, so the child's compile is the one it loads);
    # nutpie's fits evaluate their log density through nutpie's callback (Sampler.density)
    nutpie = settings.sampler == "nutpie" and find_spec("nutpie") is not None
    point = Density(model, stored_names(model)).warm(model, logp=not nutpie)
    _prior_draws(model, settings)
    PriorDensity(model)(point, {d.name: d.get_value() for d in model.data_vars})
    for robust in (True, False):
        voi.observation_logp(robust)


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
        previous: Previous | None = None,
        sampler: Sampler | None = None,
    ):
        self.posterior = idata["posterior"].to_dataset()
        self.sampler = sampler  # whose density (Sampler.density) this one is
        self.diverging = idata["sample_stats"]["diverging"]
        # the model and the pm.Data values the main fit was sampled with
        self.model, self.defaults, self.watch = model, defaults, watch
        self.reweight = reweight
        self.previous = previous
        self.reused: dict[str, xr.Dataset] = {}  # the saved draws each reused result came from
        self._density: PriorDensity | None = None

    @functools.cached_property
    def main_check(self) -> dict:
        """The main fit's diagnostics (diagnostics.check)."""
        names = [n for n in CHECKED if n in self.posterior]
        return check(self.posterior, self.diverging, "mixture", names)

    @property
    def main_passes(self) -> bool:
        """A main fit that fails its own diagnostics fails the run whatever else is done; a
        refit then cannot change the verdict, so only an untrustworthy k makes one."""
        return self.main_check["passed"]

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

    def result(self, what: str, log_ratio, refit: Refit, reason: str = "") -> xr.Dataset | Refit:
        """`log_ratio()` gives the log density ratio of the target to the main posterior per
        draw; `refit` says how to sample the target, returned (with why) when the weights
        cannot be trusted. `reason` (not empty) forces a refit."""
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
        if self.reweight and refit.priors is None:
            node = self.without_refit(refit)
            if not isinstance(node, Refit):
                return node
        reason = reason or "reweighting switched off"
        if "previous_refit" in refit.attrs:  # tried, and its weights failed the rules too
            reason += f"; the previous run's refit: {refit.attrs['previous_refit']}"
        if "moment_matching" in refit.attrs:  # tried, and its weights failed the rules too
            reason += f"; moment matching: {refit.attrs['moment_matching']}"
        log.info("%s: to refit (%s)", what, reason)
        refit.attrs.update(method="refit", refit_reason=reason)
        if weights is not None:
            refit.attrs.update(pareto_k=weights.pareto_k, efficiency=weights.efficiency)
        return refit

    @functools.cached_property
    def density(self) -> Density:
        """The model's log density at unconstrained draws (model/moment_match.py), compiled
        on first use: only targets that reweighting cannot reach need it."""
        self.watch.mark("other")
        if self.sampler is not None:
            density = self.sampler.density
        else:
            density = Density(self.model, stored_names(self.model))
        self.watch.mark("moment matching (compile)")
        return density

    @property
    def compiled_density(self) -> Density | None:
        """`density` if it is compiled already (nutpie's fits compile it to expand their
        draws), else None: a run never compiles it only for what the next run may reuse."""
        if self.sampler is not None and "density" in vars(self.sampler):
            return self.sampler.density
        return vars(self).get("density")  # a cached_property's value, once read

    @functools.cached_property
    def upars(self) -> np.ndarray:
        """The main fit's draws in the unconstrained space, chain after chain."""
        return self.density.unconstrained(self.posterior)

    @functools.cached_property
    def main_ess(self) -> dict:
        """The main fit's smallest bulk and tail ESS of the refit variables: a reweighted
        result's ESS is these times the weights' efficiency (reweight.effective_sizes)."""
        return effective_sizes(self.posterior, REFIT_VARS, 1.0)

    def without_refit(self, refit: Refit) -> xr.Dataset | Refit:
        """The target of `refit` from draws already made: the previous run's refit of it
        reweighted to this ledger, else the main fit's draws moment matched to it; else
        `refit`, with why."""
        node = self.from_previous(refit)
        return self.moment_matched(refit) if node is None else node

    def from_previous(self, refit: Refit) -> xr.Dataset | None:
        """The previous run's refit of the same target (model/reuse.py), reweighted to this
        run's, when its weights meet every rule a reweighted result meets; else None (and
        why, in `refit.attrs` and the log)."""
        saved = None if self.previous is None else self.previous.proposals.get(refit.node)
        if saved is None or not self.reweight or refit.priors is not None or self.model is None:
            return None
        density, watch = self.density, self.watch
        shape = (self.posterior.sizes["chain"], self.posterior.sizes["draw"])
        if saved.attrs.get("layout") != layout(density.value_vars, density.shapes):
            why = "its draws are of another model"
        elif saved["log_density"].shape != shape:
            why = f"its draws are {saved['log_density'].shape}, this run's {shape}"
        else:
            watch.mark("other")
            data = {"reading_weight": refit.weights, **refit.data}
            upars, _, log_ratio = reweighing(saved, density, data)
            weights = psis(xr.DataArray(log_ratio.reshape(shape), dims=SAMPLE))
            draws = density.draws(upars, shape, data, self.posterior, DENSITY_VARS)
            node = _weighted_node(draws, saved["diverging"], refit, weights)
            node.attrs.update(method=REUSED, reused_from=self.previous.run)
            # every rule of a saved reweighted result (reweight.check): k and the reweighted
            # ESS, and the previous refit's own R-hat and divergences, which a fresh refit
            # (retried when they fail) could pass
            why = "; ".join(check_reweighted(node, refit.what)["failures"])
            watch.mark("reusing the previous refits")
            k_text = f"Pareto k {weights.pareto_k:.2f}, efficiency {weights.efficiency:.2f}"
            if not why:
                log.info("%s: the previous run's refit reweighted (%s)", refit.what, k_text)
                self.reused[refit.node] = saved
                return node
            why = f"{why} ({k_text})"
        log.info("%s: the previous run's refit not reused: %s", refit.what, why)
        refit.attrs["previous_refit"] = why
        return None

    def proposals(
        self, refits: list[Refit], sampled: dict[str, tuple[xr.Dataset, xr.Dataset | None]]
    ) -> dict[str, xr.Dataset]:
        """What the next run may reweight (model/reuse.py): each refit sampled here with
        this model (its draws and its target's log density), and the draws each reused
        result came from. Only when the density is compiled already (it is whenever a
        target was moment matched or reused): a run never compiles it for the next."""
        out = dict(self.reused)
        density = self.compiled_density
        if density is None:
            return out
        where = layout(density.value_vars, density.shapes)
        for refit in refits:
            node, free = sampled[refit.node]
            if free is None or refit.priors is not None:
                continue
            data = {"reading_weight": refit.weights, **refit.data}
            upars = density.unconstrained(free, data)  # a scenario's bounds, if it has them
            out[refit.node] = proposal(upars, density.logp(upars, data), node["diverging"], where)
        return out

    def moment_matched(self, refit: Refit) -> xr.Dataset | Refit:
        """The target of `refit` (the same model under its pm.Data values) by moment matching
        the main fit's draws (model/moment_match.py), held to every rule a reweighted result
        meets (reweight.check); else `refit`, with why."""
        # A main fit that fails its own diagnostics cannot give weights the ESS rule accepts
        # (and the run fails whatever is done): refit, as before moment matching.
        if not self.reweight or refit.priors is not None or not self.main_passes:
            return refit
        if self.model is None:  # draws without their model (tests of reweighting alone)
            return refit
        density, watch = self.density, self.watch
        watch.mark("other")
        shape = (self.posterior.sizes["chain"], self.posterior.sizes["draw"])
        data = {"reading_weight": refit.weights, **refit.data}
        upars = self.upars

        def done(weights) -> bool:
            ess = {k: v * weights.efficiency for k, v in self.main_ess.items()}
            return not refit_reason(weights, ess)

        matched = match(
            lambda u: density.logp(u, data), lambda u: density.logp(u, None), upars, shape, done
        )
        draws = density.draws(matched.upars, shape, data, self.posterior, DENSITY_VARS)
        node = _weighted_node(draws, self.diverging, refit, matched.weights)
        node.attrs.update(
            method=MOMENT_MATCHED,
            pareto_k_reweighted=matched.k_before,
            pareto_k_posterior=matched.k_posterior,
            moment_matching_steps=matched.steps,
        )
        # The rules of a saved reweighted result (reweight.check, which the diagnostics
        # apply to it), on the moved draws and their weights. The moved draws' k against
        # the main posterior is recorded, not a rule: a target far from the posterior
        # (fast-ramp) has it above 0.7 while its own weights are near-uniform, and what a
        # result's numbers rest on is the weights to the target.
        why = "; ".join(check_reweighted(node, refit.what)["failures"])
        watch.mark("moment matching")
        k_text = f"Pareto k {matched.k_before:.2f} -> {matched.weights.pareto_k:.2f}"
        if why or matched.steps == 0:
            log.info(
                "%s: moment matching did not do (%s; %s)",
                refit.what,
                k_text,
                why or "no step helped",
            )
            refit.attrs.update(
                moment_matching=f"{k_text}: {why or 'no step helped'}",
                pareto_k_moment_matched=matched.weights.pareto_k,
            )
            return refit
        log.info(
            "%s: moment matched the main fit (%s in %d step(s), efficiency %.2f)",
            refit.what,
            k_text,
            matched.steps,
            matched.weights.efficiency,
        )
        return node


def _weighted_node(draws: xr.Dataset, diverging, refit: Refit, weights) -> xr.Dataset:
    """A result from weighted draws of `refit`'s target: its variables, and (a source left
    out) only the left-out rows' predictions, as a refit keeps them."""
    names = [*REFIT_VARS, *(ROW_PREDICTIONS if refit.keep else [])]
    node = reweighted(draws, diverging, names, weights)
    # `sel` on the whole node: assigning the rows' subset to a node indexed by every row
    # would align it back to every row, filled with NaN
    return node.sel(obs=list(refit.keep)) if refit.keep else node


@dataclass
class Refit:
    """One fit that reweighting cannot replace: the case sampled under other pm.Data values
    (reading weights, priors of the same families, row weights), or under priors of other
    families (`priors`: the scenario's own model). A job of `run_refits`."""

    node: str  # where it goes in the DataTree, e.g. "scenarios/fast-ramp"; names the job
    what: str  # for the log, and the label of its retry
    weights: np.ndarray  # the reading weights
    data: dict[str, np.ndarray] = field(default_factory=dict)  # other pm.Data values
    keep: tuple[str, ...] = ()  # rows whose predictions the node keeps (source refits)
    priors: Priors | None = None  # other prior families: a model of its own
    attrs: dict = field(default_factory=dict)  # set on the node (how and why it was refitted)


def sample_refit(
    sampler: Sampler, refit: Refit, seed: int, start: Start | None = None
) -> tuple[xr.Dataset, list[dict], xr.Dataset | None]:
    """Sample one refit with a compiled model of its priors, from `start` (the main fit's
    draws) unless its priors are of other families: its headline node, the records of the
    fits the sampler retried for it, and (main fit's families only) the draws of every free
    variable, which the next run may reweight (model/reuse.py)."""
    before = len(sampler.retries)
    start = start if refit.priors is None else None  # other families: a model of its own
    one = sampler.sample(refit.weights, seed, label=refit.what, start=start, **refit.data)
    node = _headline(one)
    post = one["posterior"].to_dataset()
    if refit.keep:  # the left-out rows' predictions, for the source-influence check
        for name in ROW_PREDICTIONS:
            node[name] = post[name].sel(obs=list(refit.keep))
    node.attrs.update(refit.attrs)
    free = None
    if refit.priors is None:
        free = post[[rv.name for rv in sampler.model.free_RVs]]
    return node, sampler.retries[before:], free


def refit_job(
    case: Case,
    priors: Priors,
    settings: SamplerSettings,
    refit: Refit,
    seed: int,
    start: Start | None = None,
) -> tuple[xr.Dataset, list[dict], xr.Dataset | None]:
    """`sample_refit` on a Dask worker: the model compiled once per worker and model (the
    seed is not part of it), as the main fit's was."""
    own = refit.priors or priors
    key = structural_key(
        "fit", case, case.evidence.to_csv(), own, dataclasses.replace(settings, seed=0)
    )

    def compile_it() -> Sampler:
        sampler = Sampler(build_model(case, own), settings)
        sampler.retry = True  # as the main fit's refits (a report's fits)
        return sampler

    return sample_refit(cached(key, compile_it), refit, seed, start)


def run_refits(
    refits: list[Refit],
    sampler: Sampler,
    case: Case,
    priors: Priors,
    settings: SamplerSettings,
    scheduler: str | None = None,
    start: Start | None = None,
) -> dict[str, tuple[xr.Dataset, xr.Dataset | None]]:
    """Sample every refit, each a job (model/distribute.py) with its seed from the run's seed
    and its node's path, so the numbers are the same here or on any workers; the nodes (and
    their free variables' draws, `sample_refit`) by path. Each starts from `start` (the main
    fit's draws, sampler.Start), the same on any worker. Without a scheduler (and inside a job
    of a cluster: a case of `report --all`) they run here one after another through the main
    fit's compiled model: no cluster is started for a few refits. A refit that raises fails
    the estimate, naming every one that did."""
    if not refits:
        return {}
    address = None if inside_job() else scheduler_address(scheduler)
    watch = sampler.watch
    seeds = [job_seed(settings.seed, r.node) for r in refits]
    if address is None:
        own: dict[int, Sampler] = {}  # a scenario's model of other prior families, by id

        def local(n: int, refit: Refit) -> tuple[xr.Dataset, list[dict], xr.Dataset | None]:
            watch.begin(refit.what, n + 1, len(refits))
            if refit.priors is None:  # its retries are already the sampler's own
                node, _, free = sample_refit(sampler, refit, seeds[n], start)
                return node, [], free
            if id(refit.priors) not in own:
                own[id(refit.priors)] = Sampler(build_model(case, refit.priors), settings, watch)
                own[id(refit.priors)].retry = sampler.retry
            return sample_refit(own[id(refit.priors)], refit, seeds[n])

        # called directly: a refit that raises stops the estimate with its own traceback
        values = [local(n, r) for n, r in enumerate(refits)]
    else:
        watch.begin(f"{len(refits)} refit(s) on the cluster at {address}")
        jobs = [
            Job(r.node, refit_job, (case, priors, settings, r, seed, start))
            for r, seed in zip(refits, seeds, strict=True)
        ]

        def say(result, done: int, total: int) -> None:
            what = refits[[r.node for r in refits].index(result.name)].what
            if result.ok:
                progress_log.info(
                    "[%d/%d] refitted %s in %.0f s", done, total, what, result.seconds
                )
            else:
                log.error("[%d/%d] FAILED %s: %s", done, total, what, result.error)

        with cluster(address, 1, len(jobs)) as client:
            results = run(jobs, client, on_done=say)
        watch.mark("refits (on the cluster)")
        broken = [f"{r.name}: {r.error}" for r in results if not r.ok]
        if broken:
            raise RuntimeError(
                f"{len(broken)} of {len(refits)} refits failed: " + "; ".join(broken)
            )
        values = [r.value for r in results]
    for _, retried, _ in values:
        sampler.retries += retried
    return {r.node: (node, free) for r, (node, _, free) in zip(refits, values, strict=True)}


def _headline(one: xr.DataTree) -> xr.Dataset:
    node = one["posterior"].to_dataset()[REFIT_VARS]
    node["diverging"] = one["sample_stats"]["diverging"]
    return node


def _influence_refits(idata: xr.DataTree, mix: Readings) -> list[Refit]:
    """A refit without each row whose Pareto k says PSIS-LOO cannot drop it reliably."""
    if no_measured_rows(idata):
        return []
    k = loo.rows(idata)["pareto_k"]
    ids = idata["posterior"]["obs"].to_numpy()
    refits = []
    for j in np.flatnonzero(k.to_numpy() > PARETO_K):
        weight = np.ones(len(ids))
        weight[j] = 0.0
        what = f"refit without row {ids[j]} (Pareto k {float(k[j]):.2f})"
        refits.append(
            Refit(f"influence_refits/{ids[j]}", what, mix.weights, {"row_weight": weight})
        )
    return refits


def _source_refits(idata: xr.DataTree, mix: Readings) -> list[Refit]:
    """A refit without each source of several rows that PSIS cannot leave out reliably
    (checks.sources_to_refit), keeping its rows' predictions for the source-influence check;
    a one-row source uses its row's refit (`_influence_refits`, among the same jobs)."""
    if no_measured_rows(idata):
        return []
    k = loo.rows(idata)["pareto_k"].to_numpy()
    ids = idata["posterior"]["obs"].to_numpy()
    refitted = {str(i) for i in ids[k > PARETO_K]}
    refits = []
    for key, rows in sources_to_refit(idata, refitted).items():
        log.info("to refit without the source %s (%d rows)", key, len(rows))
        weight = (~np.isin(ids, rows)).astype(float)
        what = f"refit without the source {key}"
        refits.append(
            Refit(f"source_refits/{key}", what, mix.weights, {"row_weight": weight}, tuple(rows))
        )
    return refits


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


def _scenario(case, priors, name, main: Alternatives) -> xr.Dataset | Refit:
    """The case under one of its [scenarios.<name>]: other reading weights and/or priors.
    Same prior families: the main fit reweighted by the prior ratio, or a refit of the
    compiled model; other families: a refit of the scenario's own model."""
    alt, weights, alt_mix = scenario_priors(case, priors, name)
    node, what = f"scenarios/{name}", f"scenario '{name}'"
    if prior_families(alt) == prior_families(priors):
        out = main.result(
            what,
            lambda: main.prior_log_ratio(scenario_data(alt, alt_mix)),
            Refit(node, what, alt_mix.weights, prior_data(alt, alt_mix)),
        )
    else:
        own = Refit(node, what, alt_mix.weights, priors=alt)
        out = main.result(what, None, own, reason="it changes the family of a prior")
    changed = {n: s.describe() for n, s in alt.specs.items() if s != priors.specs[n]}
    out.attrs.update(
        description=case.scenarios[name].description,
        priors=json.dumps(changed),
        weights=json.dumps(weights),
    )
    return out


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
