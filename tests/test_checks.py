"""Health checks: each flags what it should, on the small fit of the real case."""

import numpy as np
import pytest

from model.checks import (
    _weighted_median,
    busiest_months_share,
    influence_check,
    launches_within_transfers,
    loo_pit_ecdf_check,
    posterior_predictive_check,
    prior_predictive_check,
    sensitivity_check,
)


def with_observed(fit, row_ids, value):
    """A copy of the fit whose evidence says `value` (log1p scale) for these rows."""
    tree = fit.copy()
    obs = tree["observed_data"].to_dataset()
    y = obs["evidence"].copy()
    y.loc[{"obs": row_ids}] = value
    tree["observed_data"] = obs.assign(evidence=y)
    return tree


def test_clean_fit_flags_nothing_in_predictive_checks(small_fit):
    assert prior_predictive_check(small_fit)["flagged"] == []
    assert posterior_predictive_check(small_fit)["status"] == "pass"


def test_an_impossible_observation_is_flagged_before_and_after_fitting(small_fit):
    # a million launches in one month: far outside what the priors or the rest allow
    tree = with_observed(small_fit, ["launches-yomiuri-2024-08"], np.log1p(1e6))
    assert prior_predictive_check(tree)["flagged"] == ["launches-yomiuri-2024-08"]
    post = posterior_predictive_check(tree)
    assert post["streams"]["launches"]["flagged"] == ["launches-yomiuri-2024-08"]
    assert post["status"] == "warn"  # one row of fourteen: a warning, not a failure


def test_a_stream_the_model_cannot_explain_fails(small_fit):
    rows = ["launches-yomiuri-2024-08", "launches-yomiuri-2024-09", "launches-yomiuri-2024-h1",
            "launches-yomiuri-2024-h2", "launches-hur-2024-12-05"]  # fmt: skip
    post = posterior_predictive_check(with_observed(small_fit, rows, np.log1p(1e6)))
    assert post["streams"]["launches"]["status"] == "fail" and post["status"] == "fail"


def test_sensitivity_covers_every_prior_and_stream(small_fit):
    s = sensitivity_check(small_fit)
    assert s["flat_priors"] == ["completion"]  # uniform: power-scaling leaves it unchanged
    assert set(s["priors"]) == {"rate_before", "log_gain_log", "ramp_months", "export_share",
                                "use_lag", "burst_sd", "source_bias"}  # fmt: skip
    assert set(s["likelihood"]) == {"evidence", "launches", "transfers", "date_code"}
    for values in [*s["priors"].values(), *s["likelihood"].values()]:
        assert all(v >= 0 for v in values.values())


def test_weighted_median():
    x = np.array([5.0, 1.0, 3.0, 2.0, 4.0])
    assert _weighted_median(x, np.ones(5)) == np.median(x)
    assert _weighted_median(x, np.array([0, 0, 0, 0, 1.0])) == 4.0


def test_influence_names_real_rows_and_is_zero_for_a_row_with_no_information(small_fit):
    inf = influence_check(small_fit)
    ids = set(small_fit["posterior"]["obs"].to_numpy())
    assert set(inf["top_rate_after"]) <= ids and len(inf["top_rate_after"]) == 5
    assert set(inf["method"].values()) <= {"psis", "refit"}
    # "at least 1 launch on 24 Apr 2025" is almost certainly true under any parameters:
    # leaving it out cannot move the estimate by more than Monte Carlo noise (0.05 sd here)
    assert inf["shifts"]["rate_after"]["launches-firstpost-2025-04-24"] == pytest.approx(
        0, abs=0.05
    )


def scaled(fit, kind, factor):
    """A copy of the fit whose rows of `kind` state `factor` times their counts (values and
    bounds): a stream off by that factor, against a posterior fitted to the real counts."""
    tree = fit.copy()
    const, obs = tree["constant_data"].to_dataset(), tree["observed_data"].to_dataset()
    moved = const["kind"] == kind
    shift = np.log(factor)  # log1p(x * f) ~ log1p(x) + log f for counts well above 1
    tree["observed_data"] = obs.assign(
        evidence=obs["evidence"].where(~moved, obs["evidence"] + shift)
    )
    tree["constant_data"] = const.assign(
        lower=const["lower"].where(~moved, const["lower"] + shift),
        upper=const["upper"].where(~moved, const["upper"] + shift),
    )
    return tree


def test_time_pattern_and_pit_ecdf_checks_pass_on_the_real_case(small_fit):
    for check in (launches_within_transfers, busiest_months_share, loo_pit_ecdf_check):
        result = check(small_fit)
        assert result["status"] == "pass", result["finding"]
    shares = busiest_months_share(small_fit)["shares"]  # August and September of the half-year
    assert list(shares) == ["launches-yomiuri-2024-h2"]
    assert shares["launches-yomiuri-2024-h2"] == pytest.approx(48 / 74)


def test_a_launch_surge_the_stated_transfers_cannot_supply_fails(small_fit):
    # 300 launched by 27 Feb 2024 (the prosecutors said 50), while at most 120 had been
    # transferred by 14 June: the stock cannot supply it.
    tree = with_observed(small_fit, ["launches-prosecutors-2024-02-27"], np.log1p(300))
    result = launches_within_transfers(tree)
    assert result["status"] == "fail", result["finding"]
    assert result["worst_pair"] == ["launches-prosecutors-2024-02-27", "transfers-shin-2024-06-14"]
    # the per-row check allows for an outlier and does not see it
    assert posterior_predictive_check(tree)["status"] == "pass"


def test_a_monthly_count_off_by_three_fails_the_busiest_months_check(small_fit):
    # August 2024 reported as 72 instead of 24: August and September would hold more than all
    # of the second half-year's 74
    tree = with_observed(small_fit, ["launches-yomiuri-2024-08"], np.log1p(72))
    result = busiest_months_share(tree)
    assert result["status"] == "fail", result["finding"]
    # the per-row check flags August at most, a warning that does not fail the run
    assert posterior_predictive_check(tree)["status"] != "fail"


def test_launch_counts_off_by_two_fail_the_loo_pit_ecdf(small_fit):
    result = loo_pit_ecdf_check(scaled(small_fit, "launches", 2))
    assert result["streams"]["launches"]["status"] == "fail" and result["status"] == "fail"
    assert result["streams"]["transfers"]["status"] == "pass"
    assert (
        "launches (p = " in result["finding"] and "above what the rest predict" in result["finding"]
    )


def test_time_pattern_checks_pass_a_fit_with_no_measured_rows():
    """A case whose only measured evidence is serial sightings has no `obs` rows: the
    time-pattern checks have nothing to compare and must say so, not fail to compute
    (the slow serials-only cases reported 'could not be computed: KeyError: ids')."""
    import numpy as np
    import xarray as xr

    from model.checks import PASS, busiest_months_share, launches_within_transfers

    post = xr.Dataset({"rate_before": (("chain", "draw"), np.ones((2, 10)))})
    idata = xr.DataTree.from_dict({"posterior": post})
    for check in (busiest_months_share, launches_within_transfers):
        result = check(idata)
        assert result["status"] == PASS and result["p"] is None, result


def test_psis_loo_is_computed_once_per_fit_and_the_checks_reuse_it(small_fit, monkeypatch):
    """fit() saves the rows' PSIS-LOO (model/loo.py); the three checks that read it compute
    it no more, and without ArviZ's warning about high k (the influence check states k)."""
    import warnings

    import arviz as az
    import xarray as xr

    from model import loo
    from model.checks import run_checks

    assert loo.NODE in small_fit.children  # saved by fit(), and with it in posterior.nc
    xr.testing.assert_allclose(loo.compute(small_fit), small_fit[loo.NODE].to_dataset())
    calls, real = [], az.loo

    def counted(*args, **kwargs):
        calls.append(kwargs.get("var_name"))
        return real(*args, **kwargs)

    monkeypatch.setattr(az, "loo", counted)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        checks = {c["name"]: c for c in run_checks(small_fit)}
    assert calls.count("evidence") == 0
    assert not [w for w in seen if "shape parameter of Pareto" in str(w.message)]
    influence = checks["influence"]
    refitted = [i for i, m in influence["method"].items() if m == "refit"]  # ledger order
    saved = small_fit["influence_refits"] if "influence_refits" in small_fit.children else None
    assert sorted(refitted) == sorted(saved.children if saved is not None else [])
    said = f"Pareto k > 0.7 for {len(refitted)} row(s), each refitted without it: "
    assert (said + ", ".join(refitted) in influence["finding"]) == bool(refitted)
    # a tree without the saved node (a programme plant's view): once for all the checks
    bare = small_fit.copy()
    del bare[loo.NODE]
    calls.clear()
    assert [c["status"] for c in run_checks(bare)] == [c["status"] for c in checks.values()]
    assert calls.count("evidence") == 1
