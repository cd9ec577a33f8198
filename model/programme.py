"""Several plants of one programme in one model, with partial pooling.

A programme's case.toml names its plants: folders beside it, each a complete single-plant case
(case.toml + ledger) that can also be estimated alone. In the programme model each plant keeps
its own evidence, priors and indicators (model/build.py: plant_graph, as a named sub-model
`<plant>::`), and the plants share two distributions, learnt from all of them at once:

    log elasticity_p ~ Normal(elasticity_log_mean, elasticity_plant_sd)
                       (integrated out in each plant's floor-area mixture, as for one plant)
    log ramp_months_p = ramp_log_mean + ramp_plant_sd x z_p,   z_p ~ Normal(0, 1)

with hyperpriors from the single-plant priors (model/priors.py: pooled_hyperpriors). The
programme's rates, monthly and yearly production are the plants' sums.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from model import compiled, variables, warmup
from model.build import Pooled, add_log_priors, plant_graph, readings
from model.case import CASE_FILE, CASE_ID, Case, load_case
from model.errors import InputError, Problem
from model.fit import PRIOR_VARS, _predictive, _split_log_densities, constant_data, with_elasticity
from model.observation import observations
from model.prior_draws import one_at_a_time
from model.priors import DEFAULT_PRIORS, REFERENCE_DIR, Priors, pooled_hyperpriors, resolve_priors
from model.provenance import ledger_dataset, run_provenance
from model.sampler import Sampler, SamplerSettings, stored_names
from model.stacked import SEP, STACK, Plan, stacked_graph, unstack, why_not_stacked
from model.timeline import Window
from model.timing import Stopwatch

_KEYS = {"id", "title", "product", "unit", "plants", "pooling"}
_POOLING_KEYS = {"rationale"}
POOLED = tuple(variables.select(variables.SHARED))  # a plant may not override these


def is_programme(path: str | Path) -> bool:
    """True when the case.toml at `path` names plants (a programme), not one plant."""
    path = Path(path)
    case_file = path / CASE_FILE if path.is_dir() else path
    try:
        return "plants" in tomllib.loads(case_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False  # load_case reports the problem


@dataclass(frozen=True)
class Programme:
    path: Path
    id: str
    title: str
    product: str
    unit: str
    plants: tuple[Case, ...]
    settings: dict
    as_of: str | None = None

    @property
    def input_files(self) -> tuple[Path, ...]:
        return (self.path / CASE_FILE, *(f for p in self.plants for f in p.input_files))

    @property
    def window(self) -> Window:
        """From the earliest plant's first month to the latest plant's last."""
        return Window(
            min(p.window.start for p in self.plants), max(p.window.end for p in self.plants)
        )


def load_programme(path: str | Path, *, as_of: str | None = None) -> Programme:
    path = Path(path)
    case_file = path / CASE_FILE if path.is_dir() else path
    name = str(case_file)
    settings = tomllib.loads(case_file.read_text(encoding="utf-8"))
    problems = [
        Problem(name, "-", k, f"unknown key (allowed here: {', '.join(sorted(_KEYS))})")
        for k in settings
        if k not in _KEYS
    ]
    problems += [
        Problem(
            name, "-", f"pooling.{k}", f"unknown key (allowed here: {', '.join(_POOLING_KEYS)})"
        )
        for k in settings.get("pooling", {})
        if k not in _POOLING_KEYS
    ]
    problems += [
        Problem(name, "-", k, "required key is missing")
        for k in ("id", "title", "unit", "plants")
        if k not in settings
    ]
    if "id" in settings and not CASE_ID.match(str(settings["id"])):
        # The id names the report folder: a path here would put the lock and the report
        # outside reports/ (the same rule as a case's id).
        problems.append(
            Problem(name, "-", "id", "expected lowercase letters, digits and hyphens (a name)")
        )
    plants = settings.get("plants", [])
    if not isinstance(plants, list) or not plants or not all(isinstance(p, str) for p in plants):
        problems.append(Problem(name, "-", "plants", "expected a list of plant case folders"))
    elif len(set(plants)) != len(plants):
        problems.append(Problem(name, "-", "plants", "a plant is listed twice"))
    if problems:
        raise InputError(problems)
    cases = tuple(load_case(case_file.parent / p, as_of=as_of) for p in plants)
    for plant in cases:
        plant_file = str(plant.path / CASE_FILE)
        if plant.unit != settings["unit"]:
            problems.append(
                Problem(plant_file, "-", "unit", f"the programme counts '{settings['unit']}'")
            )
        for prior in POOLED:
            if prior in plant.settings.get("priors", {}):
                problems.append(
                    Problem(
                        plant_file,
                        f"[priors.{prior}]",
                        f"priors.{prior}",
                        f"in programme {settings['id']} this prior is pooled across plants; "
                        "remove the plant's own (it applies when the plant is estimated alone)",
                    )
                )
    if len({p.id for p in cases}) != len(cases):
        problems.append(Problem(name, "-", "plants", "two plants have the same id"))
    if problems:
        raise InputError(problems)
    return Programme(
        path=case_file.parent,
        id=str(settings["id"]),
        title=str(settings["title"]),
        product=str(settings.get("product", "")),
        unit=str(settings["unit"]),
        plants=cases,
        settings=settings,
        as_of=as_of,
    )


def resolve_programme_priors(programme: Programme) -> tuple[dict[str, Priors], dict]:
    """Each plant's own priors, and the pooled hyperpriors (from the first plant's defaults:
    elasticity and ramp_months cannot be overridden per plant, so they are the same for all)."""
    priors = {p.id: resolve_priors(p) for p in programme.plants}
    first = priors[programme.plants[0].id]
    return priors, pooled_hyperpriors(first["elasticity"], first["ramp_months"])


def build_programme_model(
    programme: Programme,
    priors: dict[str, Priors],
    hyper: dict,
    *,
    stacked: bool | None = None,
    dynamics: str = "stock",
) -> tuple[pm.Model, Plan | None]:
    """The programme model and, when its plants are stacked on a `plant` dimension (one graph,
    model/stacked.py), the layout that `unstack` needs; None when each plant is its own
    sub-model. `stacked` None: stacked whenever the plants allow it (why_not_stacked).
    `dynamics` "flow" (model/build.py) exists only for the model comparison, nested."""
    if dynamics != "stock":
        stacked = False
    if stacked is None:
        stacked = not why_not_stacked(programme, priors)
    elif stacked and (reasons := why_not_stacked(programme, priors)):
        raise ValueError(f"these plants cannot be stacked: {'; '.join(reasons)}")
    window = programme.window
    coords = {"plant": [p.id for p in programme.plants], "month": window.labels}
    coords["year"] = window.years
    layout = None
    with pm.Model(coords=coords) as model:  # plant graphs add their own (prefixed) coords
        h = {k: pm.Data(f"prior__{k}", v) for k, v in hyper.items()}
        log_e = pm.Normal("elasticity_log_mean", h["elasticity_mu"], h["elasticity_mu_sd"])
        sd_e = pm.HalfNormal("elasticity_plant_sd", h["elasticity_plant_sd"])
        log_r = pm.Normal("ramp_log_mean", h["ramp_mu"], h["ramp_mu_sd"])
        sd_r = pm.HalfNormal("ramp_plant_sd", h["ramp_plant_sd"])
        z_r = pm.Normal("ramp_z", 0.0, 1.0, dims="plant")  # non-centred: no funnel in sd_r
        pm.Deterministic("elasticity_typical", pt.exp(log_e))
        pm.Deterministic("ramp_months_typical", pt.exp(log_r))
        ramp = pt.exp(log_r + sd_r * z_r)
        if stacked:
            with pm.Model(name=STACK):
                layout = stacked_graph(programme, priors, log_e, sd_e, ramp)
            before = model[f"{STACK}{SEP}rate_before"]
            after = model[f"{STACK}{SEP}rate_after"]
            monthly = pt.sum(model[f"{STACK}{SEP}production"], axis=0)
        else:
            before, after, monthly = _nested_plants(
                programme, priors, log_e, sd_e, ramp, model, dynamics
            )
        rate_before = pm.Deterministic("rate_before", pt.sum(before))
        rate_after = pm.Deterministic("rate_after", pt.sum(after))
        pm.Deterministic("capacity_multiplier", rate_after / rate_before)
        production = pm.Deterministic("production", monthly, dims="month")
        by_year = pt.dot(window.year_of_month, production)
        pm.Deterministic("production_by_year", by_year, dims="year")
    return model, layout  # fit_programme adds the log-prior deterministics (add_log_priors)


def _nested_plants(programme, priors, log_e, sd_e, ramp, model, dynamics="stock"):
    """Each plant's graph as a sub-model `<plant>::`; returns the plants' rates before and
    after, and their summed production on the programme's months."""
    window = programme.window
    before, after, monthly = [], [], []
    for i, plant in enumerate(programme.plants):
        with pm.Model(name=plant.id):
            pooled = Pooled(log_e, sd_e, ramp[i])
            ns = f"{plant.id}{SEP}"
            plant_graph(plant, priors[plant.id], ns=ns, pooled=pooled, dynamics=dynamics)
        before.append(model[f"{plant.id}{SEP}rate_before"])
        after.append(model[f"{plant.id}{SEP}rate_after"])
        # the plant's months placed in the programme's window (zero outside its own)
        offset = plant.window.start.ordinal - window.start.ordinal
        place = np.zeros((window.n_months, plant.window.n_months))
        place[offset + np.arange(plant.window.n_months), np.arange(plant.window.n_months)] = 1
        monthly.append(pt.dot(place, model[f"{plant.id}{SEP}production"]))
    return pt.stack(before), pt.stack(after), pt.sum(pt.stack(monthly), axis=0)


def plant_dataset(ds: xr.Dataset, plant: str) -> xr.Dataset:
    """One plant's variables with the `<plant>::` prefix taken off names and dims, so that the
    single-plant functions (quantities, with_elasticity, diagnostics) apply to it."""
    prefix = f"{plant}{SEP}"
    names = [v for v in ds.data_vars if str(v).startswith(prefix)]
    part = ds[names]
    part = part.rename({v: str(v).removeprefix(prefix) for v in names})
    dims = {d: str(d).removeprefix(prefix) for d in part.dims if str(d).startswith(prefix)}
    return part.rename(dims)


def _prefixed(ds: xr.Dataset, plant: str) -> xr.Dataset:
    prefix = f"{plant}{SEP}"
    renamed = ds.rename({v: f"{prefix}{v}" for v in ds.data_vars})
    return renamed.rename({d: f"{prefix}{d}" for d in ds.dims if d not in ("chain", "draw")})


# The programme's own variables kept in the prior group (the plants' come from fit.PRIOR_VARS).
PROGRAMME_VARS = variables.select(variables.PROGRAMME)


def fit_programme(
    programme: Programme, priors: dict[str, Priors], hyper: dict, settings: SamplerSettings
) -> xr.DataTree:
    """Sample the programme model once (no per-reading, scenario or leave-one-out refits: each
    plant's own estimate has those) and its prior; return one DataTree with provenance."""
    watch = Stopwatch()
    model, layout = build_programme_model(programme, priors, hyper)

    def plant_layout(ds: xr.Dataset) -> xr.Dataset:  # the same layout from either model
        return ds if layout is None else unstack(ds, layout)

    add_log_priors(model)
    watch.mark("build model")
    owners = [STACK] if layout else [p.id for p in programme.plants]
    plant_vars = [
        f"{o}{SEP}{v}" for o in owners for v in PRIOR_VARS if f"{o}{SEP}{v}" in model.named_vars
    ]
    prior_names = PROGRAMME_VARS + plant_vars
    # On a cold machine the draws' expansion and the prior draws compile in a child beside
    # nutpie's compile (model/warmup.py, as `fit` does): 76 and 14 s of a cold three-plant
    # programme whose nutpie compile is 207 s (benchmarks/README.md, twenty-second session)
    side = warmup.Beside(functools.partial(_side_compiles, model, prior_names, settings))
    try:
        with compiled.on_miss(side.start):
            sampler = Sampler(model, settings, watch)
        sampler.retry = True  # a fit that fails the diagnostics is sampled once more
        idata = sampler.sample(None, settings.seed, stage="sampling (main fit)")
        side.wait_timed(watch)  # for the prior draws' compile, which the child makes last
    finally:
        side.stop()  # after an error or an interrupted wait, no child is left behind
    post = plant_layout(idata["posterior"].to_dataset())
    ll = [v for v in post.data_vars if "log_likelihood__" in str(v)]
    lp = [v for v in post.data_vars if "log_prior__" in str(v)]
    idata["log_likelihood"] = post[ll]
    idata["log_prior"] = post[lp]
    post = post.drop_vars(ll + lp)

    # PyMC's draws: a stacked programme's sizes come from batched shapes (model/prior_draws.py)
    prior = one_at_a_time(model, prior_names, settings.prior_draws, settings.seed)
    watch.mark("prior predictive")
    rng = np.random.default_rng(settings.seed)
    groups = {"posterior": post, "prior": plant_layout(prior["prior"].to_dataset())}
    for plant in programme.plants:  # each plant's elasticity and area ratio, as for one plant
        mix = readings(plant, priors[plant.id]["elasticity"])
        for group, ds in groups.items():
            part = with_elasticity(plant_dataset(ds, plant.id), mix, rng)
            groups[group] = ds.assign(_prefixed(part[["area_ratio", "elasticity"]], plant.id))
    idata["posterior"], idata["prior"] = groups["posterior"], groups["prior"]
    idata["prior_predictive"] = plant_layout(prior["prior_predictive"].to_dataset())
    idata["observed_data"] = plant_layout(prior["observed_data"].to_dataset())
    # What a single plant's checks read (plant_view), per plant: its rows' posterior
    # predictive draws and their kinds and bounds.
    predictive, constants = [], []
    for plant in programme.plants:
        own = plant_dataset(groups["posterior"], plant.id)
        predictive.append(_prefixed(_predictive(own, priors[plant.id], rng), plant.id))
        obs = observations(plant.evidence, plant.window, priors[plant.id].noise)
        mix = readings(plant, priors[plant.id]["elasticity"])
        constants.append(_prefixed(constant_data(mix, obs), plant.id))
    idata["posterior_predictive"] = xr.merge(predictive)
    idata["constant_data"] = xr.merge(constants)
    for plant in programme.plants:
        idata[f"evidence/{plant.id}"] = ledger_dataset(plant)
    idata.attrs.update(_provenance(programme, priors, hyper, sampler.settings, sampler.name))
    idata.attrs["retries"] = json.dumps(sampler.retries)  # fits sampled again (diagnostics)
    # which of the two equivalent programme models ran (model/stacked.py), and why
    idata.attrs["programme_model"] = "stacked" if layout else "nested"
    idata.attrs["programme_model_reasons"] = json.dumps(why_not_stacked(programme, priors))
    watch.mark("other")
    idata.attrs["timings"] = json.dumps({k: round(v, 3) for k, v in watch.seconds.items()})
    return idata


def _side_compiles(model: pm.Model, prior_names: list[str], settings: SamplerSettings) -> None:
    """What `fit_programme` compiles after nutpie's compile, compiled now (model/warmup.py's
    child), each called as the fit calls it: the draws' expansion (`Sampler.density`: the
    same graph, so the child's compile is the one the fit loads) and the prior draws."""
    from model.moment_match import Density

    if settings.sampler == "nutpie":  # PyMC's samplers store every variable themselves
        Density(model, stored_names(model)).warm(model, logp=False)
    one_at_a_time(model, prior_names, settings.prior_draws, settings.seed)


def plant_view(idata: xr.DataTree, plant: str) -> xr.DataTree:
    """One plant of a programme fit laid out as a single plant's fit (the groups and names
    `model/checks.py` reads), so that the plant checks run on it unchanged: its variables,
    rows, predictive draws and ledger, its own log priors and the pooled terms'. The draws are
    the programme's: each check judges the plant's rows against the joint posterior."""
    post = plant_dataset(idata["posterior"].to_dataset(), plant)
    log_prior = idata["log_prior"].to_dataset()
    pooled = [v for v in log_prior.data_vars if SEP not in str(v)]
    own = plant_dataset(log_prior, plant)
    ll = plant_dataset(idata["log_likelihood"].to_dataset(), plant)
    view = xr.DataTree()
    view["posterior"] = xr.merge([post, ll, own, log_prior[pooled]])
    view["sample_stats"] = idata["sample_stats"].to_dataset()
    for group in ("prior", "prior_predictive", "observed_data", "posterior_predictive"):
        view[group] = plant_dataset(idata[group].to_dataset(), plant)
    view["constant_data"] = plant_dataset(idata["constant_data"].to_dataset(), plant)
    view["evidence"] = idata[f"evidence/{plant}"].to_dataset()
    _split_log_densities(view, view["constant_data"]["kind"].to_numpy().astype(str))
    view.attrs = dict(idata.attrs)
    return view


def _provenance(programme, priors, hyper, settings, sampler: str) -> dict:
    files = [*programme.input_files, DEFAULT_PRIORS, *sorted(REFERENCE_DIR.glob("*.csv"))]
    window = programme.window
    newest = max(p.evidence["date_reported"].max() for p in programme.plants)
    return {
        "programme": 1,
        "case_id": programme.id,
        "case_title": programme.title,
        "unit": programme.unit,
        "plants": json.dumps({p.id: p.title for p in programme.plants}),
        "plant_windows": json.dumps(
            {p.id: f"{p.window.start}/{p.window.end}" for p in programme.plants}
        ),
        **run_provenance(files, settings, sampler),
        "priors": json.dumps(
            {
                f"{pid}{SEP}{n}": {
                    **dataclasses.asdict(s),
                    "description": s.describe(),
                    "borrowed": s.borrowed,
                }  # fmt: skip
                for pid, pr in priors.items()
                for n, s in pr.specs.items()
                if n not in POOLED
            }
        ),
        "hyperpriors": json.dumps(hyper),
        "window": f"{window.start}/{window.end}",
        "evidence_as_of": programme.as_of or newest.strftime("%Y-%m-%d"),
    }


def plant_windows(idata: xr.DataTree) -> dict[str, Window]:
    out = {}
    for plant, text in json.loads(idata.attrs["plant_windows"]).items():
        start, end = text.split("/")
        out[plant] = Window(pd.Period(start, "M"), pd.Period(end, "M"))
    return out
