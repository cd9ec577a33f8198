"""Probe for issue #19's JAX direction: NumPyro's NUTS on a capest model, its log density and
gradient compiled to JAX, against the project's nutpie path on the same model in the same
process type. Not part of capest: JAX and NumPyro are not dependencies, so this runs in a
venv of its own (benchmarks/README.md, "NumPyro with PyTensor's gradient"):

    .venv/bin/python -m venv /tmp/jv && /tmp/jv/bin/pip install -q uv
    /tmp/jv/bin/uv pip install -q --python /tmp/jv/bin/python -r requirements.lock \
        jax==0.12.0.1 numpyro==0.22.0
    PYTHONPATH=$PWD /tmp/jv/bin/python benchmarks/numpyro_probe.py --sampler numpyro \
        --jax-cache /tmp/jaxcache [--gradient jax] [--programme FOLDER --target-accept 0.95]

`--gradient jax` is what PyMC's own NumPyro route does (JAX differentiates the jaxified log
density); the default, `pytensor`, gives JAX PyTensor's symbolic gradient through a
custom_vjp. Chains run in parallel on 4 virtual host devices (`pmap`). Each run samples twice
in the process (seeds 1, 2): the first run's time holds the sampler's compile, the second's
does not. Prints the stages' seconds, divergences, leapfrog steps, the headline quantities'
2.5/50/97.5% quantiles, and the lowest bulk ESS and worst R-hat over the unconstrained
coordinates (ArviZ).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

T0 = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sampler", choices=["numpyro", "nutpie"], default="numpyro")
    parser.add_argument("--gradient", choices=["pytensor", "jax"], default="pytensor")
    parser.add_argument("--jax-cache", default=None, help="JAX's persistent compilation cache")
    parser.add_argument("--programme", default=None, help="a programme folder, else February 11")
    parser.add_argument("--draws", type=int, default=1000, help="and as many tuning draws")
    parser.add_argument("--target-accept", type=float, default=0.9)
    parser.add_argument("--constant", default="", help="--refits: pm.Data kept as constants")
    parser.add_argument("--refits", type=int, default=0,
                        help="then this many fits with one row left out (row_weight), "
                        "through one compiled sampler, pm.Data passed as arguments")  # fmt: skip
    args = parser.parse_args()
    if args.sampler == "numpyro":  # before JAX starts: one host device per chain
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    model, imported = _model(args.programme)
    stages = {"import": imported}
    names = ["rate_before", "rate_after", "capacity_multiplier"]
    if args.refits:
        _refits(model, args, stages)
        print("stages (s):", {k: round(v, 2) for k, v in stages.items()})
        return
    runs = (_numpyro if args.sampler == "numpyro" else _nutpie)(model, names, args, stages)
    print("stages (s):", {k: round(v, 2) for k, v in stages.items()})
    for seed, (x, draws, diverging, steps) in runs.items():
        ess, rhat = _diagnostics(x)
        print(f"seed {seed}: divergences {int(diverging)}, mean leapfrog steps {steps:.1f}, "
              f"lowest bulk ESS {ess:.0f}, worst R-hat {rhat:.4f}")  # fmt: skip
        for name, v in zip(names, draws, strict=True):
            q = np.round(np.quantile(v, [0.025, 0.5, 0.975]), 2)
            print(f"  {name}: {q[1]} ({q[0]}-{q[2]})")
    print(f"whole process {time.perf_counter() - T0:.1f} s")


def _model(programme: str | None):
    from model import load_case
    from model.build import build
    from model.priors import resolve_priors

    imported = time.perf_counter() - T0
    if programme:
        from model.programme import (
            build_programme_model,
            load_programme,
            resolve_programme_priors,
        )

        loaded = load_programme(programme)
        return build_programme_model(loaded, *resolve_programme_priors(loaded))[0], imported
    case = load_case(Path(__file__).parents[1] / "data" / "cases" / "february-11-plant")
    return build(case, resolve_priors(case))[0], imported  # the main fit's data: pm.Data


def _numpyro(model, names, args, stages) -> dict:
    import jax
    from numpyro.infer import MCMC, NUTS

    start = time.perf_counter()
    density, quantities, inits = _jaxified(model, names, {}, args)
    stages["PyTensor graphs to JAX"] = time.perf_counter() - start

    if args.gradient == "pytensor":

        @jax.custom_vjp
        def potential(x):
            return -density(x)[0]

        def forward(x):
            value, gradient = density(x)
            return -value, gradient

        potential.defvjp(forward, lambda gradient, g: (-g * gradient,))
    else:

        def potential(x):
            return -density(x)[0]

    runs = {}
    for seed, stage in ((1, "sampling, with the sampler's compile"), (2, "sampling")):
        start = time.perf_counter()
        kernel = NUTS(potential_fn=potential, target_accept_prob=args.target_accept)
        mcmc = MCMC(kernel, num_warmup=args.draws, num_samples=args.draws, num_chains=4,
                    chain_method="parallel", progress_bar=False)  # fmt: skip
        mcmc.run(jax.random.PRNGKey(seed), init_params=inits,
                 extra_fields=("diverging", "num_steps"))  # fmt: skip
        draws = np.asarray(mcmc.get_samples(group_by_chain=True))
        stages[stage] = time.perf_counter() - start
        extra = mcmc.get_extra_fields(group_by_chain=True)
        values = [np.asarray(v) for v in jax.jit(jax.vmap(jax.vmap(quantities)))(draws)]
        steps = float(np.asarray(extra["num_steps"]).mean())
        runs[seed] = (draws, values, np.asarray(extra["diverging"]).sum(), steps)
    return runs


def _nutpie(model, names, args, stages) -> dict:
    from model.sampler import Sampler

    start = time.perf_counter()
    sampler = Sampler(model, _settings(args))
    stages["compile (nutpie, the project's caches)"] = time.perf_counter() - start
    runs = {}
    for seed, stage in ((1, "sampling, first"), (2, "sampling")):
        start = time.perf_counter()
        tree = sampler._sample(None, seed, {}, keep_start=True)  # the model's own pm.Data
        stages[stage] = time.perf_counter() - start
        u = tree["unconstrained_posterior"].to_dataset()
        chains, draws = u.sizes["chain"], u.sizes["draw"]
        x = np.concatenate([u[v].to_numpy().reshape(chains, draws, -1) for v in u], axis=2)
        values = [tree["posterior"][n].to_numpy() for n in names]
        stats = tree["sample_stats"]
        steps = float(stats["n_steps"].mean())
        runs[seed] = (x, values, stats["diverging"].to_numpy().sum(), steps)
    return runs


def _refits(model, args, stages) -> None:
    """One sampler, compiled once, sampling the main fit and then `args.refits` fits with one
    row left out, each from the same jittered starts and with its own adaptation: for NumPyro,
    the model's pm.Data (but the `--constant` ones) are arguments of the jitted sampler (a
    refit is new data, not a new compile); for nutpie, the project's Sampler (`with_data`)."""
    data = {d.name: np.asarray(d.get_value()) for d in model.data_vars}
    rows = len(data["row_weight"])
    fits = [dict(data)]
    for i in range(args.refits):
        fits.append(data | {"row_weight": np.where(np.arange(rows) == i % rows, 0.0, 1.0)})
    if args.sampler == "nutpie":
        from model.sampler import Sampler

        start = time.perf_counter()
        sampler = Sampler(model, _settings(args))
        stages["compile"] = time.perf_counter() - start
        for k, values in enumerate(fits):
            start = time.perf_counter()
            tree = sampler._sample(None, k + 1, {"row_weight": values["row_weight"]})
            stages[f"fit {k}"] = time.perf_counter() - start
            _say(k, tree["posterior"]["rate_after"].to_numpy())
        return
    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc

    start = time.perf_counter()
    # what a refit changes is an argument; the rest (`--constant` names) is folded into the
    # program as constants
    constant = set(args.constant.split(",")) if args.constant else set()
    symbols = {d: d.type(name=d.name) for d in model.data_vars if d.name not in constant}
    density, rate_after, inits = _jaxified(model, ["rate_after"], symbols, args)
    stages["PyTensor graphs to JAX"] = time.perf_counter() - start

    @jax.custom_vjp
    def logp_of(x, values):
        return density(x, *values)[0]

    def forward(x, values):
        value, gradient = density(x, *values)
        return value, (gradient, values)

    def backward(saved, g):
        gradient, values = saved
        return g * gradient, jax.tree.map(jnp.zeros_like, values)

    logp_of.defvjp(forward, backward)
    # numpyro's functional NUTS, jitted by us with the data as arguments (MCMC would close
    # over them: every refit a new compile)
    init_kernel, sample_kernel = hmc(potential_fn_gen=lambda *v: lambda x: -logp_of(x, v))
    total = 2 * args.draws

    def chain(key, x0, values):
        state = init_kernel(x0, args.draws, target_accept_prob=args.target_accept,
                            model_args=values, rng_key=key)  # fmt: skip

        def step(state, _):
            state = sample_kernel(state, model_args=values)
            return state, (state.z, state.diverging, state.num_steps)

        _, kept = jax.lax.scan(step, state, None, length=total)
        return jax.tree.map(lambda a: a[args.draws :], kept)

    run = jax.pmap(chain, in_axes=(0, 0, None))
    for k, values in enumerate(fits):
        start = time.perf_counter()
        arrays = tuple(jnp.asarray(values[d.name]) for d in symbols)
        draws, diverging, steps = run(jax.random.split(jax.random.PRNGKey(k + 1), 4), inits,
                                      arrays)  # fmt: skip
        draws = np.asarray(draws)
        stages[f"fit {k}"] = time.perf_counter() - start
        of_draw = jax.jit(jax.vmap(jax.vmap(lambda x, a=arrays: rate_after(x, *a)[0])))
        _say(k, np.asarray(of_draw(draws)))
        print(f"  divergences {int(np.sum(diverging))}, mean steps {float(np.mean(steps)):.1f}, "
              f"lowest bulk ESS {_diagnostics(draws)[0]:.0f}")  # fmt: skip


def _settings(args):
    from model.sampler import SamplerSettings

    settings = SamplerSettings(draws=args.draws, tune=args.draws)
    return dataclasses.replace(settings, target_accept=args.target_accept)


def _jaxified(model, names: list[str], symbols: dict, args):
    """JAX functions of the model's unconstrained point (and of the pm.Data in `symbols`, as
    further arguments; the rest are constants): its log density with PyTensor's symbolic
    gradient, and the quantities `names`; and 4 chains' starts, PyMC's jitter of its initial
    point. Sets JAX to float64 (nutpie's JAX backend needed it) and its persistent cache."""
    import jax
    import pytensor.tensor as pt
    from pymc.pytensorf import join_nonshared_inputs
    from pymc.sampling.jax import get_jaxified_graph
    from pytensor.graph.replace import graph_replace

    jax.config.update("jax_enable_x64", True)
    if args.jax_cache:
        jax.config.update("jax_compilation_cache_dir", args.jax_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    point = model.initial_point()
    logp = graph_replace(model.logp(jacobian=True), symbols, strict=False)
    grad = pt.concatenate([g.ravel() for g in pt.grad(logp, model.value_vars)])
    [logp, grad], x = join_nonshared_inputs(point, [logp, grad], model.value_vars)
    density = get_jaxified_graph(inputs=[x, *symbols.values()], outputs=[logp, grad])
    wanted = model.replace_rvs_by_values([model[n] for n in names])
    wanted = [graph_replace(w, symbols, strict=False) for w in wanted]
    wanted, y = join_nonshared_inputs(point, wanted, model.value_vars)
    quantities = get_jaxified_graph(inputs=[y, *symbols.values()], outputs=wanted)
    x0 = np.concatenate([np.asarray(point[v.name]).ravel() for v in model.value_vars])
    inits = x0 + np.random.default_rng(1).uniform(-1, 1, size=(4, x0.size))
    return density, quantities, jax.numpy.asarray(inits)


def _say(k: int, rate_after) -> None:
    q = np.round(np.quantile(rate_after, [0.025, 0.5, 0.975]), 2)
    print(f"fit {k}: rate_after {q[1]} ({q[0]}-{q[2]})")


def _diagnostics(x) -> tuple[float, float]:
    """Lowest bulk ESS and worst R-hat over the unconstrained coordinates (chain, draw, k)."""
    import arviz_stats as azs
    import xarray as xr

    da = xr.DataArray(x, dims=("chain", "draw", "k"))
    ess = azs.ess(da, method="bulk", sample_dims=["chain", "draw"]).to_numpy()
    rhat = azs.rhat(da, sample_dims=["chain", "draw"]).to_numpy()
    return float(np.min(ess)), float(np.max(rhat))


if __name__ == "__main__":
    main()
