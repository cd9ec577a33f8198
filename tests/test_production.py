import numpy as np
import pytest

from model.production import RAMP_SHARPNESS, production_rate, ramp, usage


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
