"""Slow tier (CI runs it; `make test-slow`): the real case at the default settings, exactly
as `make report` runs it, must pass its diagnostics and exit 0."""

import json

import pytest

from tests.conftest import CASE
from tests.test_cli import capest


@pytest.mark.slow
def test_default_estimate_of_the_real_case_passes(tmp_path):
    out = capest("estimate", str(CASE), "--reports-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "february-11-plant" / "latest" / "summary.json").read_text())
    d = summary["diagnostics"]
    assert d["passed"] and d["divergences"] == 0 and d["max_rhat"] <= 1.01
    assert summary["provenance"]["draws"] == 1000 and summary["provenance"]["chains"] == 4


@pytest.mark.slow
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
    assert [f["fit"] for f in summary["diagnostics"]["fits"]] == ["mixture"]


@pytest.mark.slow
def test_influence_refits_rows_where_psis_is_unreliable(monkeypatch):
    """Force every row over the Pareto-k threshold: fit() must refit without each row and the
    influence check must use those refits (method 'refit') instead of PSIS."""
    import model.checks
    import model.fit
    from model import load_case
    from model.checks import influence_check
    from model.fit import SamplerSettings, fit
    from model.priors import resolve_priors

    monkeypatch.setattr(model.fit, "PARETO_K", -1.0)
    monkeypatch.setattr(model.checks, "PARETO_K", -1.0)
    case = load_case(CASE)
    settings = SamplerSettings(draws=200, tune=300, chains=2, prior_draws=100)
    idata = fit(case, resolve_priors(case), settings, conditional=False)
    ids = list(idata["posterior"]["obs"].to_numpy())
    assert sorted(idata["influence_refits"].children) == sorted(ids)
    result = influence_check(idata)
    assert set(result["method"].values()) == {"refit"} and result["unresolved"] == []
