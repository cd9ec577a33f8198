"""What to measure next: the value of information of each uncertain input and of concrete new
measurements, as pure functions of a saved fit (posterior.nc): nothing is sampled here; the
few refits it uses were made by the fit and saved in it (model/voi_refit.py).

**Learning an input exactly (EVPPI for estimation).** If input X were known, the posterior
variance of a quantity Y would be Var(Y | X); before knowing it, its expectation is
E[Var(Y | X)] = Var(Y) - Var(E[Y | X]). E[Y | X] is fitted on the posterior draws by a
penalised regression spline (P-spline: 20 cubic B-splines at the draws' quantiles, a
second-difference penalty chosen by generalised cross-validation), and for a group of inputs
by an additive model of such splines fitted by backfitting, as the R package voi does with a
GAM (`evppivar`). Why not scipy's `make_smoothing_spline`: it puts a knot at every draw, and
its GCV took 4 s per fit on 4,000 draws on this machine (27 fits per case); a regression
spline of 20 terms is a GAM smooth of the same kind at a thousandth of the cost. The Monte
Carlo error is ArviZ's autocorrelation-aware MCSE of the mean of the squared residuals
y - E[y | x] over the chains (the estimate's influence function), by the delta method on the
sd. It leaves out the smoother's own fitting error: 3-15% low against the spread over repeated
runs in tests/test_voi.py. The earlier design, a bootstrap of the draws that refitted the
smoother each time, treated them as independent: on draws as autocorrelated as a slow NUTS
chain's it understated the error about twofold (the same test), and took 0.9 s a run.

**A new measurement (EVSI).** A candidate (model/candidates.py) is one new ledger row with
no value. Preposterior simulation: pick posterior draws, draw the row's measured value from
the posterior predictive (the row's observation model, model/observation.py: robust normal on
log(1 + value) with the grade's noise and the outlier component), and reweight every
posterior draw by that value's likelihood with Pareto-smoothed importance sampling
(arviz-stats `psislw`); the reweighted draws are the posterior after observing it. Averaged
over the simulated values: the expected posterior variance and the expected 80% interval
width. The Monte Carlo error is the standard error over the simulated values. A Pareto k above
0.7 means the reweighted posterior rests on few draws: the fit refits some of those values
(model/voi_refit.py, capped), and their mean stands for all of the candidate's flagged values
(`combine`, a stratified mean); with none refitted the figure is flagged as approximate.
Refits are made only where they can matter. The law of total variance bounds what they can
change: averaged over the values a measurement can take, the posterior variance is at most
the current one, so the flagged values' share of the expected variance lies between 0 and
what the unflagged ones leave of the current variance (`flagged_bound`; no assumption). When
that bound is within the figure's Monte Carlo error for every quantity valued, the flagged
values are bounded, not refitted (`bounded`). Otherwise the refits estimate the flagged
values' mean (a stratified mean), and only as many are made as keep their own error a small
part of the figure's MCSE (`refits_needed`); the summary and report say which.

The ranking is by the quantity the case names (case.toml `[voi] target`, checked by
model/candidates.py), by default the full rate after the expansion.

Positive quantities are handled on the log scale (their uncertainty is multiplicative) and
converted back: sd and interval width are in the quantity's unit. The values are for this
model and its priors: they say how much a measurement would narrow *this* posterior, not
whether the model is right.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import cache

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr
from scipy.interpolate import BSpline

from model import variables
from model.candidates import (
    DEFAULT_TARGET,
    IMAGERY,
    NEXT_YEAR,
    YEARLY,
    Candidate,
    declared,
    defaults,
)
from model.loo import PARETO_K as PARETO_K_MAX
from model.observation import measurement_draw, observations, robust_logp, row_logp
from model.reweight import LOG_WEIGHT
from model.timeline import Window, parse_date

INTERVAL = 0.8  # the interval every width here is of (equal-tailed, stated with its probability)
TAILS = ((1 - INTERVAL) / 2, (1 + INTERVAL) / 2)
SIMULATIONS = 200  # simulated values per candidate: MC error of the expected sd about 1-3%
SPLINE_TERMS = 20  # B-splines per input in the regression spline
SEED_OFFSET = 1717  # the fit's seed plus this: the simulation repeats with the fit
# How many of a candidate's flagged values to refit (`refits_needed`): enough that the refits'
# own sampling error (their stratum's mean, `combine`) adds at most this share of the figure's
# other Monte Carlo error, in quadrature (0.5: the MCSE grows by 12% at most).
REFIT_ERROR_SHARE = 0.5

# ----------------------------------------------------------------------------- targets


def targets(post: xr.Dataset, attrs: dict) -> dict[str, np.ndarray]:
    """The quantities valued, as flat positive draws: the rates kept in the run history
    (before and after the expansion), production in the next calendar year (the year after
    the latest evidence's, or the window's last year when that one is past it), and the
    quantity the case names as its target (case.toml `[voi] target`), if another."""
    out = {n: _flat(post[n]) for n in variables.select(variables.HISTORY) if n in post}
    if YEARLY in post:
        year = next_year(post, attrs)
        out[f"production_{year}"] = _flat(post[YEARLY].sel(year=year))
    name = target(post, attrs)
    if name not in out:
        year = name.removeprefix("production_")
        out[name] = _flat(post[YEARLY].sel(year=int(year)) if year.isdigit() else post[name])
    return out


def next_year(post: xr.Dataset, attrs: dict) -> int:
    years = [int(y) for y in post["year"].to_numpy()]
    as_of = attrs.get("evidence_as_of")
    year = min(parse_date(as_of).year + 1, years[-1]) if as_of else years[-1]
    return max(year, years[0])


def target(post: xr.Dataset, attrs: dict) -> str:
    """The quantity the ranking is by: the case's `[voi] target` (checked when the case was
    loaded, model/candidates.py), with `production_next_year` resolved to its year; else the
    full rate after the expansion."""
    name = json.loads(attrs.get("voi", "{}")).get("target", DEFAULT_TARGET)
    return f"production_{next_year(post, attrs)}" if name == NEXT_YEAR else name


def _flat(da: xr.DataArray) -> np.ndarray:
    return da.transpose("chain", "draw", ...).to_numpy().reshape(-1)


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, 1e-300))


# ------------------------------------------------------------------------ EVPPI (inputs)


def input_groups(post: xr.Dataset, names: list[str]) -> dict[str, np.ndarray]:
    """Each input (group) an analyst thinks in, as a (draws, columns) array on the scale it is
    compared on: every quantity whose evidence effect is reported (registry role EFFECT) that
    is not itself valued, the floor-area ratio, the lag and stock parameters together, the
    source biases together, and the export share with the multiplier (the two that carry the
    full rate beyond what the evidence decides)."""

    def column(n: str) -> np.ndarray | None:
        if n not in post or post[n].ndim != 2:
            return None
        x = _flat(post[n])
        scale = variables.REGISTRY[n].scale if n in variables.REGISTRY else variables.LOG
        return _log(x) if scale == variables.LOG else x

    groups = {}
    singles = [n for n in variables.select(variables.EFFECT) if n not in names]
    for n in [*singles, "area_ratio"]:
        x = column(n)
        if x is not None and np.ptp(x) > 0:
            groups[n] = x[:, None]
    effect = variables.select(variables.EFFECT)
    # the lag with the other priors of the use (those the evidence-effect table leaves out),
    # and what each valued quantity is made of (the registry's `inputs`)
    stock = ("use_lag", *[n for n in variables.select(variables.PRIOR) if n not in effect])
    made_of = [variables.REGISTRY[n].inputs for n in names if n in variables.REGISTRY]
    for joint in dict.fromkeys([stock, *[m for m in made_of if len(m) > 1]]):
        cols = [column(n) for n in joint]
        if all(c is not None for c in cols):
            groups["+".join(joint)] = np.column_stack(cols)
    if "source_bias" in post:
        bias = post["source_bias"].transpose("chain", "draw", ...).to_numpy()
        groups["source_bias"] = bias.reshape(-1, bias.shape[-1])
    return groups


# Inputs the fit adds besides the registry's (model/fit.py with_elasticity, the bias vector).
OTHER_LABELS = {
    "area_ratio": "floor-area ratio (after / before, its reading settled)",
    "source_bias": "the sources' shared biases",
}


def group_label(group: str) -> str:
    return " and ".join(OTHER_LABELS.get(n) or variables.label(n) for n in group.split("+"))


def _basis(x: np.ndarray, terms: int = SPLINE_TERMS) -> np.ndarray:
    """Cubic B-splines with knots at quantiles of x (dense where the draws are)."""
    inner = np.unique(np.quantile(x, np.linspace(0, 1, terms - 2)))
    knots = np.concatenate([[inner[0]] * 3, inner, [inner[-1]] * 3])
    return BSpline.design_matrix(np.clip(x, inner[0], inner[-1]), knots, 3).toarray()


LAMBDAS = 10.0 ** np.arange(-4, 8.5, 0.25)  # the penalties GCV chooses from


class Smoother:
    """E[y | x] at the draws from x's B-spline basis `b`: a P-spline (second-difference
    penalty), the penalty chosen by generalised cross-validation. One eigendecomposition
    (Demmler-Reinsch) makes every penalty on the grid cost a vector operation; it depends on
    the basis only, so it is made once and serves every y (backfitting smooths each basis
    once a sweep)."""

    def __init__(self, b: np.ndarray) -> None:
        n, m = b.shape
        d = np.diff(np.eye(m), 2, axis=0)
        btb = b.T @ b
        chol = np.linalg.cholesky(btb + 1e-9 * np.trace(btb) / m * np.eye(m))
        self.inv = np.linalg.inv(chol)
        s, self.u = np.linalg.eigh(self.inv @ d.T @ d @ self.inv.T)
        self.shrink = 1.0 / (1.0 + LAMBDAS[:, None] * np.maximum(s, 0.0))  # (lambdas, m)
        self.edf = self.shrink.sum(axis=1)
        self.b, self.n = b, n

    def __call__(self, y: np.ndarray) -> np.ndarray:
        c = self.u.T @ (self.inv @ (self.b.T @ y))
        yy = float(y @ y)
        shrink = self.shrink
        rss = yy - np.sum(shrink * (2.0 - shrink) * c**2, axis=1)  # ||y - B coef||^2 per lambda
        gcv = self.n * np.maximum(rss, 0.0) / (self.n - self.edf) ** 2
        best = int(np.argmin(gcv))
        coef = self.inv.T @ (self.u @ (shrink[best] * c))
        return self.b @ coef


def additive(
    bases: list[np.ndarray], y: np.ndarray, sweeps: int = 20, tol: float = 1e-4
) -> np.ndarray:
    """E[y | x_1..x_k] as an additive model, a sum of P-splines (one basis per input),
    fitted by backfitting."""
    mean = y.mean()
    if len(bases) == 1:
        return mean + Smoother(bases[0])(y - mean)
    smoothers = [Smoother(b) for b in bases]
    parts = np.zeros((len(y), len(bases)))
    for _ in range(sweeps):
        change = 0.0
        for j, smoother in enumerate(smoothers):
            rest = y - mean - parts.sum(axis=1) + parts[:, j]
            new = smoother(rest)
            new -= new.mean()
            change = max(change, float(np.max(np.abs(new - parts[:, j]))))
            parts[:, j] = new
        if change < tol * (np.std(y) + 1e-12):
            break
    return mean + parts.sum(axis=1)


def evppi_one(
    y: np.ndarray, x: np.ndarray, shape: tuple[int, int] | None = None, log_scale: bool = True
) -> dict:
    """Expected posterior sd and 80% width of Y (on `y`'s scale, and for a log scale in Y's
    units) if the inputs `x` (draws, columns) were known exactly. The draws are flat, chain
    after chain, of `shape` (chains, draws); None: one chain."""
    bases = [_basis(col) for col in x.T if np.ptp(col) > 0]
    if not bases:
        bases = [np.ones((len(y), 1))]
    fitted = additive(bases, y)
    var = max(float(np.var(y) - np.var(fitted)), 0.0)
    resid = y - fitted
    lo, hi = np.quantile(resid, TAILS)
    if log_scale:  # Y | X ~ exp(f(X) + residual): width and sd in Y's units, averaged over X
        width = float(np.mean(np.exp(fitted)) * (np.exp(hi) - np.exp(lo)))
        sd_units = float(np.sqrt(np.mean(np.exp(2 * fitted)) * np.var(np.exp(resid))))
    else:
        width, sd_units = float(hi - lo), float(np.sqrt(var))
    # E[Var(Y | X)] is the mean of the squared residuals; its MCSE over the chains (ArviZ,
    # autocorrelation-aware), then the sd's by the delta method (at sd 0, where that fails,
    # sqrt bounds it: |sqrt(a) - sqrt(b)| <= sqrt(|a - b|))
    square = (resid - resid.mean()) ** 2
    mcse_var = float(azs.mcse(square.reshape(shape or (1, len(y))), method="mean"))
    sd = np.sqrt(var)
    return {
        "expected_sd_scale": float(sd),
        "mcse_sd_scale": mcse_var / (2 * sd) if sd > 0 else float(np.sqrt(mcse_var)),
        "expected_sd": sd_units,
        "expected_interval_80_width": width,
    }


# ------------------------------------------------------------------ EVSI (measurements)


def weighted_cdf(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts `values`, and each row of `weights` (simulations, draws) summed
    along it to the midpoint of each draw's weight, scaled to 0..1: one sort serves every row,
    and every quantity ordered as `values` is (its log, for one)."""
    order = np.argsort(values)
    w = weights[:, order]
    cum = np.cumsum(w, axis=1) - 0.5 * w
    cum /= cum[:, -1:] + 0.5 * w[:, -1:]
    return order, cum


def quantiles_at(cum: np.ndarray, sorted_values: np.ndarray, q) -> np.ndarray:
    """Quantiles `q` under each row of `cum` (weighted_cdf) of the values sorted as it was."""
    return np.array([np.interp(q, c, sorted_values) for c in cum])


class Kept:
    """A function's last results by the content of its inputs: the fit (model/voi_refit.py)
    and the summary simulate the same values in one `capest estimate`, and simulating and
    smoothing them again was about 1 s of a February 11 run (benchmarks/README.md). Results
    are handed out as copies: a caller that changes its arrays changes nothing kept."""

    def __init__(self, size: int = 8) -> None:
        self.size, self.results = size, {}

    @staticmethod
    def key(array: np.ndarray, *rest) -> bytes:
        array = np.ascontiguousarray(array, dtype=float)
        digest = hashlib.blake2b(array.tobytes(), digest_size=20)
        digest.update(repr((array.shape, *rest)).encode())
        return digest.digest()

    def get(self, key: bytes, compute) -> tuple:
        if key not in self.results:
            self.results[key] = compute()
            while len(self.results) > self.size:
                del self.results[next(iter(self.results))]  # the oldest
        return tuple(v.copy() if isinstance(v, np.ndarray | dict) else v for v in self.results[key])


_smoothed, _simulated = Kept(), Kept()


def psis_weights(log_lik: np.ndarray, r_eff: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised PSIS weights of the draws after each simulated measurement (simulations,
    draws), from its log-likelihood, and each simulation's Pareto k."""
    log_lik = np.ascontiguousarray(log_lik, dtype=float)
    key = Kept.key(log_lik, float(r_eff))
    return _smoothed.get(key, lambda: _psis_weights(log_lik, r_eff))


def _psis_weights(log_lik: np.ndarray, r_eff: float) -> tuple[np.ndarray, np.ndarray]:
    from arviz_stats.base import array_stats

    log_w, k = np.zeros_like(log_lik), np.zeros(len(log_lik))
    for s, row in enumerate(log_lik):
        try:
            # arviz-stats' psislw is LOO's: it takes a log-likelihood and smooths the ratios
            # exp(-log_lik). Ours are exp(+log_lik) (adding a row), hence the minus sign.
            log_w[s], k[s] = array_stats.psislw(-row, r_eff=r_eff)
        except ValueError:
            # "All tail values are the same": the largest ratios are tied (draws that predict
            # the value exactly alike, e.g. a reading with a point ratio). A flat tail needs
            # no smoothing: plain importance weights, k taken as 0 (no heavy tail).
            log_w[s], k[s] = row - row.max(), 0.0
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    # k is NaN when the tail fit fails: a few draws carry all the weight, the worst case
    return w / w.sum(axis=1, keepdims=True), np.where(np.isnan(k), np.inf, k)


def k_quantile(k: np.ndarray, q: float = 0.9) -> float:
    """The `q` quantile of a candidate's Pareto k over its simulated values. k is infinite
    where the tail fit failed (psis_weights); interpolating between two infinite k would give
    NaN, which compares false with PARETO_K_MAX and would unflag the worst case."""
    with np.errstate(invalid="ignore"):  # inf - inf, taken as the infinite k it is
        value = float(np.quantile(k, q))
    return math.inf if math.isnan(value) else value


def posterior_stats(y: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Per simulation (a row of `w`, weights over the draws of `y`): the posterior variance of
    log y and of y, and the 80% interval's width in y's units and on the log scale."""
    logy = _log(y)
    m = w @ logy
    # the log keeps y's order: one sort and one cumulative sum serve both widths (they were
    # 0.3 s of a February 11 estimate each)
    order, cum = weighted_cdf(y, w)
    return {
        "var_log": np.maximum(w @ logy**2 - m**2, 0.0),
        "var_units": np.maximum(w @ y**2 - (w @ y) ** 2, 0.0),
        "width": np.diff(quantiles_at(cum, y[order], TAILS), axis=1)[:, 0],
        "log_width": np.diff(quantiles_at(cum, logy[order], TAILS), axis=1)[:, 0],
    }


def combine(stats: dict, refitted: dict | None = None, flagged=None) -> dict:
    """The expected posterior sd and 80% width over the simulations and their Monte Carlo
    errors. With `refitted` (the same statistics from refits of a random subset of the
    `flagged` simulations, those whose weights cannot be trusted): a stratified mean, the
    unflagged simulations reweighted and the flagged ones' mean estimated by their refits."""
    n_sim = len(stats["var_log"])
    if not refitted or not len(refitted["var_log"]):
        mean = {k: float(v.mean()) for k, v in stats.items()}
        se = {k: float(np.std(v, ddof=1) / np.sqrt(n_sim)) for k, v in stats.items()}
    else:
        keep = np.ones(n_sim, bool)
        keep[np.asarray(flagged, int)] = False
        share = 1.0 - keep.mean()  # of the simulations, flagged
        mean, se = {}, {}
        for k, v in stats.items():
            u, r = v[keep], np.asarray(refitted[k])
            # a single refit has no spread of its own: the flagged values' reweighted spread,
            # plus the refit's own Monte Carlo variance (`mc_var_log`; with several refits
            # their spread holds it already)
            spread = r if len(r) > 1 else v[~keep]
            r_var = np.var(spread, ddof=1) if len(spread) > 1 else 0.0
            if len(r) == 1 and k == "var_log":
                r_var += float(np.sum(refitted.get("mc_var_log", 0.0)))
            u_var = np.var(u, ddof=1) / len(u) if len(u) > 1 else 0.0
            u_mean = u.mean() if len(u) else 0.0
            mean[k] = float((1 - share) * u_mean + share * r.mean())
            se[k] = float(np.sqrt((1 - share) ** 2 * u_var + share**2 * r_var / len(r)))
    sd_log = np.sqrt(mean["var_log"])
    return {
        "expected_sd_log": float(sd_log),
        "mcse_sd_log": float(se["var_log"] / (2 * sd_log)) if sd_log > 0 else 0.0,
        "expected_sd": float(np.sqrt(mean["var_units"])),
        "expected_interval_80_width": mean["width"],
        "mcse_interval_80_width": se["width"],
        "expected_interval_80_log_width": mean["log_width"],
    }


def reweighted(values: dict[str, np.ndarray], log_lik: np.ndarray, r_eff: float = 1.0) -> dict:
    """The posterior after each simulated measurement: PSIS-smoothed weights from its
    log-likelihood (simulations, draws), then per quantity (positive draws, handled on the
    log scale) the expected posterior variance on that scale, the expected sd and 80% width in
    the quantity's unit, and their Monte Carlo errors over the simulations."""
    w, k = psis_weights(log_lik, r_eff)
    out = {"pareto_k": k}
    for name, y in values.items():
        out[name] = combine(posterior_stats(y, w))
    return out


@cache
def observation_logp(robust: bool):
    """The observation model's log density (model/observation.py) as a numeric function of
    (value, mu, sigma, outlier_share, outlier_sd), compiled once (model/compiled.py)."""
    import pytensor.tensor as pt

    from model import compiled

    value = pt.tensor("value", dtype="float64", shape=(None, 1))  # simulated values
    mu = pt.tensor("mu", dtype="float64", shape=(1, None))  # each posterior draw's prediction
    sigma, share, wide = pt.dscalar("sigma"), pt.dscalar("share"), pt.dscalar("wide")
    never, one = pt.constant(-1e3), pt.constant(1.0)  # exact rows: bounds unused
    if robust:
        out = robust_logp(value, mu, sigma, never, -never, one, share, wide)
    else:
        out = row_logp(value, mu, sigma, never, -never, one)
    # loaded from the disk cache after the first process (its rewrites were 0.3 s a call)
    return compiled.function(
        [value, mu, sigma, share, wide], out, mode="FAST_COMPILE", on_unused_input="ignore"
    )


def candidate_measurement(
    candidate: Candidate,
    post: xr.Dataset,
    window: Window,
    export_start,
    measurement: dict,
    unit: str,
) -> tuple[np.ndarray, float, bool]:
    """What the candidate measures in each draw (on its log scale), its noise sd, and whether
    the outlier component applies: ledger kinds as model/build.py predicts them (log1p of the
    launches, transfers, production or capacity the row covers), imagery as the log of the
    floor-area ratio with the candidate's precision."""
    if candidate.kind == IMAGERY:
        return _log(_flat(post["area_ratio"])), float(np.log1p(candidate.precision)), False
    row = pd.DataFrame([candidate.ledger_row(unit)])
    obs = observations(row, window, measurement["noise"])
    production = post["production"].transpose("chain", "draw", "month").to_numpy()
    production = production.reshape(-1, production.shape[-1])
    # as model/build.py: exports count from the export start (a share of its first month)
    share_of_month = np.clip(np.arange(window.n_months) + 1 - window.time_of(export_start), 0, 1)
    exported = _flat(post["export_share"])[:, None] * production * share_of_month
    weights = obs.weights  # model/likelihood.py: what the row reads of each monthly path
    predicted = exported @ weights["exported"][0] + production @ weights["production"][0]
    if weights["use"][0].any():
        use = post["usage"].transpose("chain", "draw", "month").to_numpy()
        predicted = predicted + use.reshape(-1, use.shape[-1]) @ weights["use"][0]
    return np.log1p(predicted), float(obs.sigma[0]), True


def simulate(
    candidate: Candidate,
    post: xr.Dataset,
    window: Window,
    export_start,
    measurement: dict,
    unit: str,
    simulations: int = SIMULATIONS,
    rng=None,
    ranked: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate's simulated measured values (log(1 + value) scale for a ledger row, log
    ratio for imagery), drawn from the posterior predictive, and each value's log-likelihood
    under every posterior draw (simulations, draws). Deterministic given `rng`: the fit's
    refits (model/voi_refit.py) and the summary draw the same values."""
    rng = np.random.default_rng(0) if rng is None else rng
    mu, sigma, robust = candidate_measurement(
        candidate, post, window, export_start, measurement, unit
    )
    share = measurement["outlier_share"] if robust else 0.0
    wide = measurement["outlier_sd"]
    state = rng.bit_generator.state  # the same generator state draws the same values

    def draw():
        # A draw picked at random, as a rank of the sorted predictions: the same distribution
        # as an index into the draws, but a rerun's value of simulation i is then at the same
        # quantile of its predictions, with the same noise, so after a ledger change it lies
        # next to the previous run's and that run's refit of it can be reweighted to this
        # run's target (model/voi_refit.py `reweighted_previous`). By index: a fit saved
        # before (`ranked_simulation`), whose refits are of the values drawn so.
        pick = rng.integers(0, len(mu), simulations)
        source = np.sort(mu) if ranked else mu
        y = measurement_draw(source[pick], sigma, None, None, None, share, wide, rng=rng)
        log_lik = observation_logp(robust)(y[:, None], mu[None, :], sigma, max(share, 1e-12), wide)
        return y, np.asarray(log_lik), rng.bit_generator.state

    key = Kept.key(mu, sigma, share, wide, robust, simulations, state, ranked)
    y, log_lik, after = _simulated.get(key, draw)
    rng.bit_generator.state = after  # as if drawn here
    return y, log_lik


def ranked_simulation(idata: xr.DataTree) -> bool:
    """Whether `simulate` draws this fit's values by rank (every fit since refits had log
    weights); a fit saved before, with refits, drew them by index, and its saved refits are of
    those values (what voi.evsi checks), so its summary is computed as it was."""
    if "voi_refits" not in idata.children:
        return True
    nodes = idata["voi_refits"].children.values()
    return not nodes or any(LOG_WEIGHT in node.data_vars for node in nodes)


def candidate_rng(seed: int, index: int) -> np.random.Generator:
    """The random numbers of the `index`-th candidate (model/voi_refit.py draws the same)."""
    return np.random.default_rng([seed, index])


def evsi(
    candidate: Candidate,
    post: xr.Dataset,
    values: dict[str, np.ndarray],
    window: Window,
    export_start,
    measurement: dict,
    unit: str,
    simulations: int = SIMULATIONS,
    rng=None,
    refits: xr.Dataset | None = None,
    attrs: dict | None = None,
    ranked: bool = True,
) -> dict:
    """Preposterior simulation of one candidate: see the module's docstring. `refits`: the
    fit's refits of some of its simulations whose Pareto k is above PARETO_K_MAX
    (model/voi_refit.py, coordinate `simulation`), which replace their reweighted values."""
    y, log_lik = simulate(
        candidate, post, window, export_start, measurement, unit, simulations, rng, ranked
    )
    w, k = psis_weights(log_lik)
    out = {"pareto_k": k, "flagged": int((k > PARETO_K_MAX).sum()), "refitted": 0}
    flagged = np.flatnonzero(k > PARETO_K_MAX)
    refit_values = None
    if refits is not None and refits.sizes.get("simulation", 0):
        sims = refits["simulation"].to_numpy()
        if (
            not np.allclose(refits["measured"].to_numpy(), y[sims])
            or not np.isin(sims, flagged).all()
        ):
            raise RuntimeError(
                f"the saved refits of candidate {candidate.name} are not of this simulation: "
                "they were made by another version of model/voi.py"
            )
        out["refitted"] = len(sims)
        each = [refits.isel(simulation=j) for j in range(len(sims))]
        refit_values = [targets(r, attrs or {}) for r in each]
        refit_weights = [refit_weight(r) for r in each]
        refit_shape = (refits.sizes["chain"], refits.sizes["draw"])
    # The simulations' spread is not the only Monte Carlo error: every simulated posterior is
    # the same saved draws reweighted, so the draws' own error in the sd of the log (ArviZ's
    # autocorrelation-aware MCSE) carries over to the expected sd, in proportion.
    shape = (post.sizes["chain"], post.sizes["draw"])
    for name, y_draws in values.items():
        stats = posterior_stats(y_draws, w)
        refitted = None
        if refit_values is not None:
            per_refit = [
                posterior_stats(v[name], w[None, :])
                for v, w in zip(refit_values, refit_weights, strict=True)
            ]
            refitted = {s: np.concatenate([p[s] for p in per_refit]) for s in stats}
            # each refit's own Monte Carlo error in its variance of the log (`refit_mc_var_log`):
            # combine adds it where the refits' spread cannot show it (a single refit), and
            # the summary records it
            refitted["mc_var_log"] = np.array(
                [
                    refit_mc_var_log(v[name], w, refit_shape)
                    for v, w in zip(refit_values, refit_weights, strict=True)
                ]
            )
        r = combine(stats, refitted, flagged)
        if refitted is not None:  # the refits' own error beside their spread, for the record
            r["refit_mcse_var_log"] = float(np.sqrt(np.mean(refitted["mc_var_log"])))
            r["refit_spread_var_log"] = (
                float(np.std(refitted["var_log"], ddof=1)) if len(refit_values) > 1 else None
            )
        logy = xr.DataArray(_log(y_draws).reshape(shape), dims=("chain", "draw"))
        relative = float(azs.mcse(logy, method="sd")) / float(np.std(logy))
        r["mcse_sd_log_simulations"] = r["mcse_sd_log"]
        r["mcse_sd_log"] = float(np.hypot(r["mcse_sd_log"], r["expected_sd_log"] * relative))
        if len(flagged):  # how far refits of the flagged values could move it (`bounded`)
            r["bound_sd_log"] = flagged_bound(stats["var_log"], flagged, float(np.var(logy)))
            v = stats["var_log"][flagged]  # and their spread (`refits_needed`)
            r["flagged_spread"] = float(np.std(v, ddof=1)) if len(v) > 1 else float(v[0])
        out[name] = r
    out["bounded"] = bool(not out["refitted"] and bounded(out, list(values)))
    out["measured"], out["flagged_simulations"] = y, flagged  # for model/voi_refit.py
    return out


def refit_weight(refit: xr.Dataset) -> np.ndarray:
    """One refit's normalised weights over its draws, flat as `targets` flattens them: equal
    for a sampled refit, PSIS's for the previous run's refit reweighted to this run's target
    (model/voi_refit.py `reweighted_previous`)."""
    if LOG_WEIGHT not in refit:  # saved before refits had weights: sampled
        n = refit.sizes["chain"] * refit.sizes["draw"]
        return np.full(n, 1.0 / n)
    w = np.exp(_flat(refit[LOG_WEIGHT]))
    return w / w.sum()


def refit_mc_var_log(y: np.ndarray, w: np.ndarray, shape: tuple[int, int]) -> float:
    """The Monte Carlo variance of one refit's variance of log y (`w`: its weights over the
    draws, flat). A sampled refit (equal weights): ArviZ's autocorrelation-aware MCSE
    (`refit_mcse_var_log`), squared. A previous refit reweighted to this target: self-
    normalised importance sampling's own, sum w^2 (h - sum w h)^2 with h the squared
    deviations of log y, times the draws' autocorrelation (their number over ArviZ's ESS of
    h). Scaling the unweighted error by 1 / the efficiency would understate it: the weights
    are tied to the very quantity estimated (2-3x too small for a target 30% wider than the
    draws', in a review's simulation, benchmarks/README.md nineteenth session)."""
    if np.ptp(w) == 0.0:
        return refit_mcse_var_log(y, shape) ** 2
    logy = _log(y)
    h = (logy - w @ logy) ** 2
    ess = float(azs.ess(xr.DataArray(h.reshape(shape), dims=("chain", "draw")), method="mean"))
    return float(np.sum(w**2 * (h - w @ h) ** 2) * h.size / max(ess, 1.0))


def refit_mcse_var_log(y: np.ndarray, shape: tuple[int, int]) -> float:
    """The Monte Carlo standard error of a refit's variance of log y (its draws, flat, of
    `shape` chains x draws): 2 sd x the MCSE of the sd (the delta method)."""
    logy = xr.DataArray(_log(y).reshape(shape), dims=("chain", "draw"))
    return float(2 * np.std(logy) * float(azs.mcse(logy, method="sd")))


def flagged_bound(var_log: np.ndarray, flagged: np.ndarray, current_var: float) -> list[float]:
    """The lowest and highest expected sd of the log that refits of the `flagged` simulations
    could give (a stratified mean, as `combine`): the unflagged values as reweighted and the
    flagged ones' posterior variance at 0 (lowest), or at what the law of total variance
    allows (highest: the expected posterior variance is at most `current_var`, the current
    one; when the reweighted estimate is already above it by Monte Carlo error, that)."""
    keep = np.ones(len(var_log), bool)
    keep[np.asarray(flagged, int)] = False
    unflagged = float(var_log[keep].sum() / len(var_log))  # (1 - share) x their mean
    return [float(np.sqrt(unflagged)), float(np.sqrt(max(current_var, var_log.mean())))]


def bound_move(r: dict) -> float:
    """How far refits could move this expected sd of the log, at most (`flagged_bound`)."""
    lo, hi = r["bound_sd_log"]
    return float(max(r["expected_sd_log"] - lo, hi - r["expected_sd_log"], 0.0))


def bounded(result: dict, names: list[str]) -> bool:
    """The refit rule: a candidate's flagged values need no refit when, for every quantity
    valued (`names`), the most their refits could move its expected sd of the log is within
    that figure's Monte Carlo error; then the bound stands behind the figure instead."""
    return result["flagged"] > 0 and all(
        bound_move(result[n]) <= result[n]["mcse_sd_log"] for n in names
    )


def refits_needed(result: dict, names: list[str], share: float | None = None) -> int:
    """How many of a candidate's flagged values to refit: 0 when `bounded`; else the fewest
    whose stratum mean (`combine`) adds at most `share` of the figure's Monte Carlo error for
    every quantity valued: its standard error is the flagged share of the simulations times
    the flagged values' spread (their reweighted posterior variances stand in for the refits')
    over the square root of the number refitted. At least one, at most all of them."""
    share = REFIT_ERROR_SHARE if share is None else share
    m = result["flagged"]
    if m == 0 or bounded(result, names):
        return 0
    n_sim = len(result["pareto_k"])
    need = 1
    for name in names:
        r = result[name]
        se_var = 2 * r["expected_sd_log"] * r["mcse_sd_log"]  # the MCSE on the variance scale
        spread = (m / n_sim) * r["flagged_spread"]
        if se_var > 0 and spread > 0:
            need = max(need, int(np.ceil((spread / (share * se_var)) ** 2)))
    return int(min(need, m))


# ------------------------------------------------------------------------ the whole table


def what_to_measure_next(idata: xr.DataTree, simulations: int = SIMULATIONS) -> dict:
    """`what_to_measure_next` (each candidate x each valued quantity, EVSI) and
    `value_of_learning` (each input group x each quantity, EVPPI) for summary.json."""
    from model.summary import interval_summary, window_of

    attrs = idata.attrs
    post = idata["posterior"].to_dataset()
    window = window_of(idata)
    export_start = pd.Timestamp(attrs["export_start"])
    measurement = json.loads(attrs["measurement"])
    unit = attrs["unit"]
    seed = int(attrs.get("seed", 0)) + SEED_OFFSET
    values = targets(post, attrs)
    current = {}
    for name, y in values.items():
        ci = interval_summary(y, unit, name)["intervals"][str(INTERVAL)]
        current[name] = {
            "median": float(np.median(y)),
            "interval": [float(ci[0]), float(ci[1])],
            "width": float(ci[1] - ci[0]),
            "sd": float(np.std(y)),
            "sd_log": float(np.std(_log(y))),
        }
    rows = []
    for i, candidate in enumerate(all_candidates(idata, window)):
        node = saved_refits(idata, i, candidate, simulations)
        result = evsi(
            candidate,
            post,
            values,
            window,
            export_start,
            measurement,
            unit,
            simulations,
            candidate_rng(seed, i),
            refits=node,
            attrs=attrs,
            ranked=ranked_simulation(idata),
        )
        k90 = k_quantile(result["pareto_k"])
        flagged, refitted, is_bounded = result["flagged"], result["refitted"], result["bounded"]
        for name in values:
            r = result[name]
            if refitted:
                method = f"reweighted+refit ({refitted} of {flagged})"
            else:
                method = f"reweighted, {flagged} bounded" if is_bounded else "reweighted"
            rows.append(
                {
                    "candidate": candidate.name,
                    "description": candidate.words(),
                    "kind": candidate.kind,
                    "quantity": name,
                    "expected_sd": r["expected_sd"],
                    "expected_sd_log": r["expected_sd_log"],
                    "mcse_sd_log": r["mcse_sd_log"],
                    "expected_interval_80_width": r["expected_interval_80_width"],
                    "mcse_interval_80_width": r["mcse_interval_80_width"],
                    "current_sd": current[name]["sd"],
                    "current_sd_log": current[name]["sd_log"],
                    "current_interval_80": current[name]["interval"],
                    "current_interval_80_width": current[name]["width"],
                    "expected_interval_80_log_width": r["expected_interval_80_log_width"],
                    "typical_interval_80": typical_interval(
                        current[name], r["expected_interval_80_log_width"]
                    ),
                    "narrowing": 1 - r["expected_sd_log"] / current[name]["sd_log"],
                    "method": method,
                    "method_detail": f"preposterior simulation ({simulations} values), PSIS "
                    "reweighting"
                    + (
                        f"; {refitted} of the {flagged} values with Pareto k > {PARETO_K_MAX} "
                        "refitted through the model with the row added"
                        if refitted
                        else ""
                    )
                    + (
                        f"; the {flagged} values with Pareto k > {PARETO_K_MAX} bounded, not "
                        "refitted: whatever their posterior variance (0 to what the law of "
                        "total variance allows), refits could move each figure of this "
                        "candidate by less than its Monte Carlo error"
                        if is_bounded
                        else ""
                    ),
                    "simulations": simulations,
                    "flagged": flagged,  # simulated values whose Pareto k is above PARETO_K_MAX
                    "refitted": refitted,
                    # the flagged values' bound stands behind the figure (voi.bounded)
                    "bounded": is_bounded,
                    # the expected sd of the log's range over the flagged values' posterior
                    # variances (flagged_bound), and the most refits could move it
                    "bound_sd_log": r.get("bound_sd_log"),
                    "bound_move": bound_move(r) if "bound_sd_log" in r else None,
                    "pareto_k": k90,
                    # approximate: the weights cannot be trusted and no refit or bound stands in
                    "pareto_k_flag": bool(k90 > PARETO_K_MAX and not refitted and not is_bounded),
                }
            )
    learning = []
    groups = input_groups(post, list(values))
    shape = (post.sizes["chain"], post.sizes["draw"])  # the draws are flat, chain after chain
    for name, y in values.items():
        logy = _log(y)
        for g, x in groups.items():
            r = evppi_one(logy, x, shape)
            learning.append(
                {
                    "input": g,
                    "label": group_label(g),
                    "quantity": name,
                    "expected_sd": r["expected_sd"],
                    "expected_sd_log": r["expected_sd_scale"],
                    "mcse_sd_log": r["mcse_sd_scale"],
                    "expected_interval_80_width": r["expected_interval_80_width"],
                    "current_sd_log": current[name]["sd_log"],
                    "current_interval_80_width": current[name]["width"],
                    "narrowing": 1 - r["expected_sd_scale"] / current[name]["sd_log"],
                    "method": "EVPPI: additive P-spline regression (GCV) on the draws, "
                    "MCSE of the squared residuals' mean (ArviZ, autocorrelation-aware)",
                }
            )
    return {
        "what_to_measure_next": rows,
        "value_of_learning": learning,
        "voi_target": {
            "quantity": target(post, attrs),
            "named": json.loads(attrs.get("voi", "{}")).get("target"),
        },
        "voi_refits": json.loads(attrs.get("voi_refits", "{}")),  # model/voi_refit.py
    }


def saved_refits(
    idata: xr.DataTree, index: int, candidate: Candidate, simulations: int
) -> xr.Dataset | None:
    """The fit's refits of the `index`-th candidate (model/voi_refit.py), if it made any for
    this number of simulations."""
    path = f"voi_refits/candidate_{index}"
    if "voi_refits" not in idata.children or f"candidate_{index}" not in idata["voi_refits"]:
        return None
    node = idata[path].to_dataset()
    if node.attrs.get("candidate") != candidate.name:
        raise RuntimeError(f"{path} holds the refits of {node.attrs.get('candidate')!r}")
    return node if int(node.attrs["simulations"]) == simulations else None


def typical_interval(current: dict, log_width: float) -> list[float]:
    """The current 80% interval shrunk about the median, on the log scale, to the expected
    log width: the interval the analyst would typically see (its position depends on the
    value observed; its width in units then depends on where it lands, which is why the
    ranking uses the expected sd of the log, not the width in units)."""
    lo, hi = current["interval"]
    med = current["median"]
    r = log_width / np.log(hi / lo)
    return [float(med * (lo / med) ** r), float(med * (hi / med) ** r)]


def all_candidates(idata: xr.DataTree, window: Window) -> list[Candidate]:
    """The default candidates of the case's window and ledger, then the case's own
    (case.toml [candidates], saved with the fit)."""
    ledger = idata["evidence"].to_dataset()
    kinds = ledger["kind"].to_numpy().astype(str)
    keep = (ledger["superseded_by"].to_numpy().astype(str) == "") & (
        ledger["counted_as"].to_numpy().astype(str) == ""
    )
    rows = pd.DataFrame(
        {
            "kind": kinds[keep],
            "period_start": pd.to_datetime(
                ledger["period_start"].to_numpy().astype(str)[keep], errors="coerce"
            ),
            "period_end": pd.to_datetime(
                ledger["period_end"].to_numpy().astype(str)[keep], errors="coerce"
            ),
        }
    )
    settings = {"candidates": json.loads(idata.attrs.get("candidates", "{}"))}
    return [*defaults(window, rows), *declared(settings)]


# ------------------------------------------------------------------------ the report


def ranked_quantity(summary: dict) -> str:
    """What the ranking is by: the case's target (`voi_target`), else the full rate after."""
    return summary.get("voi_target", {}).get("quantity") or DEFAULT_TARGET


def ranking(summary: dict, quantity: str | None = None) -> list[dict]:
    """The candidates' rows for `quantity` (default: the case's target), the most narrowing
    first."""
    quantity = quantity or ranked_quantity(summary)
    rows = [r for r in summary.get("what_to_measure_next", []) if r["quantity"] == quantity]
    return sorted(rows, key=lambda r: r["expected_sd_log"])


def _fmt(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 10 else f"{x:,.0f}"


def _num(x: float | None, spec: str, undefined: str = "undefined") -> str:
    """`x` formatted, or `undefined` when it is not a finite number: summary.json holds such
    numbers as null (model/strict_json.py), the fit as NaN or infinity."""
    return format(x, spec) if x is not None and math.isfinite(x) else undefined


def _k(x: float | None) -> str:
    """A Pareto k; an infinite one (the tail fit failed: a few draws carry all the weight) is
    null in summary.json."""
    return _num(x, ".2f", "not estimable")


def sentence(row: dict, label: str) -> str:
    """One plain sentence per candidate, for the report and `capest next`."""
    lo, hi = row["current_interval_80"]
    new_lo, new_hi = row["typical_interval_80"]
    flag = (
        f" (approximate: Pareto k {_k(row['pareto_k'])} > {PARETO_K_MAX}, few draws carry it)"
        if row["pareto_k_flag"]
        else ""
    )
    if row.get("refitted"):
        flag = (
            f" ({row['refitted']} of the {row['flagged']} simulated values whose reweighting "
            f"could not be trusted refitted)"
        )
    elif row.get("bounded"):
        flag = (
            f" ({row['flagged']} simulated values whose reweighting could not be trusted "
            f"bounded, not refitted: refits could move the {row['expected_sd_log']:.2f} by "
            f"{row['bound_move']:.3f} at most, within its Monte Carlo error "
            f"{row['mcse_sd_log']:.3f})"
        )
    return (
        f"{row['description'][0].upper()}{row['description'][1:]} would narrow the 80% "
        f"interval of the {label} from {_fmt(lo)}–{_fmt(hi)} to about {_fmt(new_lo)}–"
        f"{_fmt(new_hi)} (sd of its log {row['current_sd_log']:.2f} to "
        f"{row['expected_sd_log']:.2f}, {row['narrowing']:.0%} less){flag}."
    )


def refits_sentence(summary: dict) -> str:
    """What the fit refitted for this section, and its cap (model/voi_refit.py)."""
    info = summary.get("voi_refits") or {}
    if not info:
        return ""
    ranked = ranking(summary)
    flagged = sum(r.get("flagged", 0) for r in ranked)
    n_sim = info.get("simulations", SIMULATIONS)
    text = (
        f"Of the {len(ranked) * n_sim:,} simulated values ({len(ranked)} candidates x {n_sim}), "
        f"{flagged} had importance weights that cannot be trusted (Pareto k above "
        f"{PARETO_K_MAX}); {info.get('refits', 0)} of them were refitted through the model with "
        f"the row added (or their refits taken from the previous run, below; "
        f"{info.get('chains')} chains x {info.get('draws')} draws, the model "
        f"compiled once), only as many of a candidate's as keep the refits' own error within "
        f"{REFIT_ERROR_SHARE:g} of the rest of its Monte Carlo error, and at most "
        f"{info.get('cap')} a report, shared out among the "
        "candidates in turn; a candidate's other flagged values are represented by its "
        "refitted ones (a stratified mean, the refitted values picked at random)."
    )
    if info.get("reused"):
        text += (
            f" {info['reused']} of the refits are those of the previous run "
            f"({info.get('reused_from')}): the same simulated values of the same targets (this "
            "run's log density at their draws is the saved one up to a constant), so they were "
            "not sampled again."
        )
    if info.get("reweighted"):
        text += (
            f" {info['reweighted']} are refits saved by the previous run "
            f"({info.get('reused_from')}) of values next to this run's, reweighted to this "
            "run's targets (Pareto k within PSIS's threshold for their draws, "
            f"importance-sampling efficiency at least {info.get('min_efficiency', 0.5):g}, each "
            "saved refit standing for one value; their Monte Carlo error is importance "
            "sampling's own): a rerun simulates each value at the same quantile of its "
            "predictions, so a changed ledger moves it little."
        )
    sampled = info.get("diagnostics")  # model/voi_refit.py `diagnostics`
    if sampled and info.get("refits"):
        from model.diagnostics import MAX_RHAT, MIN_ESS_BULK

        text += (
            f" The refits are short (a refit's one number is a posterior variance): R-hat up "
            f"to {sampled['max_rhat']:.3f}, bulk ESS down to {sampled['min_ess_bulk']}, "
            f"{sampled['divergences']} divergences; {sampled['failing_fit_rules']} of the "
            f"{info['refits']} miss the rules the report's fits meet (R-hat at most "
            f"{MAX_RHAT}, ESS at least {MIN_ESS_BULK}, no divergence), so each one's Monte Carlo "
            "error is carried into its candidate's MCSE (the refits' spread; a single refit's "
            "own MCSE)."
        )
    bounded = [r["description"] for r in ranked if r.get("bounded")]
    if bounded:
        text += (
            " Refits are made only where they can matter: the expected posterior variance is "
            "at most the current one (the law of total variance), so the flagged values' share "
            "bounds what refits could change; for "
            + "; ".join(bounded)
            + " that bound is within the Monte Carlo error of every figure, so their flagged "
            "values were bounded, not refitted."
        )
    if info.get("skipped"):
        text += f" No refit was made: {info['skipped']}."
    return text


def report_blocks(summary: dict) -> list[tuple]:
    """The report's "What to measure next" section (model/report.py adds it)."""
    if not summary.get("what_to_measure_next"):
        return []
    unit = summary["unit"]
    quantity = ranked_quantity(summary)
    ranked = ranking(summary)
    label = variables.label(quantity)
    named = summary.get("voi_target", {}).get("named")
    why = "the target case.toml names" if named else "the default target"
    quantities = list(dict.fromkeys(r["quantity"] for r in summary["what_to_measure_next"]))
    table = []
    for r in ranked:
        cells = [r["description"]]
        for q in quantities:
            row = next(
                x
                for x in summary["what_to_measure_next"]
                if x["candidate"] == r["candidate"] and x["quantity"] == q
            )
            cells.append(
                f"{row['expected_sd_log']:.3f} (±{_num(row['mcse_sd_log'], '.3f')}), "
                f"{row['narrowing']:.0%} less; 80% width {_fmt(row['expected_interval_80_width'])}"
            )
        k = _k(r["pareto_k"]) + (" (flagged)" if r["pareto_k_flag"] else "")
        if r.get("bounded"):
            k += f"; {r['method']} (refits could move it ±{r['bound_move']:.3f} at most)"
        elif r.get("refitted"):
            k += f"; {r['method']}"
        cells.append(k)
        table.append(cells)
    learning = [x for x in summary.get("value_of_learning", []) if x["quantity"] == quantity]
    learning.sort(key=lambda x: x["expected_sd_log"])
    blocks = [
        ("h2", "What to measure next"),
        (
            "p",
            f"How much each possible new piece of evidence would narrow the estimate of the "
            f"{label} ({why}), by "
            "preposterior simulation from this fit: its value is drawn from what the model "
            "predicts, the posterior is reweighted by it (Pareto-smoothed importance sampling, "
            "refitted where the weights cannot be trusted) "
            "and the 80% interval recomputed, averaged over the values it could take. Values "
            "are for this model and its priors (README, What to measure next). Ranked by the "
            f"expected posterior sd of the log {label} (a width in {_unit(quantity, unit)} also "
            "depends on where the measurement moves the estimate: up, intervals widen in units).",
        ),
        ("list", [sentence(r, label) for r in ranked]),
        ("p", refits_sentence(summary)),
        (
            "table",
            [
                "candidate measurement",
                *[
                    f"{variables.label(q)}: expected sd of log; expected 80% width "
                    f"({_unit(q, unit)}, now {_fmt(_current_width(summary, q))})"
                    for q in quantities
                ],
                "Pareto k (90th pct.)",
            ],
            table,
        ),
        (
            "p",
            f"If an input were known exactly (expected value of partial perfect information): "
            f"the expected posterior sd of log {label} (now "
            f"{learning[0]['current_sd_log']:.3f}) and its 80% width, from a regression of the "
            "quantity on the input across the draws (no refit)."
            if learning
            else "",
        ),
        (
            "table",
            [
                "input known exactly",
                "expected sd of log (±MCSE)",
                "sd less by",
                "expected 80% width",
            ],
            [
                [
                    x["label"],
                    f"{x['expected_sd_log']:.3f} (±{_num(x['mcse_sd_log'], '.3f')})",
                    f"{x['narrowing']:.0%}",
                    _fmt(x["expected_interval_80_width"]),
                ]
                for x in learning
            ],
        ),
    ]
    return [b for b in blocks if b != ("p", "")]


def _unit(name: str, unit: str) -> str:
    if name in variables.REGISTRY:
        return variables.unit_of(name, unit)
    return unit  # production_<year>


def _current_width(summary: dict, name: str) -> float:
    return next(
        r["current_interval_80_width"]
        for r in summary["what_to_measure_next"]
        if r["quantity"] == name
    )


def print_ranking(summary: dict) -> str:
    """`capest next`: the candidates ranked for the case's target (default the full rate),
    one line each, then what knowing each input exactly would do; the same numbers as the
    report's section."""
    quantity = ranked_quantity(summary)
    label = variables.label(quantity)
    lines = [
        f"{summary['case_title']} (run {summary['created']}): what to measure next, ranked by "
        f"the expected sd of log {label}",
    ]
    for i, row in enumerate(ranking(summary), 1):
        lines.append(f"{i}. {sentence(row, label)}")
    refits = refits_sentence(summary)
    if refits:
        lines.append(refits)
    learning = [x for x in summary.get("value_of_learning", []) if x["quantity"] == quantity]
    if learning:
        lines.append(
            f"If an input were known exactly (sd of log {label} now "
            f"{learning[0]['current_sd_log']:.3f}):"
        )
        for x in sorted(learning, key=lambda x: x["expected_sd_log"]):
            lines.append(
                f"  {x['label']:<60} {x['expected_sd_log']:.3f} "
                f"(±{_num(x['mcse_sd_log'], '.3f')}), {x['narrowing']:.0%} less"
            )
    return "\n".join(lines)
