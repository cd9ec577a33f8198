"""The sampler compiles a model once: PyMC's NUTS (the fallback when nutpie is missing) as
nutpie does. A refit that changes only pm.Data values, a prior's parameter or a row's weight,
compiles nothing and samples the posterior of the new values."""

import numpy as np
import pymc as pm
import pytest
import xarray as xr
from pytensor.compile.maker import FunctionMaker
from pytensor.compile.mode import get_mode

from model.sampler import Sampler, SamplerSettings, Start

Y = np.array([1.2, 0.4, 2.1, 1.7, 0.9])


def conjugate_model() -> pm.Model:
    """x ~ N(mu, 1), each row y_i ~ N(x, 1) counted `row_weight` times: the posterior of x
    is N((mu + sum w y) / (1 + sum w), 1 / (1 + sum w)). mu is the prior's parameter as a
    pm.Data (as build.prior's are), so freezing the data a free variable depends on, as
    PyMC's freeze_model does, would turn it into a constant."""
    with pm.Model(coords={"obs": range(len(Y))}) as model:
        mu = pm.Data("prior__x__mu", 0.0)
        weight = pm.Data("row_weight", np.ones(len(Y)), dims="obs")
        x = pm.Normal("x", mu, 1.0)
        pm.Potential("rows", (weight * pm.logp(pm.Normal.dist(x, 1.0), Y)).sum())
    return model


def exact(mu: float, weight: np.ndarray) -> tuple[float, float]:
    precision = 1.0 + weight.sum()
    return (mu + (weight * Y).sum()) / precision, precision**-0.5


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The linker of each PyTensor function compiled: a FunctionMaker that rewrites its graph
    (a copy of a compiled function, `no_fgraph_prep`, only links the rewritten one again)."""
    made: list[str] = []
    init = FunctionMaker.__init__

    def counting(self, inputs, outputs, mode=None, *args, **kwargs):
        if not kwargs.get("no_fgraph_prep"):
            made.append(type(get_mode(mode).linker).__name__)
        init(self, inputs, outputs, mode, *args, **kwargs)

    monkeypatch.setattr(FunctionMaker, "__init__", counting)
    return made


def test_pymc_refits_compile_nothing_and_sample_their_own_data(compiles):
    settings = SamplerSettings(sampler="pymc", draws=500, tune=300, chains=2, cores=2)
    sampler = Sampler(conjugate_model(), settings)
    sampler.sample(None, seed=1)
    assert "NumbaLinker" in compiles  # the first fit compiles
    first = len(compiles)
    fits = {
        (0.0, 1.0): sampler.sample(None, seed=2),
        (5.0, 1.0): sampler.sample(None, seed=3, prior__x__mu=np.array(5.0)),
        (0.0, 0.0): sampler.sample(None, seed=4, row_weight=np.r_[0.0, 1, 1, 1, 1]),
    }
    # three refits compile no log density, gradient or trace (numba): only each chain's start
    # point, a function of constants that pm.sample makes (FAST_COMPILE: Python's VM) from
    # the initial values it is given
    assert compiles[first:] == ["VMLinker"] * 3 * settings.chains
    for (mu, w0), idata in fits.items():
        weight = np.r_[w0, 1, 1, 1, 1]
        mean, sd = exact(mu, weight)
        draws = idata["posterior"]["x"].to_numpy().ravel()
        # 2 x 500 draws of a 1-d normal: the mean's MCSE is about sd / 25
        assert abs(draws.mean() - mean) < 0.2 * sd, (mu, w0)
        assert draws.std() == pytest.approx(sd, rel=0.15), (mu, w0)
        assert float(idata["constant_data"]["prior__x__mu"]) == mu  # the data it was given
    # the prior's mean moved the posterior by 5/6 of a unit: 2 sd, far beyond Monte Carlo error
    shift = fits[5.0, 1.0]["posterior"]["x"].mean() - fits[0.0, 1.0]["posterior"]["x"].mean()
    assert float(shift) == pytest.approx(5 / 6, abs=0.1)


def test_the_pymc_fallback_gives_plain_pm_sample_s_draws():
    """Compiling once changes no number: the same seed gives pm.sample's own draws on the
    model as built (PyMC's NUTS, one chain a core)."""
    settings = SamplerSettings(sampler="pymc", draws=200, tune=200, chains=2, cores=2, seed=7)
    ours = Sampler(conjugate_model(), settings).sample(None, seed=7)
    with conjugate_model():
        plain = pm.sample(
            draws=200,
            tune=200,
            chains=2,
            cores=2,
            random_seed=7,
            nuts_sampler="pymc",
            backend="numba",
            target_accept=settings.target_accept,
            progressbar=False,
        )
    np.testing.assert_allclose(ours["posterior"]["x"], plain["posterior"]["x"], rtol=1e-10)


def fake_fit(draws: np.ndarray, step_sizes: np.ndarray) -> xr.DataTree:
    """A fit as nutpie returns it with keep_start: unconstrained draws (chain, draw, dim)
    and each draw's step size in sample_stats."""
    chains, n, _ = draws.shape
    stats = xr.Dataset(
        {
            "unconstrained_draw": (("chain", "draw", "dim"), draws),
            "step_size": (("chain", "draw"), np.repeat(step_sizes[:, None], n, axis=1)),
            "diverging": (("chain", "draw"), np.zeros((chains, n), dtype=bool)),
        }
    )
    return xr.DataTree.from_dict({"sample_stats": stats})


def test_a_start_is_the_outer_half_of_the_draws_and_leaves_the_fit_as_it_was():
    rng = np.random.default_rng(3)
    draws = rng.normal(size=(4, 250, 3))
    tree = fake_fit(draws, np.array([0.3, 0.5, 0.4, 0.6]))
    start = Start.take(tree, [("a_log__", 1), ("b", 2)], tune=150)
    assert "unconstrained_draw" not in tree["sample_stats"]  # no result: not saved
    assert "diverging" in tree["sample_stats"]
    assert start.step_size == pytest.approx(0.45) and start.tune == 150
    assert start.values["a_log__"].shape == (500, 1) and start.values["b"].shape == (500, 2)
    flat = draws.reshape(-1, 3)
    distance = (((flat - flat.mean(0)) / flat.std(0)) ** 2).sum(1)
    kept = np.hstack([start.values["a_log__"], start.values["b"]])
    # every kept draw is one of the fit's, and from its outer half
    assert (distance[np.isin(flat[:, 0], kept[:, 0])] >= np.median(distance) - 1e-12).all()
    points = [start.point(seed) for seed in range(40)]
    assert all(any((p == k).all() for k in kept) for p in points)
    assert (start.point(7) == start.point(7)).all()  # a chain's seed decides its start
    assert len({p.tobytes() for p in points}) > 30  # different chains, different draws
    assert start.fits([("a_log__", 1), ("b", 2)])
    assert not start.fits([("a", 1), ("b", 2)])  # another transform: a fresh start
    assert not start.fits([("a_log__", 1), ("b", 3)])


def test_a_fit_without_unconstrained_draws_gives_no_start():
    tree = fake_fit(np.zeros((2, 10, 1)), np.ones(2)).copy()
    tree["sample_stats"] = tree["sample_stats"].to_dataset().drop_vars("unconstrained_draw")
    assert Start.take(tree, [("x", 1)], tune=100) is None


@pytest.fixture
def nutpie_calls(monkeypatch) -> list[dict]:
    """The arguments of each nutpie.sample call, with the start point of each chain."""
    import nutpie

    calls: list[dict] = []
    sample = nutpie.sample

    def recording(compiled, **kwargs):
        calls.append({**kwargs, "start": compiled.initial_point_func})
        return sample(compiled, **kwargs)

    monkeypatch.setattr(nutpie, "sample", recording)
    return calls


def test_a_refit_from_the_main_fit_s_draws_samples_its_own_posterior(nutpie_calls):
    settings = SamplerSettings(draws=1000, tune=500, chains=2, cores=2)
    sampler = Sampler(conjugate_model(), settings)
    main = sampler.sample(None, seed=1, keep_start=True)
    start = Start.take(main, sampler.layout, tune=100)
    assert "unconstrained_draw" not in main["sample_stats"]
    refits = {
        (5.0, 1.0): sampler.sample(None, seed=2, start=start, prior__x__mu=np.array(5.0)),
        (0.0, 0.0): sampler.sample(None, seed=3, start=start, row_weight=np.r_[0.0, 1, 1, 1, 1]),
    }
    for call in nutpie_calls[1:]:  # the refits: the main fit's draws, its step, short tuning
        assert call["tune"] == 100 and call["initial_step"] == start.step_size
        assert call["start"] == start.point
    assert nutpie_calls[0]["tune"] == 500 and "initial_step" not in nutpie_calls[0]
    for (mu, w0), idata in refits.items():
        mean, sd = exact(mu, np.r_[w0, 1, 1, 1, 1])
        draws = idata["posterior"]["x"].to_numpy().ravel()
        assert abs(draws.mean() - mean) < 0.15 * sd, (mu, w0)
        assert draws.std() == pytest.approx(sd, rel=0.1), (mu, w0)
    # a start that is not this model's (other variables) is not used: a fresh start
    other = Start({"y": np.zeros((4, 1))}, 0.5, 100)
    sampler.sample(None, seed=4, start=other)
    assert nutpie_calls[-1]["tune"] == 500 and "initial_step" not in nutpie_calls[-1]


def test_chains_started_in_two_modes_fail_r_hat():
    """Starting from the main fit's draws does not hide a second mode from R-hat: chains
    that begin in different modes of a target they cannot cross stay apart, and the fit
    rules fail it."""
    from model.diagnostics import check

    with pm.Model() as model:
        pm.NormalMixture("x", w=np.array([0.5, 0.5]), mu=np.array([-6.0, 6.0]), sigma=0.5)
    sampler = Sampler(model, SamplerSettings(draws=500, tune=100, chains=4, cores=2))
    start = Start({"x": np.array([[-6.0], [6.0]])}, 0.5, 100)  # draws from both modes
    fit = sampler.sample(None, seed=7, start=start)  # a seed whose chains start in both
    x = fit["posterior"]["x"]
    assert set(np.sign(x.mean("draw")).to_numpy().tolist()) == {-1.0, 1.0}  # both modes
    verdict = check(fit["posterior"].to_dataset(), fit["sample_stats"]["diverging"], "x", ["x"])
    assert not verdict["passed"] and verdict["max_rhat"] > 1.5


@pytest.mark.slow(minutes=1)
def test_a_refit_of_the_case_from_the_main_fit_s_draws_matches_a_fresh_one():
    """February 11 without the source `ua-prosecutors` (a refit the checks sample): started
    from the main fit's draws with `refit_tune` tuning draws, and afresh with the main fit's
    tuning, as before, each as the estimate samples a refit (a fit that misses the rules is
    sampled once more, more carefully: the fresh one, seed 7, misses R-hat by a little). Both
    meet the fit rules and their headline medians agree within Monte Carlo error (4 combined
    MCSEs, ArviZ's MCSE of the median)."""
    import arviz as az

    from model import load_case
    from model.build import build
    from model.diagnostics import check
    from model.priors import resolve_priors

    case = load_case("data/cases/february-11-plant")
    model, mix, obs = build(case, resolve_priors(case))
    settings = SamplerSettings()
    sampler = Sampler(model, settings)
    sampler.retry = True  # as fit.py's
    main = sampler.sample(mix.weights, settings.seed, keep_start=True)
    start = Start.take(main, sampler.layout, settings.refit_tune)
    groups = case.evidence.set_index("id").loc[list(obs.ids), "bias_group"]
    weight = (groups != "ua-prosecutors").to_numpy(float)
    assert 0 < weight.sum() < len(weight)
    fits = {
        how: sampler.sample(mix.weights, 7, start=s, row_weight=weight)
        for how, s in (("fresh", None), ("warm", start))
    }
    for how, one in fits.items():
        verdict = check(one["posterior"].to_dataset(), one["sample_stats"]["diverging"], how)
        assert verdict["passed"], (how, verdict["failures"])
    for name in ("rate_before", "rate_after", "capacity_multiplier"):
        a, b = (fits[how]["posterior"][name] for how in ("fresh", "warm"))
        se = [float(az.mcse(x.to_dataset(name="x"), method="median")["x"]) for x in (a, b)]
        assert abs(float(a.median()) - float(b.median())) < 4 * np.hypot(*se), name


def test_a_refit_retried_in_this_process_is_recorded_once():
    """run_refits through the main fit's sampler: the sampler records the retry itself, and
    the refit's record is not added to it a second time (the summary lists each retry)."""
    from types import SimpleNamespace

    from model.fit import REFIT_VARS, Refit, run_refits
    from model.timing import Stopwatch

    record = {"fit": "refit without the source s", "passed": True}

    def sample(weights, seed, label=None, start=None, **data):
        sampler.retries.append(record)  # as Sampler.sample does on a retry
        zeros = xr.DataArray(np.zeros((2, 5)), dims=("chain", "draw"))
        post = xr.Dataset({name: zeros for name in REFIT_VARS})
        stats = xr.Dataset({"diverging": zeros.astype(bool)})
        return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})

    free = SimpleNamespace(free_RVs=[SimpleNamespace(name="rate_before")])  # what it keeps
    sampler = SimpleNamespace(sample=sample, retries=[], watch=Stopwatch("test"), model=free)
    refit = Refit("source_refits/s", "refit without the source s", np.ones(1))
    nodes = run_refits([refit], sampler, None, None, SamplerSettings())
    assert list(nodes) == ["source_refits/s"] and sampler.retries == [record]
    assert list(nodes["source_refits/s"][1].data_vars) == ["rate_before"]  # for model/reuse.py


def expansion_model() -> pm.Model:
    """A transformed free variable, a vector on a named dim and one on an unnamed dim,
    deterministics of both, a pm.Data that only a deterministic reads, and a likelihood."""
    with pm.Model(coords={"obs": [f"r{i}" for i in range(len(Y))]}) as model:
        y = pm.Data("y", Y, dims="obs")
        scale = pm.Data("scale", 2.0)  # read by a deterministic only
        sigma = pm.HalfNormal("sigma", 1.0)
        mu = pm.Normal("mu", 0.0, 3.0)
        shift = pm.Normal("shift", 0.0, 1.0, shape=2)
        pm.Deterministic("fitted", (mu + shift.sum()) * scale + 0.0 * y, dims="obs")
        pm.Deterministic("pair", shift * sigma)
        pm.Normal("evidence", mu + shift.sum(), sigma, observed=y, dims="obs")
    return model


def test_draws_expanded_after_sampling_are_nutpie_s_own_expansion():
    """nutpie stores the free variables only and the sampler computes every other stored
    variable from the unconstrained draws in one batched call (Sampler.expanded): the
    result is what nutpie's own expansion, draw by draw, gives from the same draws: the
    same variables in the same order, on the same dims and coords, with the same values,
    under the model's own data and under other data, and nothing of the sampler's scale
    left in it."""
    from model.callbacks import compile_nutpie

    settings = SamplerSettings(draws=200, tune=200, chains=2, cores=2)
    ours = Sampler(expansion_model(), settings)
    theirs = Sampler(expansion_model(), settings)
    theirs.compiled = compile_nutpie(theirs.model)  # every variable, expanded by nutpie
    assert len(ours.compiled.shape_info[0]) < len(theirs.compiled.shape_info[0])
    for data in ({}, {"scale": np.array(5.0), "y": Y[::-1].copy()}):
        a = ours.sample(None, seed=3, **data)["posterior"].to_dataset()
        b = theirs.sample(None, seed=3, **data)["posterior"].to_dataset()
        assert list(a.data_vars) == list(b.data_vars)
        for name in b.data_vars:
            assert a[name].dims == b[name].dims, name
            np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-12, err_msg=name)
        assert set(a.coords) == set(b.coords)
        for dim in b.coords:
            assert list(a[dim].to_numpy()) == list(b[dim].to_numpy()), dim
        if data:
            fitted = (a["mu"] + a["shift"].sum("shift_dim_0")) * 5.0
            np.testing.assert_allclose(a["fitted"].isel(obs=0), fitted, rtol=1e-12)
    # a view with one row more (a value-of-information refit's), the data only a
    # deterministic reads among its values
    more = {"y": np.r_[Y, 3.0], "scale": np.array(5.0)}
    coords = {"obs": [f"r{i}" for i in range(len(Y) + 1)]}
    a = ours.resized(coords, {"y": more["y"]}).sample(None, seed=5, scale=more["scale"])
    b = theirs.resized(coords, {"y": more["y"]}).sample(None, seed=5, scale=more["scale"])
    a, b = a["posterior"].to_dataset(), b["posterior"].to_dataset()
    assert list(a["obs"].to_numpy()) == coords["obs"] == list(b["obs"].to_numpy())
    np.testing.assert_allclose(a["fitted"], b["fitted"], rtol=1e-12)
    fit = ours.sample(None, seed=4, keep_start=True)
    assert "unconstrained_draw" in fit["sample_stats"]  # for Start.take
    assert "unconstrained_posterior" not in fit.children
    assert "unconstrained_draw" not in ours.sample(None, seed=4)["sample_stats"]
    with pytest.raises(KeyError, match="row_weights"):  # a misspelt name is not ignored
        ours.sample(None, seed=4, row_weights=np.ones(len(Y)))
