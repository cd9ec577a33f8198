import numpy as np
import pytest

from model.production import RAMP_SHARPNESS, production_rate, ramp, stock_flow, usage


def test_ramp_is_zero_before_one_after_and_half_at_midpoint():
    t = np.array([0.0, 16.0, 40.0])
    got = ramp(t, 10.0, 12.0).eval()
    # the smoothed corner leaks at most softplus(-k|x|)/k < exp(-k|x|)/k, x in ramp lengths
    leak = np.exp(-RAMP_SHARPNESS * 10 / 12) / RAMP_SHARPNESS
    assert 0 < got[0] < leak
    assert got[1] == pytest.approx(0.5, abs=1e-3)  # halfway through the ramp
    assert 1 - leak < got[2] <= 1
    assert np.all(np.diff(ramp(np.linspace(0, 40, 200), 10.0, 12.0).eval()) >= 0)


def test_production_goes_from_old_rate_to_old_rate_times_multiplier():
    got = production_rate(np.array([-100.0, 200.0]), 8.0, 2.5, 10.0, 12.0).eval()
    np.testing.assert_allclose(got, [8.0, 20.0], rtol=1e-6)


def test_usage_is_lagged_exported_production_after_exports_start():
    # rate 10, multiplier 2 from month 20 (instant ramp), exports start at month 5, lag 3
    t = np.array([4.0, 30.0, 22.5])
    got = usage(t, 10.0, 2.0, 20.0, 1e-3, 0.6, 3.0, 5.0).eval()
    assert got[0] == pytest.approx(0.0, abs=0.01)  # made at month 1, before exports began
    assert got[1] == pytest.approx(0.6 * 20.0)  # made at 27, after the expansion
    assert got[2] == pytest.approx(0.6 * 10.0, rel=1e-3)  # made at 19.5, before it


def _held_by_hand(arrivals, hazard, initial):
    """The stock month by month, each arrival a cohort: what stock_flow writes in closed form."""
    cohorts, use, age = [(initial, 0)], [], []
    for m, (arrived, h) in enumerate(zip(arrivals, hazard, strict=True)):
        cohorts.append((arrived, m))
        held = sum(a for a, _ in cohorts)
        use.append(held * (1 - np.exp(-h)))
        age.append(sum(a * (m - k) for a, k in cohorts) / held if held else 0.0)
        cohorts = [(a * np.exp(-h), k) for a, k in cohorts]
    return np.array(use), np.array(age)


def test_stock_use_follows_the_recursion_and_never_exceeds_what_was_delivered():
    rng = np.random.default_rng(3)
    arrivals = np.r_[np.zeros(4), rng.uniform(0, 10, 20)]  # deliveries begin in month 4
    hazard = rng.uniform(0.02, 3.0, arrivals.size)  # pauses and surges
    use, held, age = (x.eval() for x in stock_flow(arrivals, hazard, 5.0))
    want_use, want_age = _held_by_hand(arrivals, hazard, 5.0)
    np.testing.assert_allclose(use, want_use, rtol=1e-10)
    np.testing.assert_allclose(age, want_age, rtol=1e-10)
    assert np.all(np.cumsum(use) <= 5.0 + np.cumsum(arrivals) + 1e-9)
    np.testing.assert_allclose(held - use, 5.0 + np.cumsum(arrivals) - np.cumsum(use))


def test_a_surge_draws_down_the_stock_that_quiet_months_built():
    """Six quiet months then one of heavy use: the surge uses far more than that month's
    deliveries, which the flow model (use = a share of each month's production) cannot."""
    arrivals = np.full(7, 10.0)
    hazard = np.r_[np.full(6, 0.05), 5.0]
    use = stock_flow(arrivals, hazard)[0].eval()
    assert use[-1] > 5 * arrivals[-1]
    assert np.sum(use) <= np.sum(arrivals)
