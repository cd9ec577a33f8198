"""Slow tier (CI runs it; `make test-slow`): the real case at the default settings, exactly
as `make report` runs it, must pass its diagnostics and exit 0."""

import json

import pytest

from tests.conftest import CASE
from tests.test_cli import capest


@pytest.mark.slow(minutes=4.2)
def test_default_estimate_of_the_real_case_passes_cold_and_warm_alike(tmp_path):
    """From empty compile caches, as on a fresh machine (the compiles after nutpie's in a
    forked child, model/warmup.py), then again with the caches it filled: both pass, and
    the second run's summary is the first's, number for number (only the dates and the
    refits' seconds differ: the refits' compile, well under a second, rounds to 0.0 or 0.1)."""
    import os

    caches = tmp_path / "caches"
    own = os.environ.get("PYTENSOR_FLAGS")
    flags = ",".join(f for f in (own, f"base_compiledir={caches}") if f)
    env = {"PYTENSOR_FLAGS": flags, "NUMBA_CACHE_DIR": str(caches / "numba")}
    summaries = []
    for run in ("cold", "warm"):
        out = capest("estimate", str(CASE), "--reports-dir", str(tmp_path / run), env=env)
        assert out.returncode == 0, out.stderr
        assert "; its diagnostics pass (provisional" in out.stderr  # the main fit's, said early
        # the cold run's later compiles were the child's, and it finished them; none warm
        done = "the child's compiles are done" in out.stderr
        assert done == (run == "cold") and ("compile caches cold" in out.stderr) == done
        latest = tmp_path / run / "february-11-plant" / "latest" / "summary.json"
        summaries.append(json.loads(latest.read_text()))
    summary = summaries[0]
    d = summary["diagnostics"]
    assert d["passed"] and d["divergences"] == 0 and d["max_rhat"] <= 1.01
    assert summary["provenance"]["draws"] == 1000 and summary["provenance"]["chains"] == 4
    for s in summaries:
        s.pop("created"), s["history"][0].pop("created")
        for seconds in ("seconds", "sampling_seconds", "compile_seconds"):  # timings
            s["voi_refits"].pop(seconds)
    assert summaries[1] == summaries[0]
    # the README's estimate is this run's (make readme-table prints it after make report)
    from model.report import readme_table

    assert readme_table(summary) in (CASE.parents[2] / "README.md").read_text()


@pytest.mark.slow(minutes=2.6)
def test_pymc_nuts_fallback_runs_and_is_recorded(tmp_path):
    out = capest(
        "estimate",
        str(CASE),
        "--reports-dir",
        str(tmp_path),
        "--sampler",
        "pymc",
        "--draws",
        "200",
        "--tune",
        "300",
        "--chains",
        "2",
        "--no-conditional",
    )
    assert out.returncode in (0, 1), out.stderr  # few draws: diagnostics may fail, still a report
    summary = json.loads((tmp_path / "february-11-plant" / "latest" / "summary.json").read_text())
    assert summary["provenance"]["sampler"] == "pymc"
    fits = [f["fit"] for f in summary["diagnostics"]["fits"]]
    assert fits[0] == "mixture" and not [f for f in fits if f.startswith("reading:")]


@pytest.mark.slow(minutes=0.8)
def test_influence_refits_rows_where_psis_is_unreliable(monkeypatch):
    """Force every row over the Pareto-k threshold: fit() must refit without each row and the
    influence check must use those refits (method 'refit') instead of PSIS."""
    import model.checks
    import model.fit
    from model import load_case
    from model.checks import influence_check
    from model.fit import fit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings

    monkeypatch.setattr(model.fit, "PARETO_K", -1.0)
    monkeypatch.setattr(model.checks, "PARETO_K", -1.0)
    case = load_case(CASE)
    settings = SamplerSettings(draws=200, tune=300, chains=2, prior_draws=100)
    idata = fit(case, resolve_priors(case), settings, conditional=False)
    ids = list(idata["posterior"]["obs"].to_numpy())
    assert sorted(idata["influence_refits"].children) == sorted(ids)
    result = influence_check(idata)
    assert set(result["method"].values()) == {"refit"} and result["unresolved"] == []


@pytest.mark.slow(minutes=1.9)
def test_rerun_with_a_new_row_names_it_in_what_changed(tmp_path):
    import csv
    import shutil

    from model.evidence import append_row
    from tests.conftest import HEADER, row

    case = tmp_path / "case"
    shutil.copytree(CASE, case)
    reports = tmp_path / "reports"
    few = ["--draws", "300", "--tune", "300", "--chains", "2", "--no-conditional"]
    first = capest("estimate", str(case), "--reports-dir", str(reports), *few)
    assert first.returncode in (0, 1), first.stderr
    new = dict(zip(HEADER.split(","), next(csv.reader([row()])), strict=True))
    new |= {  # a new report: 30 launches in March 2025, in the ledger's own column order
        "id": "launches-new-2025-03",
        "period_start": "2025-03-01",
        "period_end": "2025-03-31",
        "value": "30",
        "date_reported": "2025-04-02",
    }
    append_row(case / "evidence.csv", new)
    second = capest("estimate", str(case), "--reports-dir", str(reports), *few)
    assert second.returncode in (0, 1), second.stderr
    summary = json.loads((reports / "february-11-plant" / "latest" / "summary.json").read_text())
    d = summary["diff"]
    assert d["evidence_added"] == ["launches-new-2025-03"] and not d["same_inputs"]
    assert d["added_rows_by_influence"][0]["id"] == "launches-new-2025-03"
    md = (reports / "february-11-plant" / "latest" / "report.md").read_text()
    assert "## What changed" in md and "launches-new-2025-03" in md.split("## What changed")[1]
    assert len(list((reports / "february-11-plant").glob("2*"))) == 2  # the first run is kept
