"""Calibration of the method itself (slow tier): 200 simulations must pass, and a reduced
run (20 simulations) must still fail when the model is broken on purpose."""

import dataclasses

import pytest
from scipy import stats

from model import load_case
from model.calibration import calibrate, coverage_bounds
from model.fit import SamplerSettings
from model.priors import resolve_priors
from tests.conftest import CASE


def test_coverage_bounds_hold_the_stated_binomial_probability():
    lo, hi = coverage_bounds(200, 0.8, tests=9)
    assert lo < 0.8 < hi
    inside = stats.binom.cdf(hi * 200, 200, 0.8) - stats.binom.cdf(lo * 200 - 1, 200, 0.8)
    assert inside >= 1 - 0.01 / 9


@pytest.mark.slow
def test_calibration_of_the_real_case_shape_passes():
    """200 simulations, as `make calibrate` (a different seed): coverage of the 50/80/95%
    intervals within Bonferroni-corrected 99% binomial bounds, and divergences rare."""
    case = load_case(CASE)
    result = calibrate(case, resolve_priors(case), sims=200, seed=5)
    assert result["passed"], result["coverage"]
    s = result["sampler"]
    assert s["divergences"] <= 0.001 * s["fits"] * s["draws_per_fit"]  # under 1 per 1,000 draws


@pytest.mark.slow
def test_calibration_fails_when_the_model_is_broken_on_purpose():
    """Simulate from the case's priors but fit with a wrong prior on rate_before (median 40
    a month, tight): posteriors are pulled away from the truth, and coverage must fail even
    with 20 simulations."""
    case = load_case(CASE)
    priors = resolve_priors(case)
    wrong = dataclasses.replace(priors["rate_before"], params={"median": 40.0, "sigma": 0.3})
    broken = dataclasses.replace(priors, specs={**priors.specs, "rate_before": wrong})
    settings = SamplerSettings(draws=300, tune=300, chains=2, seed=2)
    result = calibrate(case, priors, sims=20, seed=2, settings=settings, fit_priors=broken)
    assert not result["passed"]
    failed = {c["quantity"] for c in result["coverage"] if not c["passed"]}
    assert {"rate_before", "rate_after"} <= failed
