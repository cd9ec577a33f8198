"""PyTensor functions cached on disk (model/compiled.py): the same graph built again loads the
rewritten function instead of compiling it, reads the caller's own shared values and random
generators, and gives what a fresh compile gives; another graph, or an unreadable entry, is
compiled (never a stale function, never an error)."""

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

from model import compiled


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder, and a count of the functions PyTensor compiled (not loaded)."""
    from pytensor.compile.maker import FunctionMaker

    made = []
    original = FunctionMaker.__init__

    def counting(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(compiled, "_folder", lambda: tmp_path)
    monkeypatch.setattr(FunctionMaker, "__init__", counting)
    return made


def graph(scale: float = 2.0, seed: int = 5):
    """x -> sum(exp(x) * scale) + a normal draw around the shared `mu`, each call a new draw."""
    rng = pytensor.shared(np.random.default_rng(seed))
    mu = pytensor.shared(np.array(1.0), name="mu")
    x = pt.vector("x")
    next_rng, draw = pt.random.normal(mu, 1.0, size=3, rng=rng).owner.outputs
    return [x], (pt.exp(x) * scale).sum() + draw.sum(), {rng: next_rng}, mu


def test_the_same_graph_built_again_is_loaded_and_gives_what_a_fresh_compile_gives(cache):
    x = np.array([0.5, 1.5])
    inputs, out, updates, _ = graph()
    first = compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    want = [first(x), first(x)]  # two calls: the generator's update is kept between them
    assert len(cache) == 1 and len(list(compiled._folder().glob("*.pkl"))) == 1
    inputs, out, updates, _ = graph()  # new variables, same graph
    again = compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    assert len(cache) == 1  # loaded, not compiled
    assert [again(x), again(x)] == want
    inputs, out, updates, _ = graph()
    plain = pytensor.function(inputs, out, mode="FAST_RUN", updates=updates)
    assert [plain(x), plain(x)] == want


def test_a_graphs_key_does_not_change_when_its_ops_are_hashed():
    """Compiling a graph hashes its ops, and an Elemwise's frozendict caches its hash: the key
    of the same graph must not depend on whether this process compiled something before (it
    did, and the first warm run after a cold one compiled PyMC's initial point again)."""
    from pytensor.compile.mode import get_mode
    from pytensor.compile.rebuild import construct_function_ins_and_outs
    from pytensor.graph.traversal import applys_between

    inputs, out, updates, _ = graph()
    ins, outs = construct_function_ins_and_outs(inputs, out, updates=updates)  # as `function`
    mode = get_mode("FAST_RUN")
    nodes = applys_between(inputs, [out])
    patterns = [n.op.inplace_pattern for n in nodes if hasattr(n.op, "inplace_pattern")]
    assert patterns
    for p in patterns:
        p._hash = None  # as in a process that has compiled nothing yet
    before = compiled._key(ins, outs, mode, {})
    assert before is not None
    for p in patterns:
        hash(p)  # as a compile's rewrites do
    assert all(p._hash is not None for p in patterns)
    assert compiled._key(ins, outs, mode, {}) == before


def test_on_miss_is_called_once_at_the_first_graph_not_in_the_cache(cache):
    """How a fit tells a cold machine (model/warmup.py): a graph loaded from the cache calls
    nothing; the first one compiled calls the callback, once."""
    x = np.array([0.5, 1.5])
    inputs, out, updates, _ = graph()
    compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    calls = []
    with compiled.on_miss(lambda: calls.append(len(cache))):
        inputs, out, updates, _ = graph()
        compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
        assert calls == []  # loaded
        for scale in (3.0, 4.0):
            inputs, out, updates, _ = graph(scale)
            compiled.function(inputs, out, mode="FAST_RUN", updates=updates)(x)
    assert calls == [1]  # before the new graph's compile, and only once
    with compiled.on_miss(lambda: calls.append("after")):
        pass
    inputs, out, updates, _ = graph(5.0)
    compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    assert calls == [1]  # outside the context: nothing


def test_a_loaded_function_reads_the_callers_shared_values(cache):
    inputs, out, updates, _ = graph()
    compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    inputs, out, updates, mu = graph()
    f = compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    assert len(cache) == 1  # loaded
    mu.set_value(np.array(1000.0))  # the draw is around 1000 now, three of them
    assert f(np.zeros(2)) > 2900


def test_a_loaded_function_names_the_callers_shared_variables_and_seeds_from_its_graph(cache):
    """What nutpie and PyMC's initial point function ask of a compiled function: its shared
    variables are the caller's (nutpie keys its data by them), and a generator found in its
    graph and reseeded (pymc.pytensorf.reseed_rngs) changes the draws it makes. Both failed
    for a loaded function: nutpie's `with_data` saw two variables of one name, and the
    initial points were not seeded (the same seed gave other numbers in every process)."""
    from pymc.pytensorf import find_rng_nodes, reseed_rngs

    def made(through):
        rng = pytensor.shared(np.random.default_rng(5))
        mu = pytensor.shared(np.array(1.0), name="mu")
        placeholder = pt.scalar("placeholder")
        draw = pt.random.normal(placeholder, 1.0, size=3, rng=rng)
        f = through([], draw, mode="FAST_COMPILE", givens=[(placeholder, mu)])
        reseed_rngs(find_rng_nodes(f.maker.fgraph.outputs), 11)
        return f, rng, mu

    want = made(pytensor.function)[0]()
    for _ in range(2):  # compiled (and loaded back), then loaded
        f, rng, mu = made(compiled.function)
        assert {id(v) for v in f.get_shared()} == {id(rng), id(mu)}
        np.testing.assert_array_equal(f(), want)
    assert len(cache) == 2  # the plain compile and the first cached one


def test_an_op_that_took_a_gradient_is_loaded(cache):
    """logsumexp's op keeps the gradient's builder (a closure) once a gradient was taken, as
    in nutpie's log density and its gradient; the entry is written without it and loads."""
    from pytensor.tensor.special import logsumexp

    x = np.arange(3.0)
    for _ in range(2):
        v = pt.vector("v")
        out = logsumexp(v)
        f = compiled.function([v], [out, pytensor.grad(out, v)], mode="FAST_RUN")
        value, grad = f(x)
        np.testing.assert_allclose(grad, np.exp(x) / np.exp(x).sum())
    assert len(cache) == 1


def test_a_changed_graph_misses_the_cache(cache):
    x = np.array([0.5, 1.5])
    inputs, out, updates, _ = graph(scale=2.0)
    compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    inputs, out, updates, _ = graph(scale=3.0)  # one constant changed
    f = compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    assert len(cache) == 2 and len(list(compiled._folder().glob("*.pkl"))) == 2
    inputs, out, updates, _ = graph(scale=3.0)
    plain = pytensor.function(inputs, out, mode="FAST_RUN", updates=updates)
    assert f(x) == plain(x)
    # another op: log in place of exp
    a, b = pt.vector("a"), pt.vector("a")
    one = compiled.function([a], pt.exp(a).sum(), mode="FAST_RUN")
    other = compiled.function([b], pt.log(b).sum(), mode="FAST_RUN")
    assert len(cache) == 3 + 2  # the plain compile, then both
    assert one(x) == pytest.approx(np.exp(x).sum()) and other(x) == pytest.approx(np.log(x).sum())
    # another mode: its own entry
    c = pt.vector("a")
    compiled.function([c], pt.exp(c).sum(), mode="FAST_COMPILE")
    assert len(cache) == 6


def test_an_unreadable_entry_is_compiled_again_and_replaced(cache):
    x = np.array([0.5, 1.5])
    inputs, out, updates, _ = graph()
    want = compiled.function(inputs, out, mode="FAST_RUN", updates=updates)(x)
    (entry,) = compiled._folder().glob("*.pkl")
    entry.write_bytes(b"not a pickle")
    inputs, out, updates, _ = graph()
    f = compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    assert len(cache) == 2 and f(x) == want
    inputs, out, updates, _ = graph()
    compiled.function(inputs, out, mode="FAST_RUN", updates=updates)
    assert len(cache) == 2  # the entry was written again


def test_an_entry_whose_inputs_differ_is_not_used(cache):
    """The same key with other inputs cannot happen unless the file is someone else's: it
    is checked anyway, input by input."""
    a = pt.vector("a")
    compiled.function([a], pt.exp(a).sum(), mode="FAST_RUN")
    (entry,) = compiled._folder().glob("*.pkl")
    b = pt.matrix("b")
    compiled.function([b], pt.exp(b).sum(), mode="FAST_RUN")
    (other,) = set(compiled._folder().glob("*.pkl")) - {entry}
    entry.write_bytes(other.read_bytes())  # the vector's key now holds the matrix function
    c = pt.vector("a")
    f = compiled.function([c], pt.exp(c).sum(), mode="FAST_RUN")
    assert len(cache) == 3 and f(np.zeros(2)) == 2.0


def prior_model():
    with pm.Model() as model:
        share = pm.Data("share_alpha", 4.0)
        p = pm.Beta("p", share, 2.0)
        rate = pm.LogNormal("rate", 2.0, 0.5)
        pm.Poisson("count", rate * p, observed=np.array([3, 5, 4]))
    return model


def test_prior_predictive_through_the_cache_is_pymcs_own(cache):
    def draws(model):
        return pm.sample_prior_predictive(draws=50, model=model, random_seed=7, backend="c")

    want = draws(prior_model())
    for _ in range(2):  # compiled (and written), then loaded
        with compiled.through_cache():
            got = draws(prior_model())
        for group in ("prior", "prior_predictive"):
            for name, values in want[group].data_vars.items():
                np.testing.assert_array_equal(got[group][name].to_numpy(), values.to_numpy())
    assert len(cache) == 2  # the plain draw's compile and the first cached one
    assert pytensor.function is not compiled.function  # put back


def test_a_graph_with_a_custom_distribution_is_loaded_in_the_process_after(cache, caplog):
    """PyMC's CustomDist makes a class at run time (model/build.py's serial-ridge prior). Once
    an instance was pickled, copyreg caches `__slotnames__` on its class, which the class's
    description used to include: the entry written and the caller's class then differed, and
    every process compiled the function again ("unreadable ... no class CustomDist_rate")."""

    def custom_model():
        with pm.Model() as model:
            mu = pm.Data("mu", 2.0)
            pm.CustomDist("rate", mu, dist=lambda mu, size: pm.LogNormal.dist(mu, 0.5, size=size))
        return model

    def draws(model):
        return pm.sample_prior_predictive(draws=50, model=model, random_seed=7, backend="c")

    want = draws(custom_model())["prior"]["rate"].to_numpy()
    for _ in range(2):  # compiled (and written), then loaded
        with compiled.through_cache():
            got = draws(custom_model())["prior"]["rate"].to_numpy()
        np.testing.assert_array_equal(got, want)
    assert "unreadable" not in caplog.text
    assert len(cache) == 2  # the plain draw's compile and the first cached one


def test_a_graph_whose_rewrites_removed_a_custom_distribution_is_loaded(cache, caplog):
    """nutpie's shape function (nutpie/compile_pymc.py `_compute_shapes`): the shape of a
    CustomDist's draw. The rewrites remove the CustomDist's node (the shape is its size),
    but the FunctionGraph kept its output in `clients`, so the written entry held the
    class made at run time, which the caller's graph does not have: it was compiled again in
    every process, and in the one that wrote it ("unreadable ... no class CustomDist_rate")."""
    with pm.Model():
        mu = pm.Data("mu", 2.0)
        rate = pm.CustomDist(
            "rate", mu, dist=lambda mu, size: pm.LogNormal.dist(mu, 0.5, size=size)
        )

    def shape():
        f = compiled.function([], [rate.shape], mode="FAST_COMPILE")
        return f()[0]

    for _ in range(2):  # compiled (written, then loaded as the next process loads it), loaded
        assert shape().tolist() == []
    assert "unreadable" not in caplog.text
    assert len(cache) == 1


def test_ops_with_an_inner_graph_are_keyed_by_it(cache):
    """PyTensor's logsumexp is an op with an inner graph, whose variables pickle with names
    that differ at each build: the key is its graph's text, so the same graph is loaded."""
    from pytensor.tensor.special import logsumexp

    x = np.arange(6.0).reshape(2, 3)
    for _ in range(2):
        m = pt.matrix("m")
        f = compiled.function([m], logsumexp(m, axis=1), mode="FAST_RUN")
        np.testing.assert_allclose(f(x), np.log(np.exp(x).sum(axis=1)))
    assert len(cache) == 1
    m = pt.matrix("m")
    compiled.function([m], logsumexp(m, axis=0), mode="FAST_RUN")  # another axis: compiled
    assert len(cache) == 2


def test_the_least_recently_used_entries_are_removed_beyond_the_limit(cache, monkeypatch):
    monkeypatch.setattr(compiled, "MAX_ENTRIES", 2)
    for scale in (1.0, 2.0, 3.0):
        compiled.function(*graph(scale)[:2], mode="FAST_RUN")
    assert len(list(compiled._folder().glob("*.pkl"))) == 2
