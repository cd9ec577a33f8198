"""What to measure next: refit the simulated measurements whose reweighting cannot be trusted.

model/voi.py values a candidate by drawing its measured value from the posterior predictive
and reweighting the saved draws by each value's likelihood (PSIS). For a value far in the
tail a few draws carry all the weight (Pareto k above voi.PARETO_K_MAX); for those the fit
samples the posterior after that value instead: the case's model with every ledger
candidate's row added (a row weight of 0 for all but the one refitted), sampled at reduced
draws (REFIT_DRAWS) for each value through the main fit's compiled model, its data on `obs`
one row longer per candidate (model/sampler.py `Sampler.resized`: nothing compiles; the
case's graph holds every path its candidates read, model/build.py). Only a candidate that
graph cannot read (`through`) gets a model of its own, compiled once per process. Each
refit's own Monte Carlo error enters its figure's MCSE (voi.combine), and its R-hat, ESS
and divergences are recorded beside it (`diagnostics`). Called by model/fit.py while the
case, priors and compiled model are at hand; the refits are saved in the fit (`voi_refits/
candidate_<i>`, the draws of every REFIT quantity) and the summary reads them from there, so
`capest next` never samples. Where the main model's log density is compiled (model/fit.py's
moment matching or reuse needed it), each refit is saved with its draws in the unconstrained
space and its target's log density at them, and a rerun takes the previous run's refit of a
value in place of a new one when its target is this run's (`same_target`: an unchanged ledger
gives the same main fit, so the same simulated values; model/reuse.py loads them), or, after a
ledger change, the saved refit nearest in value reweighted to this run's target when PSIS
allows (`reweighted_previous`: values are drawn at the same quantiles in every run, and the
flagged ones refitted are picked by a priority fixed per simulation, so most targets lie next
to a saved one).

Refits are made only where they can matter: a candidate whose flagged values could not move
any of its figures beyond their Monte Carlo error, whatever their posterior variance (voi.py
`bounded`: the law of total variance bounds it), is not refitted, and the summary says its
figure rests on that bound; of the others only as many are refitted as keep the refits' own
error a small part of each figure's (voi.py `refits_needed`). The cost is bounded too: at
most CAP refits a report, dealt out to the candidates in turn, each candidate's picked at
random among its flagged values (a random subset keeps the stratified mean of model/voi.py
`combine` unbiased). Imagery of the floor-area ratio is not refitted: its readings are a
mixture in the model, not a likelihood row, so there is no row to add. A fit too small for
its own diagnostics to be judged (fewer than RETRY_MIN_DRAWS draws, a quick look or a test)
makes no refit; its flagged values stay flagged (or bounded).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from model import variables, voi
from model.build import build, measures_use, row_values
from model.candidates import IMAGERY, Candidate
from model.case import Case
from model.diagnostics import MIN_ESS_BULK, MIN_ESS_TAIL, RETRY_MIN_DRAWS, check
from model.distribute import cached, structural_key
from model.likelihood import PATHS
from model.loo import PARETO_K
from model.moment_match import Density
from model.observation import Observations, observations
from model.priors import Priors
from model.reuse import PARAMETER, layout, reweighing
from model.reweight import LOG_WEIGHT, SAMPLE, psis
from model.sampler import Sampler, SamplerSettings, Start
from model.timing import Stopwatch

log = logging.getLogger(__name__)

CAP = 16  # refits a report at most: a compile (once) plus about 5-10 s a refit on 2 cores
REFIT_CHAINS, REFIT_DRAWS, REFIT_TUNE = 2, 300, 300  # reduced: the sd of a log, not its tails
# They start afresh, not from the main fit's draws (sampler.Start, as the checks' refits do):
# a flagged value is far in the main posterior's tail, and at this size a start from its
# draws met the fit rules no more often and once left a chain stuck (R-hat 1.35;
# benchmarks/README.md, "Refits that start where the main fit ended").
REFIT_SEED_OFFSET = 2000  # refit j samples with the fit's seed + this + j
KEPT = variables.select(variables.REFIT)
SAME_TARGET = 1e-8  # log densities a constant apart up to rounding: the same target
# A previous refit reweighted to a new target stands in for a refit when its weights keep
# the refit's Monte Carlo error within 1.4x a fresh one's (the error grows as 1 / sqrt of the
# importance-sampling efficiency, as reweight.effective_sizes counts it)
MIN_EFFICIENCY = 0.5
NEAREST = 3  # previous refits tried per target, nearest in value first


def flagged_values(
    idata: xr.DataTree, simulations: int = voi.SIMULATIONS
) -> dict[int, tuple[Candidate, np.ndarray, np.ndarray, dict]]:
    """Per candidate (by its index in voi.all_candidates) with any: the candidate, its
    simulated values, the indices of those whose Pareto k is above voi.PARETO_K_MAX, and its
    reweighted valuation (voi.evsi: each quantity's expected sd, MCSE and the flagged values'
    bound, and whether that bound makes refits needless): the same simulation as the
    summary's (voi.candidate_rng)."""
    from model.summary import window_of

    attrs = dict(idata.attrs)
    post = idata["posterior"].to_dataset()
    window = window_of(idata)
    export_start = pd.Timestamp(attrs["export_start"])
    measurement = json.loads(attrs["measurement"])
    seed = int(attrs.get("seed", 0)) + voi.SEED_OFFSET
    values = voi.targets(post, attrs)
    out = {}
    for i, candidate in enumerate(voi.all_candidates(idata, window)):
        result = voi.evsi(
            candidate,
            post,
            values,
            window,
            export_start,
            measurement,
            attrs["unit"],
            simulations,
            voi.candidate_rng(seed, i),
            attrs=attrs,
            ranked=voi.ranked_simulation(idata),
        )
        if result["flagged"]:
            out[i] = (candidate, result["measured"], result["flagged_simulations"], result)
    return out


def deal(
    flagged: dict[int, np.ndarray],
    cap: int,
    seed: int,
    needed: dict[int, int] | None = None,
    simulations: int = voi.SIMULATIONS,
) -> dict:
    """Which flagged values to refit: one candidate after another, one value each turn, until
    `cap` (and each candidate's `needed`, if given); each candidate's in the order of a random
    priority drawn for each of its simulations (from `seed` and the candidate), whatever is
    flagged. The first n are a random subset of the flagged values, and a rerun whose flagged
    values are mostly the previous run's picks mostly the same simulations, whose values lie
    next to the previous run's (voi.simulate), so whose refits can be reweighted
    (`reweighted_previous`)."""
    order = {}
    for i, f in flagged.items():
        priority = np.random.default_rng([seed, i]).random(simulations)
        f = np.asarray(f, int)
        order[i] = list(f[np.argsort(priority[f], kind="stable")])
    for i, n in (needed or {}).items():
        if i in order:  # a bounded candidate (0 needed) need not be among the flagged
            order[i] = order[i][:n]
    chosen: dict[int, list[int]] = {i: [] for i in flagged}
    left = cap
    while left > 0 and any(order.values()):
        for i in order:
            if order[i] and left > 0:
                chosen[i].append(int(order[i].pop(0)))
                left -= 1
    return {i: sorted(c) for i, c in chosen.items() if c}


def with_rows(case: Case, candidates: list[Candidate]) -> Case:
    """The case with each candidate's ledger row appended (its value a stand-in)."""
    rows = pd.DataFrame([c.ledger_row(case.unit) for c in candidates])
    rows.index = rows["id"]
    evidence = pd.concat([case.evidence, rows])
    for column in case.evidence.columns:  # text columns stay text ("" not NaN)
        if pd.api.types.is_string_dtype(case.evidence[column]):
            evidence[column] = evidence[column].fillna("")
    return dataclasses.replace(case, evidence=evidence)


@dataclass(frozen=True)
class RowModel:
    """The case's model with the candidates' rows appended, sampled at reduced draws with one
    row in at a time: the main fit's compiled model with longer data (`through`), else (a
    candidate its graph cannot read) a model of its own, compiled once per process."""

    sampler: Sampler
    readings: np.ndarray  # the case's reading weights
    rows: dict[str, int]  # candidate name -> its row's index on `obs`
    shared: bool = False  # sampled through the main fit's compiled model

    @classmethod
    def of(
        cls,
        case: Case,
        priors: Priors,
        settings: SamplerSettings,
        candidates: list[Candidate],
        main: Sampler | None = None,
    ) -> RowModel:
        added = with_rows(case, candidates)
        reduced = dataclasses.replace(
            settings, chains=REFIT_CHAINS, draws=REFIT_DRAWS, tune=REFIT_TUNE, seed=0
        )
        watch = Stopwatch("what to measure next")
        if main is not None and main.resizable:
            obs = observations(added.evidence, added.window, priors.noise)
            data = through(main, observations(case.evidence, case.window, priors.noise), obs)
            if data is not None:
                rows = {c.name: obs.ids.index(c.ledger_row(case.unit)["id"]) for c in candidates}
                sampler = main.resized({"obs": obs.ids}, data, reduced, watch)
                return cls(sampler, main.defaults["reading_weight"], rows, shared=True)

        def make() -> RowModel:
            built = build(added, priors)
            ids = list(built.observations.ids)
            rows = {c.name: ids.index(c.ledger_row(case.unit)["id"]) for c in candidates}
            return cls(Sampler(built.model, reduced, watch), built.readings.weights, rows)

        # the seed is not part of the model: one compiled model serves every refit
        return cached(
            structural_key("voi refits", added, added.evidence.to_csv(), priors, reduced), make
        )

    def data(self, candidate: Candidate, measured: float) -> dict[str, np.ndarray]:
        """The pm.Data values that differ from the model's own when the candidate's row is
        measured at `measured` (its log(1 + value) scale) and the other candidates' are out."""
        names = ("evidence_observed", "evidence_lower", "evidence_upper", "row_weight")
        data = {k: self.sampler.defaults[k].copy() for k in names}
        at = self.rows[candidate.name]
        data["row_weight"][list(self.rows.values())] = 0.0  # every candidate's row out ...
        data["row_weight"][at] = 1.0  # ... but this one, at its simulated value
        data["evidence_observed"][at] = measured
        data["evidence_lower"][at], data["evidence_upper"][at] = measured - 1.0, measured + 1.0
        return data

    def target(self, candidate: Candidate, measured: float) -> dict[str, np.ndarray]:
        """Every pm.Data value of that refit's target, reading weights included: what a log
        density of the main model (model/moment_match.py) reads (`shared` models only)."""
        return {
            **self.sampler.defaults,
            "reading_weight": self.readings,
            **self.data(candidate, measured),
        }

    def sample(
        self, candidate: Candidate, measured: float, seed: int, start: Start | None = None
    ) -> tuple[xr.Dataset, xr.Dataset]:
        """`refit`, and the refit's whole posterior (every free variable's draws)."""
        data = self.data(candidate, measured)
        one = self.sampler.sample(self.readings, seed, stage="refit", start=start, **data)
        node = one["posterior"].to_dataset()[[v for v in KEPT if v in one["posterior"]]]
        node["diverging"] = one["sample_stats"]["diverging"]
        return node, one["posterior"].to_dataset()

    def refit(
        self, candidate: Candidate, measured: float, seed: int, start: Start | None = None
    ) -> xr.Dataset:
        """The posterior (the REFIT quantities and divergences) after the candidate's row is
        measured at `measured` (its log(1 + value) scale); the other candidates' rows out.
        From `start` (the main fit's draws), if given."""
        return self.sample(candidate, measured, seed, start)[0]


def through(main: Sampler, base: Observations, added: Observations) -> dict | None:
    """The data of the main fit's model (`main`, built from the ledger's rows `base`) with
    the candidates' rows appended (`added`: the same rows first), by pm.Data name; None when
    its graph cannot read them as the candidates' own model would: a row on a path or
    variable it does not hold (model/build.py keeps every path the case's candidates read,
    so only a candidate it did not know of), or the latent monthly use that only rows of
    use make (a case without them)."""
    n = len(base.ids)
    if added.ids[:n] != base.ids or added.bias_groups != base.bias_groups:
        return None
    if measures_use(added) != measures_use(base):
        return None
    values = row_values(added, PATHS)
    # a term the graph lacks must read nothing of the new rows (zeros are no term)
    if any(v.any() for k, v in values.items() if k not in main.defaults):
        return None
    return {k: v for k, v in values.items() if k in main.defaults}


def same_target(
    saved: xr.Dataset | None,
    sim: int,
    measured: float,
    density: Density | None,
    data: dict | None,
    where: str | None,
) -> xr.Dataset | None:
    """The previous run's refit of simulated value `sim` (its voi_refits node `saved`), when
    it sampled this run's target: the same measured value, a model of the same layout, and
    this run's log density (`data`: the target's pm.Data) at its draws the saved one up to a
    constant (the same ledger, priors and model, so its draws are as good as a new refit's),
    and this run's refit size.
    An unchanged ledger gives the same main fit, so the same simulated values and targets.
    Else None (refitted)."""
    if saved is None or density is None or saved.attrs.get("layout") != where:
        return None
    # refits of another size (REFIT_DRAWS changed since) would not stack with this run's
    if (saved.sizes["chain"], saved.sizes["draw"]) != (REFIT_CHAINS, REFIT_DRAWS):
        return None
    if sim not in saved["simulation"].to_numpy():
        return None
    one = saved.sel(simulation=sim, drop=True)
    if float(one["measured"]) != float(measured):
        return None
    upars, log_density, gap = reweighing(one, density, data)
    if not np.ptp(gap) <= SAME_TARGET:
        return None
    return with_draws(one.drop_vars("measured"), upars, log_density)


def k_threshold(size: int) -> float:
    """PSIS's Pareto k threshold for an importance sample of `size` draws (Vehtari et al.
    2024, "Pareto smoothed importance sampling": min(1 - 1 / log10(S), 0.7))."""
    return min(1.0 - 1.0 / np.log10(size), PARETO_K)


def reweighted_previous(
    saved: xr.Dataset | None,
    measured: float,
    density: Density | None,
    data: dict | None,
    where: str | None,
    coords: xr.Dataset,
    used: set | None = None,
) -> tuple[xr.Dataset | None, str]:
    """The previous run's refit of this candidate nearest in value to `measured` (of the
    NEAREST nearest, the first that does), reweighted to this run's target (`data`: its pm.Data)
    by PSIS, when the weights meet PSIS's k threshold for its draws and MIN_EFFICIENCY; and
    what was tried. A rerun after a ledger change simulates each value at the same quantile as
    the previous run did (voi.simulate), so most of its targets lie next to a saved one and
    differ from it by the change. The node carries the saved draws (`upars`) and the log density
    they were sampled from, so the next run reweighs a sampler's draws, never weights of
    weights; its draws of the refit quantities are this run's (`density.draws`, `coords`: the
    main posterior's). `used`: the saved refits (by simulation) this run took already, skipped
    and added to: each saved refit stands for one value, so the refits' spread in voi.combine
    is that of independent draws.
    Taking a proposal only where its weights pass selects draws that did not miss the
    target's tail: a reweighted variance is then biased low by up to about half its own
    Monte Carlo error (a review's simulation, benchmarks/README.md nineteenth session), a small
    part of a figure in which the flagged values are a small share."""
    used = set() if used is None else used
    if saved is None or density is None or "upars" not in saved:
        return None, ""
    if saved.attrs.get("layout") != where:
        return None, "the previous refits are of another model"
    if (saved.sizes["chain"], saved.sizes["draw"]) != (REFIT_CHAINS, REFIT_DRAWS):
        return None, "the previous refits are of another size"
    labels = saved["simulation"].to_numpy()
    free = np.flatnonzero([int(label) not in used for label in labels])
    nearest = free[np.argsort(np.abs(saved["measured"].to_numpy()[free] - measured), kind="stable")]
    shape = (REFIT_CHAINS, REFIT_DRAWS)
    tried = []
    for j in nearest[:NEAREST]:
        one = saved.isel(simulation=j, drop=True)
        upars, _, log_ratio = reweighing(one, density, data)
        weights = psis(xr.DataArray(log_ratio.reshape(shape), dims=SAMPLE))
        text = f"k {weights.pareto_k:.2f}, efficiency {weights.efficiency:.2f}"
        tried.append(f"value {float(one['measured']):.2f}: {text}")
        if weights.pareto_k <= k_threshold(upars.shape[0]) and weights.efficiency >= MIN_EFFICIENCY:
            draws = density.draws(upars, shape, data, coords, KEPT)
            node = draws.assign_coords({d: one[d] for d in SAMPLE if d in one.coords}).assign(
                diverging=one["diverging"],
                upars=one["upars"],
                log_density=one["log_density"],  # what the draws were sampled from
                log_weight=weights.log_weight,
            )
            used.add(int(labels[j]))
            return node, text
    return None, "; ".join(tried)


def equally_weighted(node: xr.Dataset) -> xr.Dataset:
    """A refit's node with its log weights, every draw alike (a sampled refit, or a saved
    one of this very target), as a reweighted one has them: voi.evsi reads every refit's."""
    shape = (node.sizes["chain"], node.sizes["draw"])
    return node.assign({LOG_WEIGHT: (SAMPLE, np.full(shape, -np.log(np.prod(shape))))})


def with_draws(node: xr.Dataset, upars: np.ndarray, log_density: np.ndarray) -> xr.Dataset:
    """A refit's node with its draws in the unconstrained space (chain after chain) and its
    target's log density at each: what the next run's `same_target` reads."""
    shape = (node.sizes["chain"], node.sizes["draw"])
    return node.assign(
        upars=((*SAMPLE, PARAMETER), upars.reshape(*shape, -1)),
        log_density=(SAMPLE, log_density.reshape(shape)),
    )


def diagnostics(fits: list[xr.Dataset]) -> dict:
    """The worst R-hat, bulk and tail ESS (of the quantities every fit checks) and the
    divergences over these refits: recorded beside them (their Monte Carlo error enters the
    figure's MCSE in voi.combine; these say whether a refit also converged)."""
    drawn = ["diverging", "upars", "log_density", LOG_WEIGHT]
    checked = []
    for f in fits:
        c = check(f.drop_vars(drawn, errors="ignore"), f["diverging"], "refit")
        w = np.exp(f[LOG_WEIGHT].to_numpy()) if LOG_WEIGHT in f else None
        if w is not None and np.ptp(w) > 0:  # a reweighted refit: its ESS times the efficiency
            efficiency = float(1.0 / np.sum(w**2) / w.size)
            c["min_ess_bulk"] *= efficiency
            c["min_ess_tail"] *= efficiency
            ess_rules = c["min_ess_bulk"] >= MIN_ESS_BULK and c["min_ess_tail"] >= MIN_ESS_TAIL
            c["passed"] = c["passed"] and ess_rules
        checked.append(c)
    return {
        "max_rhat": round(max(c["max_rhat"] for c in checked), 4),
        "min_ess_bulk": round(min(c["min_ess_bulk"] for c in checked)),
        "min_ess_tail": round(min(c["min_ess_tail"] for c in checked)),
        "divergences": sum(c["divergences"] for c in checked),
        "failing_fit_rules": sum(not c["passed"] for c in checked),
    }


def refit_flagged(
    idata: xr.DataTree,
    case: Case,
    priors: Priors,
    settings: SamplerSettings,
    cap: int = CAP,
    simulations: int = voi.SIMULATIONS,
    watch: Stopwatch | None = None,
    sampler: Sampler | None = None,
    density: Callable[[], Density | None] | None = None,
    previous: dict[str, xr.Dataset] | None = None,
    previous_run: str = "",
) -> None:
    """Refit the flagged simulated values (see the module's docstring) and save them in
    `idata` (nodes voi_refits/candidate_<i>, attrs["voi_refits"]: what was done and why);
    `watch` (the fit's) gets the time of its simulation, compile and sampling; `sampler`,
    the main fit's, samples them when its graph can (RowModel). `density` gives the main
    model's log density (model/moment_match.py) when it is compiled: each refit's draws are
    then saved with it, and a refit of the run `previous_run` (`previous`: its voi_refits
    nodes by candidate name, model/reuse.py) of the same target stands in for a new one."""
    from model.summary import window_of

    watch = watch or Stopwatch()
    start = time.perf_counter()
    info = {
        "cap": cap,
        "chains": REFIT_CHAINS,
        "draws": REFIT_DRAWS,
        "tune": REFIT_TUNE,
        "simulations": simulations,
        "refits": 0,
        "skipped": "",
    }
    if settings.chains * settings.draws < RETRY_MIN_DRAWS:
        info["skipped"] = (
            f"the fit has fewer than {RETRY_MIN_DRAWS} draws (a quick look): flagged values "
            "stay flagged"
        )
    elif cap <= 0:
        info["skipped"] = "refits switched off (a cap of 0)"
    if info["skipped"]:  # decided before simulating: a quick fit costs nothing more
        idata.attrs["voi_refits"] = json.dumps(info)
        return
    flagged = flagged_values(idata, simulations)
    ledger = {i: v for i, v in flagged.items() if v[0].kind != IMAGERY}
    # refits only where they can matter (voi.bounded): else the flagged values' bound stands;
    # and only as many as keep their own error a small part of the figure's (refits_needed)
    bounded = {v[0].name: len(v[2]) for v in ledger.values() if v[3]["bounded"]}
    names = list(voi.targets(idata["posterior"].to_dataset(), dict(idata.attrs)))
    needed = {i: voi.refits_needed(v[3], names) for i, v in ledger.items()}
    refittable = {i: f for i, (c, _, f, _) in ledger.items() if needed[i] > 0}
    info["needed"] = {ledger[i][0].name: n for i, n in needed.items() if n}
    info["flagged"] = int(sum(len(v[2]) for v in flagged.values()))
    info["flagged_imagery"] = int(sum(len(v[2]) for v in flagged.values() if v[0].kind == IMAGERY))
    info["bounded"] = bounded  # candidate -> its flagged values, bounded rather than refitted
    if not refittable:
        info["skipped"] = (
            "no simulated value of a ledger candidate needed one"
            if not ledger
            else "every flagged value was bounded within the Monte Carlo error"
        )
        idata.attrs["voi_refits"] = json.dumps(info)
        return
    seed = int(idata.attrs.get("seed", settings.seed))
    chosen = deal(refittable, cap, seed + REFIT_SEED_OFFSET, needed, simulations)
    # Every ledger candidate's row, not only the chosen ones': the data (and, for a model
    # of their own, its graph and so its cached callbacks, model/callbacks.py) are then the
    # same in every run of the case, whichever values a run flags.
    candidates = [c for c in voi.all_candidates(idata, window_of(idata)) if c.kind != IMAGERY]
    watch.mark("what to measure next: simulation")
    compiling = time.perf_counter()
    model = RowModel.of(case, priors, settings, candidates, sampler)
    compile_seconds = time.perf_counter() - compiling
    watch.mark("what to measure next: compile")
    # this run's log density of each refit's target, where the main model's can read the
    # candidates' rows: saved with the draws, and what tells a previous refit of the same
    # target (`same_target`)
    density = density() if density is not None and model.shared else None
    where = None if density is None else layout(density.value_vars, density.shapes)
    previous = previous or {}
    sampling = time.perf_counter()
    n, total, reused, reweighted = 0, sum(len(c) for c in chosen.values()), 0, 0
    # the dims of the refit quantities' draws, for reweighted refits (not the main fit's
    # chain and draw labels: a refit has fewer)
    post = idata["posterior"].to_dataset()
    post = post[[v for v in KEPT if v in post]].drop_vars(list(SAMPLE), errors="ignore")
    every = []
    used: dict[str, set] = {}  # per candidate, the saved refits taken (each stands for one value)
    for i, sims in chosen.items():
        candidate, y, all_flagged, _ = flagged[i]
        fits = []
        for sim in sims:
            n += 1
            target = None if density is None else model.target(candidate, y[sim])
            saved = previous.get(candidate.name)
            one = same_target(saved, sim, y[sim], density, target, where)
            if one is not None:
                reused += 1
                used.setdefault(candidate.name, set()).add(sim)
                fits.append(equally_weighted(one))
                continue
            taken = used.setdefault(candidate.name, set())
            one, how = reweighted_previous(saved, y[sim], density, target, where, post, taken)
            label = f"{candidate.name}, simulated value {sim} ({y[sim]:.2f})"
            if one is not None:
                reweighted += 1
                log.info("refit of %s: the previous run's reweighted (%s)", label, how)
                fits.append(one)
                continue
            if how:
                log.info("refit of %s: no previous refit reweighted (%s)", label, how)
            model.sampler.watch.begin(f"refit of {candidate.name}, simulated value {sim}", n, total)
            one, free = model.sample(candidate, y[sim], seed + REFIT_SEED_OFFSET + n)
            if density is not None:  # its draws, for the next run's `same_target`
                upars = density.unconstrained(free, target)
                one = with_draws(one, upars, density.logp(upars, target))
            fits.append(equally_weighted(one))
        every += fits
        saved = xr.concat(fits, dim="simulation").assign_coords(simulation=sims)
        saved["measured"] = ("simulation", y[sims])
        saved.attrs.update(
            candidate=candidate.name, simulations=simulations, flagged=len(all_flagged)
        )
        if where is not None:
            saved.attrs["layout"] = where
        idata[f"voi_refits/candidate_{i}"] = saved
    sampling_seconds = time.perf_counter() - sampling
    watch.mark("what to measure next: sampling")
    info.update(
        refits=n,
        compile_seconds=round(compile_seconds, 1),
        model="the main fit's" if model.shared else "its own",
        sampling_seconds=round(sampling_seconds, 1),
        seconds=round(time.perf_counter() - start, 1),
        diagnostics=diagnostics(every),
        reused=reused,
        reweighted=reweighted,
        min_efficiency=MIN_EFFICIENCY,
    )
    if reused or reweighted:
        info["reused_from"] = previous_run
    idata.attrs["voi_refits"] = json.dumps(info)
