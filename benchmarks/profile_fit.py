"""Where one case's or programme's main fit spends its sampling: free dimensions per plant (the
latent monthly use apart), the log-density's cost, and the sampler's work and efficiency.

    .venv/bin/python benchmarks/profile_fit.py FOLDER [--evaluations 2000]

FOLDER is a case or a programme folder (tests/test_programme.py's synthetic programme:
`python -c "from pathlib import Path; from tests.test_programme import write_programme;
write_programme(Path('/tmp/programme'))"`). One nutpie fit at capest's default settings, as
`capest estimate`'s main fit. Prints what does not depend on how busy the machine is (free
dimensions, leapfrog steps, ESS per 1,000 gradients) next to what does (seconds; the CPU
seconds of the process, all its threads, are steadier than the wall clock on a shared machine).
Run it with another checkout's `model/` on PYTHONPATH to compare two versions of the model.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # PYTHONPATH (another checkout's model/) comes first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--evaluations", type=int, default=2000)
    args = parser.parse_args()

    import arviz as az
    import nutpie
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    import model
    from model.build import build_model
    from model.priors import resolve_priors
    from model.programme import (
        build_programme_model,
        is_programme,
        load_programme,
        resolve_programme_priors,
    )
    from model.sampler import SamplerSettings

    print(f"model/ from {Path(model.__file__).parent}")
    if is_programme(args.folder):
        programme = load_programme(args.folder)
        priors, hyper = resolve_programme_priors(programme)
        pm_model, layout = build_programme_model(programme, priors, hyper)
        print(f"programme, {'stacked' if layout else 'nested'} model")
    else:
        case = model.load_case(args.folder)
        pm_model = build_model(case, resolve_priors(case))
    sizes: Counter[str] = Counter()
    latent: Counter[str] = Counter()
    point = pm_model.initial_point()
    for v in pm_model.value_vars:
        owner, _, name = v.name.rpartition("::")
        size = int(np.size(point[v.name]))
        (latent if "use_z" in name else sizes)[owner or "(case)"] += size
    for owner in sorted(set(sizes) | set(latent)):
        print(f"  {owner:20s} {sizes[owner]:4d} free dims + {latent[owner]:4d} latent use (use_z)")
    print(f"  total {sum(sizes.values()) + sum(latent.values())} free dims")

    logp = pm_model.logp()
    fn = pytensor.function(
        pm_model.value_vars,
        [logp, *pt.grad(logp, pm_model.value_vars)],
        mode=Mode(linker="cvm", optimizer="fast_run"),
    )
    values = [point[v.name] for v in pm_model.value_vars]
    cpu = time.process_time()
    for _ in range(args.evaluations):
        fn(*values)
    per_call = (time.process_time() - cpu) / args.evaluations
    print(f"log-density + gradient: {per_call * 1e6:.0f} us CPU per evaluation (C backend)")

    settings = SamplerSettings()
    wall = time.perf_counter()
    compiled = nutpie.compile_pymc_model(pm_model, backend="numba")
    print(f"nutpie compile: {time.perf_counter() - wall:.1f} s")
    wall, cpu = time.perf_counter(), time.process_time()
    trace = nutpie.sample(
        compiled,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=settings.cores,
        seed=settings.seed,
        target_accept=settings.target_accept,
        progress_bar=False,
        adaptation=settings.adaptation,
        save_warmup=True,  # to count the tuning's gradients too
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = trace["sample_stats"]
    steps = int(stats["n_steps"].sum())  # kept draws only
    every = steps + int(trace["warmup_sample_stats"]["n_steps"].sum())
    print(
        f"sampling: {wall:.1f} s wall, {cpu:.1f} s CPU; {int(stats['diverging'].sum())} "
        f"divergences; {float(stats['n_steps'].mean()):.1f} leapfrog steps per draw, "
        f"tree depth {float(stats['depth'].mean()):.2f}, step size "
        f"{float(stats['step_size'].mean()):.3f}; {every} gradients with tuning, "
        f"{1e6 * cpu / every:.0f} us CPU each"
    )
    post = trace["posterior"].to_dataset()
    ess = az.ess(post, method="bulk")
    free = [v.name for v in pm_model.free_RVs if "use_z" not in v.name]
    least = min(free, key=lambda v: float(ess[v].min()))
    low = float(ess[least].min())
    print(f"lowest bulk ESS of a free variable (not use_z): {low:.0f} ({least}), "
          f"{1e3 * low / steps:.1f} per 1k gradients")  # fmt: skip
    for name in [n for n in ("rate_before", "rate_after") if n in post]:
        print(f"  bulk ESS {name}: {float(ess[name]):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
