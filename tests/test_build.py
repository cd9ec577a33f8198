"""The case's model (model/build.py) holds every monthly path its candidate measurements read
(for the value-of-information refits through the main fit's compiled model), with zero
weights when no ledger row reads them: its joint density is the one without them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from model import load_case
from model.build import FREE_PATHS, build, kept_paths, row_values
from model.candidates import candidate_paths
from model.priors import resolve_priors
from tests.conftest import CASE


@pytest.fixture(scope="module")
def two_graphs():
    """February 11's model as built (its candidates read production, which no ledger row
    does) and as before (only the paths its rows read), built with warnings as errors."""
    case = load_case(CASE)
    priors = resolve_priors(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return build(case, priors), build(case, priors, paths=())


def test_the_graph_keeps_the_paths_the_candidates_read_with_zero_weights(two_graphs):
    now, before = two_graphs
    assert "production" in candidate_paths(load_case(CASE))
    assert not now.observations.weights["production"].any()  # no ledger row reads it
    data = {v.name: v.get_value() for v in now.model.data_vars}
    assert np.all(data["evidence_weights__production"] == 0.0)
    assert "evidence_weights__production" not in {v.name for v in before.model.data_vars}
    # nothing else differs: the same free variables, deterministics and shapes
    for a, b in (("free_RVs", "free_RVs"), ("deterministics", "deterministics")):
        assert [v.name for v in getattr(now.model, a)] == [v.name for v in getattr(before.model, b)]
    start, start0 = now.model.initial_point(), before.model.initial_point()
    assert list(start) == list(start0)
    for name in start:
        np.testing.assert_array_equal(start[name], start0[name])


def test_the_log_density_and_its_gradient_are_those_of_the_graph_without_them(two_graphs):
    """At the initial point and at random points around it (unconstrained), bit for bit:
    the kept path adds exact zeros."""
    now, before = two_graphs
    point = before.model.initial_point()
    rng = np.random.default_rng(4)
    points = [point] + [
        {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in point.items()} for _ in range(4)
    ]
    functions = []
    for built in (now, before):  # one function each (logp, its gradient, the predictions)
        model = built.model
        predicted = model.replace_rvs_by_values([model["predicted"]])[0]
        functions.append(
            model.compile_fn([model.logp(), model.dlogp(), predicted], mode="FAST_COMPILE")
        )
    for p in points:
        got, want = (f(p) for f in functions)
        assert np.isfinite(want[0])
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_row_on_a_kept_path_changes_the_log_density():
    """The check above can fail: the same graph with a production row that reads the kept
    path (weight 1 on a month) has another density."""
    case = load_case(CASE)
    built = build(case, resolve_priors(case))
    model = built.model
    logp = model.compile_logp(mode="FAST_COMPILE")
    point = model.initial_point()
    weights = model["evidence_weights__production"].get_value().copy()
    before = logp(point)
    weights[0, 5] = 1.0
    model["evidence_weights__production"].set_value(weights)
    assert logp(point) != before


def test_only_paths_that_add_no_variable_are_kept_for_candidates(two_graphs):
    """ "shipped" needs the shipment priors (free variables the ledger's rows would not
    otherwise have): a candidate reading it gets a model of its own (model/voi_refit.py)."""
    now, _ = two_graphs
    obs = now.observations
    assert "shipped" not in FREE_PATHS
    assert kept_paths(obs, ("shipped", "production")) == ("use", "exported", "age", "production")
    assert kept_paths(obs) == ("use", "exported", "age")
    values = row_values(obs, kept_paths(obs, ("production",)))
    data = {v.name for v in now.model.data_vars}
    assert set(values) <= data
