"""nutpie's callbacks cached on disk (model/callbacks.py): a second compile of the same graph
loads them instead of compiling; other data (values or one row more) reuse them; another
graph does not; and the draws are nutpie's own."""

import numpy as np
import nutpie
import pandas as pd
import pymc as pm

from model.callbacks import compile_nutpie


def small_model(values, scale=1.0):
    with pm.Model() as model:
        y = pm.Data("y", np.asarray(values, dtype=float))
        mu = pm.Normal("mu", 0.0, 10.0)
        sigma = pm.HalfNormal("sigma", scale)
        pm.Deterministic("scaled", (y - mu) / scale)
        pm.Normal("obs", mu, sigma, observed=y, shape=y.shape)
    return model


def hits(compiled) -> tuple[int, int]:
    return compiled.compiled_logp_func._cache_hits, compiled.compiled_expand_func._cache_hits


def draws(compiled):
    idata = nutpie.sample(
        compiled, draws=100, tune=100, chains=2, cores=1, seed=3, progress_bar=False
    )
    return idata["posterior"]["mu"].to_numpy()


def test_second_compile_loads_the_callbacks():
    compile_nutpie(small_model([1.0, 2.0, 4.0]))  # fills the cache, or finds it filled
    again = compile_nutpie(small_model([1.0, 2.0, 4.0]))
    assert hits(again) == (1, 1)


def test_one_row_more_reuses_the_callbacks_and_samples_as_nutpie():
    compile_nutpie(small_model([1.0, 2.0, 4.0]))
    other = compile_nutpie(small_model([3.0, 0.5, 9.0, 2.5]))
    assert hits(other) == (1, 1)
    plain = nutpie.compile_pymc_model(small_model([3.0, 0.5, 9.0, 2.5]), backend="numba")
    np.testing.assert_array_equal(draws(other), draws(plain))


def test_another_graph_has_another_key(monkeypatch):
    import model.callbacks as callbacks

    keys, original = [], callbacks._compile_keyed

    def record(pyfunc, sig, options, key):
        keys.append(key)
        return original(pyfunc, sig, options, key)

    monkeypatch.setattr(callbacks, "_compile_keyed", record)
    for scale in (1.0, 1.0, 2.0):  # a constant of the graph: PyTensor's key changes
        compile_nutpie(small_model([1.0, 2.0], scale))
    # log-density then deterministics, per compile
    assert keys[0] == keys[2] != keys[4]
    assert keys[1] == keys[3] != keys[5]


def test_one_row_more_leaves_the_case_graph_as_it_was():
    """What the rows read is pm.Data (model/build.py `_row_data`), so the February 11 graph
    with a launch row more is the same graph (its text, PyTensor's cache key) as before."""
    import dataclasses
    from pathlib import Path

    from model import load_case
    from tests.conftest import graph_text

    case = load_case(Path(__file__).resolve().parents[1] / "data/cases/february-11-plant")
    launches = case.evidence[case.evidence["kind"] == "launches"]
    extra = launches.iloc[[0]].assign(id="launches-one-more")
    plus = dataclasses.replace(case, evidence=pd.concat([case.evidence, extra]))
    assert graph_text(plus) == graph_text(case)
