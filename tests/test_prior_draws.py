"""The prior draws in one call (model/prior_draws.py) against PyMC's, one call per draw: the
same joint distribution of every variable the report shows, with its dimensions."""

from __future__ import annotations

import warnings

import numpy as np
import pymc as pm
import pytest
from scipy import stats

from model import load_case
from model.build import build
from model.fit import PRIOR_VARS
from model.prior_draws import prior_predictive
from model.priors import resolve_priors

from .conftest import CASE

DRAWS = 2000
# pairs whose dependence the model makes, none of them a function of the other alone: a root
# and what it feeds with other roots, up to the evidence
# (rank correlations 0.96, 0.25, 0.22 and 0.90; each method's within 2 standard errors of the
# other's at 20,000 draws)
PAIRS = [("rate_before", "rate_after"), ("log_gain_log", "rate_after"),
         ("export_share", "exported_flow"), ("rate_before", "evidence")]  # fmt: skip


@pytest.fixture(scope="module")
def both():
    case = load_case(CASE)
    model, _, _ = build(case, resolve_priors(case))
    names = [v for v in PRIOR_VARS if v in model.named_vars]
    ours = prior_predictive(model, names, DRAWS, seed=1)
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Potential.*")
        pymc = pm.sample_prior_predictive(draws=DRAWS, var_names=names, random_seed=2)
    return names, ours, pymc


def _draws(tree, name: str) -> np.ndarray:
    group = "prior_predictive" if name in tree["prior_predictive"] else "prior"
    return tree[group][name].to_numpy()[0].reshape(DRAWS, -1)  # draws x (each element)


def _first(tree, name: str) -> np.ndarray:
    return _draws(tree, name)[:, 0]


def _correlation_gap(ours, pymc, a: str, b: str) -> float:
    """The two methods' rank correlations of a and b, their difference in standard errors
    (Fisher's z, two independent samples)."""
    r = [stats.spearmanr(_first(t, a), _first(t, b)).statistic for t in (ours, pymc)]
    return float(abs(np.arctanh(r[0]) - np.arctanh(r[1])) / np.sqrt(2 / (DRAWS - 3)))


def test_every_variable_has_pymcs_groups_dimensions_and_coordinates(both):
    names, ours, pymc = both
    for group in ("prior", "prior_predictive", "observed_data"):
        mine, theirs = ours[group].to_dataset(), pymc[group].to_dataset()
        assert set(mine.data_vars) == set(theirs.data_vars)
        for name in mine.data_vars:
            assert mine[name].dims == theirs[name].dims, name
            assert mine[name].shape == theirs[name].shape, name
            for dim in mine[name].dims:
                assert (mine[dim].to_numpy() == theirs[dim].to_numpy()).all(), (name, dim)
    assert set(names) <= set(ours["prior"].data_vars) | set(ours["prior_predictive"].data_vars)


def test_each_element_has_pymcs_marginal(both):
    """Two-sample Kolmogorov-Smirnov per element of every variable, Bonferroni over all."""
    names, ours, pymc = both
    p = {}
    for name in names:
        a, b = _draws(ours, name), _draws(pymc, name)
        for j in range(a.shape[1]):
            if np.ptp(b[:, j]) > 0:  # a constant element (a month before any production)
                p[f"{name}[{j}]"] = stats.ks_2samp(a[:, j], b[:, j]).pvalue
    worst = min(p, key=p.get)
    assert p[worst] > 0.01 / len(p), (worst, p[worst])


def test_draws_keep_the_dependence_between_variables(both):
    """Each draw is one joint draw: a variable drawn apart from what it depends on (a batch
    dimension misaligned) keeps its marginal and loses the dependence, which this catches."""
    _, ours, pymc = both
    for a, b in PAIRS:
        assert _correlation_gap(ours, pymc, a, b) < 4, (a, b)


def test_a_variable_drawn_apart_from_its_parent_is_caught(both):
    """The negative control: rate_after's draws in another order (its marginal unchanged)."""
    _, ours, pymc = both
    broken = ours.copy()
    prior = broken["prior"].to_dataset()
    order = np.random.default_rng(0).permutation(DRAWS)
    shuffled = prior["rate_after"].to_numpy()[:, order]  # the values only: not realigned
    broken["prior"] = prior.assign(rate_after=prior["rate_after"].copy(data=shuffled))
    assert _correlation_gap(broken, pymc, "rate_before", "rate_after") > 10


def test_a_variable_no_random_variable_feeds_gets_every_draw():
    """A deterministic of data alone is not vectorised (no root feeds it): each draw is the
    same value, with the draw dimension the groups expect."""
    with pm.Model(coords={"month": ["2024-01", "2024-02", "2024-03"]}) as model:
        scale = pm.Data("scale", np.array([1.0, 2.0, 3.0]), dims="month")
        rate = pm.LogNormal("rate", 0.0, 1.0)
        pm.Deterministic("fixed", 2.0 * scale, dims="month")
        pm.Deterministic("scaled", rate * scale, dims="month")
    tree = prior_predictive(model, ["rate", "fixed", "scaled"], 50, seed=3)
    prior = tree["prior"].to_dataset()
    assert prior["fixed"].dims == ("chain", "draw", "month") == prior["scaled"].dims
    assert (prior["fixed"].to_numpy() == [2.0, 4.0, 6.0]).all()
    rate = prior["rate"].to_numpy()[0]
    assert np.unique(rate).size == 50  # every draw its own
    assert np.allclose(prior["scaled"].to_numpy()[0], rate[:, None] * [1.0, 2.0, 3.0])


def test_a_model_pytensor_cannot_vectorise_gets_pymcs_draws(tmp_path):
    """A serial case's rate_before has a prior shifted to the serials' bound (a CustomDist
    whose size is left open), which PyTensor cannot vectorise: its draws are PyMC's, one a
    call, and the groups the same as ever."""
    from .test_serials import serial_only_case

    case = load_case(serial_only_case(tmp_path / "case", [40, 180, 233, 290]))
    model, _, _ = build(case, resolve_priors(case))
    names = [v for v in PRIOR_VARS if v in model.named_vars]
    tree = prior_predictive(model, names, 300, seed=4)
    prior = tree["prior"].to_dataset()
    assert prior.sizes["draw"] == 300 and "rate_before" in prior
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Potential.*")
        pymc = pm.sample_prior_predictive(draws=300, var_names=names, random_seed=4, backend="c")
    assert (prior["rate_before"].to_numpy() == pymc["prior"]["rate_before"].to_numpy()).all()
