"""Monte Carlo error of the reported numbers (summary.json) and the tail-ESS rule of the
sampler diagnostics: draws from chains that are autocorrelated or that linger in a tail."""

import numpy as np
import xarray as xr

from model.diagnostics import MIN_ESS_BULK, MIN_ESS_TAIL, check
from model.summary import MCSE_QUANTILES, interval_summary, probability_summary

NO_DIVERGENCES = xr.DataArray(np.zeros((4, 1000), bool), dims=("chain", "draw"))


def ar1_chains(rho: float, seed: int = 0, chains: int = 4, draws: int = 1000) -> xr.DataArray:
    """Stationary AR(1) chains with unit variance: what a sampler with autocorrelation rho
    between successive draws gives for a standard normal posterior."""
    rng = np.random.default_rng(seed)
    x = np.empty((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    noise = rng.normal(size=(chains, draws)) * np.sqrt(1 - rho**2)
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return xr.DataArray(x, dims=("chain", "draw"))


def lingering_in_upper_tail(seed: int = 3, stay: int = 15) -> xr.DataArray:
    """Independent normal draws, except that a draw beyond 1.7 sd is repeated `stay` times:
    a sampler that sticks in the upper tail (the centre mixes well)."""
    x = np.random.default_rng(seed).normal(size=(4, 1000))
    for c in range(4):
        d = 0
        while d < 1000:
            if x[c, d] > 1.7:
                x[c, d : d + stay] = x[c, d]
                d += stay
            else:
                d += 1
    return xr.DataArray(x, dims=("chain", "draw"))


def test_probability_mcse_accounts_for_autocorrelation():
    """P(event) from chains with autocorrelation 0.9: the MCSE must be far above the
    independent-draws formula sqrt(p (1 - p) / n) (which the summary used before), and close
    to it for independent draws."""
    event = ar1_chains(0.9) > 0.5
    p = float(event.mean())
    naive = np.sqrt(p * (1 - p) / event.size)
    out = probability_summary(event, "test")
    assert out["value"] == p
    assert out["mcse"] > 2.5 * naive  # AR(1) 0.9: the ESS is about n / 19 for the mean of x
    independent = ar1_chains(0.0) > 0.5
    q = float(independent.mean())
    iid = probability_summary(independent, "test")["mcse"]
    assert 0.8 < iid / np.sqrt(q * (1 - q) / independent.size) < 1.25


def test_interval_summary_gives_each_quantile_its_mcse():
    """Every quantile in MCSE_QUANTILES has an MCSE; the 97.5% quantile's of correlated
    chains exceeds its independent-draws value (the normal-density formula, Vehtari et al.
    2021 eq. 8 approximated: sqrt(p(1-p)/n) / density at the quantile)."""
    draws = ar1_chains(0.9)
    out = interval_summary(draws, "u", "test")
    assert set(out["mcse"]) == {str(p) for p in MCSE_QUANTILES}
    from scipy import stats

    iid = np.sqrt(0.975 * 0.025 / draws.size) / stats.norm.pdf(stats.norm.ppf(0.975))
    assert out["mcse"]["0.975"] > 2 * iid
    assert out["mcse"]["0.5"] < out["mcse"]["0.975"]  # the tails are the hardest to pin down
    # draws without chains (one flattened array) have no honest MCSE: none is reported
    assert "mcse" not in interval_summary(draws.to_numpy().ravel(), "u", "test")


def test_tail_ess_threshold_equals_bulk():
    assert MIN_ESS_TAIL == MIN_ESS_BULK


def test_fit_with_low_tail_ess_fails_the_diagnostics():
    """A sampler that lingers in the upper tail: R-hat and bulk ESS pass, tail ESS does not,
    and the fit must fail on it. With a shorter stay (tail ESS above the threshold) it passes."""
    bad = check(xr.Dataset({"rate_before": lingering_in_upper_tail(stay=15)}), NO_DIVERGENCES, "t")
    assert bad["max_rhat"] <= 1.01 and bad["min_ess_bulk"] >= MIN_ESS_BULK
    assert bad["min_ess_tail"] < MIN_ESS_TAIL
    assert not bad["passed"] and bad["failures"] == [f"tail ESS {bad['min_ess_tail']:.0f} < 400"]
    ok = check(xr.Dataset({"rate_before": lingering_in_upper_tail(stay=10)}), NO_DIVERGENCES, "t")
    assert ok["passed"] and ok["min_ess_tail"] >= MIN_ESS_TAIL
