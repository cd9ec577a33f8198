"""Moment matching (model/moment_match.py): the checks' targets that plain PSIS reweighting
cannot reach (k > 0.7), reached by moving the main fit's draws, or refitted when even that
cannot be trusted."""

from __future__ import annotations

import numpy as np
import pytest

from model.moment_match import match

SHAPE = (4, 1000)


class Regression:
    """A line with known noise (sd 1) and a N(0, 10^2) prior on intercept and slope: the
    posterior with and without any point is normal, in closed form. Twenty points on [0, 1]
    and one far out (x = 4) and off the line: leaving it out is what PSIS-LOO cannot do."""

    def __init__(self, seed: int = 1):
        rng = np.random.default_rng(seed)
        x = np.r_[rng.uniform(0, 1, 20), 4.0]
        self.X = np.c_[np.ones(21), x]
        self.y = np.r_[1 + 2 * x[:20] + rng.normal(size=20), 1 + 2 * 4.0 + 8.0]
        self.mean, cov = self.posterior(self.X, self.y)
        self.draws = rng.multivariate_normal(self.mean, cov, size=SHAPE[0] * SHAPE[1])

    @staticmethod
    def posterior(X, y):
        cov = np.linalg.inv(np.eye(2) / 100 + X.T @ X)
        return cov @ X.T @ y, cov

    def log_posterior(self, u):
        r = self.y[:, None] - self.X @ u.T
        return -0.5 * (r**2).sum(0) - 0.5 * (u**2).sum(1) / 100

    def log_without_last(self, u):
        return self.log_posterior(u) + 0.5 * (self.y[-1] - u @ self.X[-1]) ** 2


def test_leaving_out_an_influential_point_matches_its_closed_form():
    m = Regression()
    out = match(m.log_without_last, m.log_posterior, m.draws, SHAPE)
    assert out.k_before > 0.7  # PSIS-LOO alone cannot leave the point out
    assert out.weights.pareto_k <= 0.7 and out.steps >= 1
    assert out.k_posterior <= 0.7
    w = np.exp(out.weights.log_weight.to_numpy().ravel())
    mean = w @ out.upars
    sd = np.sqrt(w @ (out.upars - mean) ** 2)
    exact, cov = m.posterior(m.X[:-1], m.y[:-1])
    # independent draws: MCSE of a weighted mean is sd / sqrt(n * efficiency)
    mcse = np.sqrt(np.diag(cov) / (out.upars.shape[0] * out.weights.efficiency))
    assert np.all(np.abs(mean - exact) <= 4 * mcse), (mean, exact, mcse)
    np.testing.assert_allclose(sd, np.sqrt(np.diag(cov)), rtol=0.15)
    # the point left out moves the slope by several of its sds: the test can tell
    assert abs(m.mean[1] - exact[1]) > 8 * mcse[1]


def _two_modes(m: Regression, sds: float):
    """A target with two narrow modes `sds` posterior sds either side of the posterior mean."""
    sd = np.sqrt(np.diag(m.posterior(m.X, m.y)[1]))

    def log_target(u):
        far = [((u - m.mean - s * sds * sd) / sd * 3) ** 2 for s in (1, -1)]
        return np.logaddexp(-0.5 * far[0].sum(1), -0.5 * far[1].sum(1))

    return log_target


def test_a_target_no_affine_move_reaches_keeps_a_large_k():
    """Two narrow modes far apart: moving and stretching one normal-like cloud of draws
    cannot cover both, so k stays above 0.7 and fit() refits."""
    m = Regression()
    out = match(_two_modes(m, 20), m.log_posterior, m.draws, SHAPE)
    assert out.k_before > 0.7 and out.weights.pareto_k > 0.7


def test_moved_draws_that_leave_the_posterior_behind_say_so():
    """Modes 5 sds out: matching lowers k by stretching the draws far past the posterior,
    and the weights back to the posterior say so (their k above 0.7, recorded)."""
    m = Regression()
    out = match(_two_modes(m, 5), m.log_posterior, m.draws, SHAPE)
    assert out.k_before > 0.7 and out.steps >= 1 and out.k_posterior > 0.7


def test_the_same_target_needs_no_step():
    m = Regression()
    out = match(m.log_posterior, m.log_posterior, m.draws, SHAPE)
    assert out.steps == 0 and out.weights.pareto_k == 0.0
    assert out.upars is m.draws


def test_the_compiled_density_leaves_a_row_out_exactly(small_fit):
    """The target of a row left out is the posterior over that row's likelihood: the compiled
    log density with the row's weight at 0 less the main one is minus the row's saved
    pointwise log-likelihood, at every draw; and the draws it computes at the posterior's
    own (unconstrained) points are the posterior's."""
    from model import load_case
    from model.build import build_model
    from model.fit import REFIT_VARS
    from model.moment_match import Density
    from model.priors import resolve_priors
    from tests.conftest import CASE

    case = load_case(CASE)
    model = build_model(case, resolve_priors(case))
    names = [*REFIT_VARS, "predicted", "measurement_sd"]
    density = Density(model, names)
    post = small_fit["posterior"].to_dataset()
    upars = density.unconstrained(post)
    ll = small_fit["log_likelihood"]["evidence"].transpose("chain", "draw", "obs").to_numpy()
    ids = list(post["obs"].to_numpy())
    for j in (0, len(ids) - 1):
        weight = np.ones(len(ids))
        weight[j] = 0.0
        diff = density.logp(upars, {"row_weight": weight}) - density.logp(upars)
        np.testing.assert_allclose(diff, -ll[..., j].ravel(), rtol=1e-6, atol=1e-6)
    shape = (post.sizes["chain"], post.sizes["draw"])
    again = density.draws(upars, shape, None, post)
    for name in names:
        want = post[name].transpose("chain", "draw", ...).to_numpy()
        np.testing.assert_allclose(again[name].to_numpy(), want, rtol=1e-6, err_msg=name)
    assert again["predicted"].dims == ("chain", "draw", "obs")


def test_the_density_loaded_from_the_compile_cache_is_the_compiled_one(
    small_fit, tmp_path, monkeypatch
):
    """A second estimate loads the density's three rewritten graphs (model/compiled.py)
    instead of rewriting them, with the variables fit.py asks of it (the rows' predictions
    among them: a Blockwise loop's closure made that entry unloadable once): log densities,
    draws and unconstrained points are the freshly compiled functions', bit for bit."""
    from pytensor.compile.maker import FunctionMaker

    from model import compiled, load_case
    from model.build import build_model
    from model.fit import DENSITY_VARS, REFIT_VARS
    from model.moment_match import Density
    from model.priors import resolve_priors
    from tests.conftest import CASE

    monkeypatch.setattr(compiled, "_folder", lambda: tmp_path)
    made = []  # functions PyTensor compiled (rewrote), per build
    original = FunctionMaker.__init__

    def counting(self, *args, **kwargs):
        made[-1] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(FunctionMaker, "__init__", counting)
    case = load_case(CASE)
    post = small_fit["posterior"].to_dataset()
    shape = (post.sizes["chain"], post.sizes["draw"])
    out = []
    for _ in range(2):  # two builds of the model, as two processes would
        made.append(0)
        density = Density(build_model(case, resolve_priors(case)), DENSITY_VARS)
        upars = density.unconstrained(post)
        weight = np.ones(post.sizes["obs"])
        weight[0] = 0.0
        logp = density.logp(upars, {"row_weight": weight})
        out.append((upars, logp, density.draws(upars, shape, None, post)))
    # the second build loads its three functions (PyMC's initial point, which gives the
    # shapes, is compiled by PyMC in both)
    assert made[0] - made[1] == 3
    (u0, lp0, d0), (u1, lp1, d1) = out
    np.testing.assert_array_equal(u0, u1)
    np.testing.assert_array_equal(lp0, lp1)
    for name in REFIT_VARS:
        np.testing.assert_array_equal(d0[name].to_numpy(), d1[name].to_numpy())


@pytest.mark.parametrize("seed", [1, 2])
def test_a_step_is_kept_only_when_it_improves_the_weights(seed):
    m = Regression(seed)
    out = match(m.log_without_last, m.log_posterior, m.draws, SHAPE, max_iterations=1)
    assert out.steps <= 1 and out.weights.pareto_k <= out.k_before


@pytest.mark.parametrize(
    "method, words",
    [
        ("moment matched", "left out by moment matching"),
        ("reused", "the previous run's refit without it, reweighted"),  # model/reuse.py
    ],
)
def test_the_checks_read_a_moment_matched_node_with_its_weights(small_fit, method, words):
    """What the user sees: a row left out by moment matching (or by the previous run's refit,
    reweighted) enters the influence check with its weighted median (not the plain median of
    its draws), named by its method, and the diagnostics hold it to the reweighted result's
    rules under that method."""
    import xarray as xr

    from model.checks import _weighted_median, influence_check
    from model.diagnostics import diagnose
    from model.fit import REFIT_VARS
    from model.reweight import psis, reweighted

    tree = small_fit.copy()
    post = tree["posterior"].to_dataset()
    row = str(post["obs"].to_numpy()[0])
    tree["loo"] = (
        tree["loo"]
        .to_dataset()
        .assign(pareto_k=tree["loo"]["pareto_k"].copy(data=np.r_[0.9, tree["loo"]["pareto_k"][1:]]))
    )
    # weights that favour high rates: the weighted median differs from the plain one
    log_ratio = xr.DataArray(2 * np.log(post["rate_after"]).to_numpy(), dims=("chain", "draw"))
    weights = psis(log_ratio)
    node = reweighted(post, tree["sample_stats"]["diverging"], REFIT_VARS, weights)
    node.attrs["method"] = method
    tree[f"influence_refits/{row}"] = node
    result = influence_check(tree)
    assert result["method"][row] == method and result["unresolved"] == []
    x = post["rate_after"].stack(s=("chain", "draw")).to_numpy()
    w = np.exp(weights.log_weight.stack(s=("chain", "draw")).to_numpy())
    want = (_weighted_median(x, w) - np.median(x)) / x.std()
    assert result["shifts"]["rate_after"][row] == pytest.approx(want)
    assert abs(want) > 0.1  # the plain median would give 0
    assert f"Pareto k > 0.7 for 1 row(s), each {words}" in result["finding"]
    fit = next(f for f in diagnose(tree)["fits"] if f["fit"] == f"without row: {row}")
    assert fit["method"] == method and "pareto_k" in fit


def test_draws_on_the_serial_ridge_map_to_the_unconstrained_space_and_back(tmp_path):
    """rate_before's coordinate on the serial ridge is log(rate_before) less a shift that the
    other variables set (serials.ShiftedLog): mapping a draw to the unconstrained space must
    read those variables at the same draw (not draw them afresh from their priors), so that
    the model maps it back to itself. Prior draws of a SYNTHETIC serial case."""
    import pymc as pm

    from model import load_case
    from model.build import build_model
    from model.moment_match import Density
    from model.priors import resolve_priors
    from tests.test_serials import serial_only_case

    case = load_case(serial_only_case(tmp_path / "case", [40, 180, 233, 290]))
    model = build_model(case, resolve_priors(case))
    assert "ridge_log" in {t.name for t in model.rvs_to_transforms.values() if t is not None}
    free = [rv.name for rv in model.free_RVs]
    with model:
        prior = pm.sample_prior_predictive(draws=50, var_names=free, random_seed=3)
    draws = prior["prior"].to_dataset()
    density = Density(model, ["rate_before", "use_lag"])
    back = density.draws(density.unconstrained(draws), (1, 50), None, draws)
    for name in ("rate_before", "use_lag"):
        np.testing.assert_allclose(back[name].to_numpy(), draws[name].to_numpy(), rtol=1e-8)


def test_draws_map_through_the_transforms_under_the_bounds_they_were_sampled_with(small_fit):
    """A scenario of the main fit's families can move an interval's bounds (pm.Data, e.g.
    completion's): its refit's draws map to the unconstrained space under its bounds, not
    the main fit's, so that its own density maps them back (model/reuse.py saves them so)."""
    from model import load_case
    from model.build import build_model
    from model.moment_match import Density
    from model.priors import resolve_priors
    from tests.conftest import CASE

    case = load_case(CASE)
    model = build_model(case, resolve_priors(case))
    density = Density(model, ["completion"])
    post = small_fit["posterior"].to_dataset()
    x = post["completion"].to_numpy()
    wider = {"prior__completion__lower": x.min() - 3.0, "prior__completion__upper": x.max() + 5.0}
    shape = (post.sizes["chain"], post.sizes["draw"])
    back = density.draws(density.unconstrained(post, wider), shape, wider, post)
    np.testing.assert_allclose(back["completion"].to_numpy(), x, rtol=1e-8)


def test_nutpie_s_log_density_is_the_batched_one():
    """With nutpie's compiled model the density's log density is nutpie's callback, point
    by point (no second compile of it): the same numbers as the batched graph, under the
    model's data, other data, and rows of another length (a value-of-information refit's)."""
    from model.callbacks import compile_nutpie
    from model.moment_match import Density
    from model.sampler import stored_names
    from tests.test_sampler import Y, expansion_model

    model = expansion_model()
    free = [v.name for v in model.free_RVs]
    nutpie = Density(model, stored_names(model), nutpie=compile_nutpie(model, free))
    batched = Density(model, stored_names(model))
    # enough points for a thread a core; the last with mu so far out that it is not finite
    size = (2048, batched.initial.size)
    upars = batched.initial + np.random.default_rng(1).normal(0, 0.7, size)
    upars[-1, batched.slices[[v.name for v in batched.value_vars].index("mu")]] = 1e200
    for data in (None, {"y": Y[::-1].copy()}, {"y": np.r_[Y, 0.3, 2.5]}):
        want = batched.logp(upars, data)
        assert np.all(np.isfinite(want[:-1])) and not np.isfinite(want[-1])
        np.testing.assert_allclose(nutpie.logp(upars, data), want, rtol=1e-10)
    # the data reach nutpie's callback: other values, another density
    assert not np.allclose(nutpie.logp(upars, {"y": Y + 1.0}), batched.logp(upars))
