"""One estimate from start to finish: load (a case or a programme), resolve and check every
prior, take the case's lock, fit, summarise, compare with the previous run, add the history,
write the report. `capest estimate` and a notebook call the same `run_estimate`, so both get
the same report (a notebook's second run says what changed, not "first run").

Bad input raises `InputError` before the lock is taken and before anything is compiled;
another run holding the lock raises `Busy`. The CLI turns both into exit code 2.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from model.sampler import SamplerSettings
from model.timing import Stopwatch

if TYPE_CHECKING:
    from model.reuse import Previous

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A validated case or programme, ready to fit: nothing is locked or compiled yet."""

    case_id: str
    evidence_rows: int
    # the settings, and the case's previous run's refits (model/reuse.py; a programme has none)
    fit: Callable[[SamplerSettings, Previous | None], xr.DataTree]
    summarise: Callable[[xr.DataTree], dict]


@dataclass(frozen=True)
class Estimate:
    folder: Path  # reports/<case>/<UTC timestamp>/
    summary: dict  # what summary.json holds, with `diff` and `history`
    idata: xr.DataTree

    @property
    def exit_code(self) -> int:
        """0 when every check passed, 1 when one failed (the report is written either way)."""
        return 0 if self.summary["passed"] else 1


def prepare(
    case_path: str | Path,
    as_of: str | None = None,
    conditional: bool = True,
    scheduler: str | None = None,
) -> Prepared:
    """Load and check everything the fit would otherwise find wrong only after minutes of
    sampling: the case or programme, its priors, each scenario's priors, the serial rows.
    `scheduler`: a Dask scheduler for the case's refits (model/fit.py's run_refits), or for a
    programme's fit (one job)."""
    from model import load_case
    from model.distribute import Job, one_job
    from model.fit import fit
    from model.footprints_report import summary_block
    from model.priors import resolve_priors
    from model.programme import (
        fit_programme,
        is_programme,
        load_programme,
        resolve_programme_priors,
    )
    from model.serials import serial_rows
    from model.summary import summarize, summarize_programme

    if is_programme(case_path):  # several plants in one model
        programme = load_programme(case_path, as_of=as_of)
        programme_priors, hyper = resolve_programme_priors(programme)
        for plant in programme.plants:
            serial_rows(plant)
        return Prepared(
            programme.id,
            sum(len(p.evidence) for p in programme.plants),
            # one job on the cluster with a scheduler (a programme has no refits to hand out)
            lambda settings, previous: one_job(
                scheduler,
                Job(
                    f"programme {programme.id}",
                    fit_programme,
                    (programme, programme_priors, hyper, settings),
                ),
            ),
            summarize_programme,
        )
    case = load_case(case_path, as_of=as_of)
    priors = resolve_priors(case)
    for name, scenario in case.scenarios.items():
        if scenario.priors:
            resolve_priors(case, scenario=name)
    serial_rows(case)
    footprints = summary_block(case)  # a bad footprints file is bad input, found here
    return Prepared(
        case.id,
        len(case.evidence),
        lambda settings, previous: fit(
            case, priors, settings, conditional=conditional, scheduler=scheduler, previous=previous
        ),
        lambda idata: summarize(idata) | ({"footprints": footprints} if footprints else {}),
    )


def add_history(summary: dict, reports_dir: str | Path, case_id: str) -> dict:
    """The summary with `diff` (against the case's latest run, when there is one) and
    `history` (every past run and this one, ordered by the evidence each used)."""
    from model.compare import by_evidence, diff, history, history_entry, previous_summary

    previous, previous_run = previous_summary(reports_dir, case_id)
    if previous is not None:
        summary["diff"] = diff(previous, summary, previous_run)
    summary["history"] = sorted(
        [*history(reports_dir, case_id), history_entry(summary, "this run")], key=by_evidence
    )
    return summary


def run_estimate(
    case_path: str | Path,
    settings: SamplerSettings | None = None,
    reports_dir: str | Path = "reports",
    *,
    as_of: str | None = None,
    conditional: bool = True,
    watch: Stopwatch | None = None,
    scheduler: str | None = None,
    fresh: bool = False,
) -> Estimate:
    """Estimate a case (or programme) and write its report under `reports_dir`. Unless
    `fresh`, a target to refit is first the case's latest run's refit of it, reweighted to
    this ledger when its weights meet the rules (model/reuse.py)."""
    from model.report import write_report
    from model.reuse import load as load_previous
    from model.runs import case_lock
    from model.strict_json import finite

    watch = watch or Stopwatch()
    watch.begin("loading the evidence and priors")
    settings = settings or SamplerSettings()
    job = prepare(case_path, as_of=as_of, conditional=conditional, scheduler=scheduler)
    watch.mark("load evidence and priors")
    log.info("case %s: %d evidence rows", job.case_id, job.evidence_rows)
    with case_lock(reports_dir, job.case_id):
        previous = None if fresh else load_previous(reports_dir, job.case_id)
        watch.begin("fitting")
        idata = job.fit(settings, previous)
        watch.mark("fit")
        watch.begin("checks and summary")
        summary = add_history(job.summarise(idata), reports_dir, job.case_id)
        watch.mark("checks and summary")
        watch.begin("writing the report")
        folder = write_report(idata, summary, reports_dir)
        watch.mark("write report")
    return Estimate(folder, finite(summary), idata)  # as summary.json holds it (null, not NaN)
