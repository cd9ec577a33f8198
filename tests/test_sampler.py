"""The sampler compiles a model once: PyMC's NUTS (the fallback when nutpie is missing) as
nutpie does. A refit that changes only pm.Data values, a prior's parameter or a row's weight,
compiles nothing and samples the posterior of the new values."""

import numpy as np
import pymc as pm
import pytest
from pytensor.compile.maker import FunctionMaker
from pytensor.compile.mode import get_mode

from model.sampler import Sampler, SamplerSettings

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
