"""Sampler.resized: one compiled model sampled with its rows' data of another length (the
value-of-information refits append the candidates' rows on `obs`, model/voi_refit.py). Its
draws must be those of a model built with the longer data, nutpie's and PyMC's; data it cannot
take are refused before any sampling."""

import numpy as np
import pymc as pm
import pytest

from model.sampler import Sampler, SamplerSettings

Y = np.array([1.2, 0.4, 2.1])
MORE = np.array([1.2, 0.4, 2.1, 3.5, -0.3])


def rows_model(y: np.ndarray) -> pm.Model:
    """x ~ N(0, 1), each row y_i ~ N(x, 1) counted row_weight times, as model/build.py's
    rows (pm.Data on `obs`, a deterministic per row): the posterior of x is
    N(sum w y / (1 + sum w), 1 / (1 + sum w))."""
    with pm.Model(coords={"obs": [f"r{i}" for i in range(len(y))]}) as model:
        observed = pm.Data("evidence_observed", y, dims="obs")
        weight = pm.Data("row_weight", np.ones(len(y)), dims="obs")
        x = pm.Normal("x", 0.0, 1.0)
        pm.Deterministic("predicted", x + 0.0 * observed, dims="obs")
        pm.Potential("rows", (weight * pm.logp(pm.Normal.dist(x, 1.0), observed)).sum())
    return model


def longer() -> dict[str, np.ndarray]:
    weight = np.ones(len(MORE))
    weight[3] = 0.0  # an appended row left out, as every candidate's row but the one refitted
    return {"evidence_observed": MORE, "row_weight": weight}


@pytest.mark.parametrize("name", ["nutpie", "pymc"])
def test_a_resized_sampler_draws_what_a_model_of_the_longer_data_draws(name):
    settings = SamplerSettings(sampler=name, draws=300, tune=300, chains=2, cores=2)
    short = Sampler(rows_model(Y), settings)
    before = short.sample(None, seed=3)
    coords = {"obs": [f"r{i}" for i in range(len(MORE))]}
    small = SamplerSettings(sampler=name, draws=200, tune=200, chains=2, cores=2)
    view = short.resized(coords, longer(), small)
    got = view.sample(None, seed=5)
    fresh = Sampler(rows_model(MORE), small).sample(None, seed=5, row_weight=longer()["row_weight"])
    post, want = got["posterior"], fresh["posterior"]
    assert post.sizes["draw"] == 200 and list(post["obs"].to_numpy()) == coords["obs"]
    np.testing.assert_array_equal(post["x"].to_numpy(), want["x"].to_numpy())
    np.testing.assert_array_equal(post["predicted"].to_numpy(), want["predicted"].to_numpy())
    weight = longer()["row_weight"]
    mean = (weight * MORE).sum() / (1 + weight.sum())
    x = post["x"].to_numpy()
    assert abs(x.mean() - mean) < 4 * (1 + weight.sum()) ** -0.5 / np.sqrt(100)
    # the sampler it came from is as it was: its own lengths, labels and draws
    again = short.sample(None, seed=3)
    assert again["posterior"].sizes["obs"] == len(Y) and view.settings.draws == 200
    np.testing.assert_array_equal(again["posterior"]["x"], before["posterior"]["x"])


def test_data_a_resized_sampler_cannot_take_are_refused():
    """Before any sampling: a row's data of the old length, data left out, or a free
    variable on the resized dim (the sampler's parameters would change)."""
    settings = SamplerSettings(sampler="pymc", draws=100, tune=100, chains=1)
    sampler = Sampler(rows_model(Y), settings)
    coords = {"obs": [f"r{i}" for i in range(len(MORE))]}
    with pytest.raises(ValueError, match=r"row_weight: expected shape \(5,\), got \(3,\)"):
        sampler.resized(coords, {"evidence_observed": MORE, "row_weight": np.ones(3)})
    with pytest.raises(ValueError, match="no values for .*row_weight"):
        sampler.resized(coords, {"evidence_observed": MORE})
    with pm.Model(coords={"obs": ["a", "b"]}) as per_row:
        y = pm.Data("evidence_observed", np.zeros(2), dims="obs")
        z = pm.Normal("z", 0.0, 1.0, dims="obs")
        pm.Potential("rows", pm.logp(pm.Normal.dist(z, 1.0), y).sum())
    with pytest.raises(ValueError, match=r"free variables \['z'\]"):
        Sampler(per_row, settings).resized({"obs": ["a", "b", "c"]}, {"evidence_observed": Y})
