"""Where a programme's sampling time goes: the log-density's cost per evaluation and the
sampler's efficiency per variable, for a synthetic programme (benchmarks/synthetic.py).

    .venv/bin/python benchmarks/profile_plants.py --plants 50

Prints the microseconds per log-density + gradient evaluation (PyTensor's C backend, the
costliest nodes from its profiler), then one nutpie fit at capest's default settings
(the mass-matrix adaptation can be changed with --adaptation): divergences, leapfrog steps
per draw, time per gradient, the programme totals' bulk ESS per 1,000 gradients, bulk ESS of
each free variable (the minimum over plants), and where the divergent draws sit in the pooled sds.
Figures for one run on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from synthetic import PROGRAMME_TOTALS, write_programme  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plants", type=int, default=50)
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument(
        "--adaptation", help="nutpie: draw_diag, diag, low_rank, ... (default: capest's)"
    )
    args = parser.parse_args()

    import arviz as az
    import nutpie
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    from model.programme import build_programme_model, load_programme, resolve_programme_priors
    from model.sampler import SamplerSettings

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_programme(Path(tmp) / "programme", plants=args.plants, months=120, rows=12)
        programme = load_programme(folder)
        priors, hyper = resolve_programme_priors(programme)
        model, layout = build_programme_model(programme, priors, hyper)
    print(f"{args.plants} plants, {'stacked' if layout else 'nested'} model")

    logp = model.logp()
    outputs = [logp, *pt.grad(logp, model.value_vars)]
    point = model.initial_point()
    values = [point[v.name] for v in model.value_vars]
    mode = Mode(linker="cvm", optimizer="fast_run")
    fn = pytensor.function(model.value_vars, outputs, mode=mode)
    start = time.perf_counter()
    for _ in range(args.evaluations):
        fn(*values)
    per_call = (time.perf_counter() - start) / args.evaluations
    print(f"log-density + gradient: {per_call * 1e6:.0f} us per evaluation (C backend)")
    # the same function timed node by node (slower: the shares matter, not the total)
    pytensor.config.profiling__time_thunks = True
    profiled = pytensor.function(model.value_vars, outputs, mode=mode, profile=True)
    for _ in range(args.evaluations):
        profiled(*values)
    costs: dict[str, float] = {}
    for key, seconds in profiled.profile.apply_time.items():
        op = str(key[-1].op if isinstance(key, tuple) else key.op)[:60]
        costs[op] = costs.get(op, 0.0) + seconds
    total = sum(costs.values())
    for op, seconds in sorted(costs.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {seconds / total:6.1%}  {op}")

    settings = SamplerSettings()
    args.adaptation = args.adaptation or settings.adaptation
    free = [v.name for v in model.free_RVs]
    compiled = nutpie.compile_pymc_model(model, backend="numba", var_names=free + PROGRAMME_TOTALS)
    start = time.perf_counter()
    trace = nutpie.sample(
        compiled,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=settings.cores,
        seed=settings.seed,
        target_accept=settings.target_accept,
        progress_bar=False,
        adaptation=args.adaptation,
    )
    seconds = time.perf_counter() - start
    stats = trace["sample_stats"]
    diverging = stats["diverging"].to_numpy()
    steps = int(stats["n_steps"].sum())
    print(
        f"nutpie ({args.adaptation}): {seconds:.1f} s sampling, {int(diverging.sum())} "
        f"divergences, {float(stats['n_steps'].mean()):.0f} leapfrog steps per draw, "
        f"{1e6 * seconds / steps:.0f} us per gradient"
    )
    post = trace["posterior"].to_dataset()
    ess = az.ess(post, method="bulk")
    least = min(float(ess[v]) for v in PROGRAMME_TOTALS)
    print(
        f"  programme totals: lowest bulk ESS {least:.0f}, "
        f"{1e3 * least / steps:.1f} per 1k gradients"
    )
    for name in sorted(free, key=lambda v: float(ess[v].min())):
        print(f"  bulk ESS {float(ess[name].min()):7.0f}  {name}")
    for name in ("elasticity_plant_sd", "ramp_plant_sd"):
        v = post[name].to_numpy()
        where = f"{np.median(v[diverging]):.3g}" if diverging.any() else "-"
        print(f"  {name}: median {np.median(v):.3g}, in divergent draws {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
