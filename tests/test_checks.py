"""Health checks: each flags what it should, on the small fit of the real case."""

import numpy as np
import pytest

from model.checks import (
    _weighted_median,
    influence_check,
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
