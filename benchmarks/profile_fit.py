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
`--plants a,b` fits only those plants of a programme (to find which plant makes the trees
long); `--geometry` also prints, per unconstrained coordinate, its posterior sd times the sd
of the log-density's gradient (about 1 for a Gaussian; far above 1 where a sharp feature,
such as the serials' walls, forces small steps) and how far the draws with the largest
energy errors sit from the rest (benchmarks/README.md: why the programme's trees saturate).
"""

from __future__ import annotations

import argparse
import dataclasses
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
    parser.add_argument("--plants", default="", help="comma-separated plants of a programme")
    parser.add_argument("--draws", type=int, help="default: capest's")
    parser.add_argument("--tune", type=int, help="default: capest's")
    parser.add_argument("--geometry", action="store_true")
    parser.add_argument("--adaptation", help="nutpie's mass matrix adaptation; default: capest's")
    parser.add_argument(
        "--ridge",
        choices=["as-built", "none", "largest", "max", "capped"],
        default="as-built",
        help="rate_before's coordinate with serial rows (build.ridge_rule): log(rate_before) "
        "(none), or less the largest serial's bound or the largest bound (serials.ridge_shift)",
    )
    parser.add_argument("--cap", type=float, help="serials.RIDGE_CAP for --ridge capped")
    parser.add_argument(
        "--unbounded-lag",
        action="store_true",
        help="--ridge max or capped without use_lag's bound (build.lag_transform), as first "
        "measured",
    )
    parser.add_argument("--seed", type=int, help="default: capest's")
    parser.add_argument("--target-accept", type=float, help="default: capest's")
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
    if args.ridge != "as-built":
        import model.build

        def rule(serials, priors):
            positive = priors["rate_before"].dist in model.build.POSITIVE_FAMILIES
            return None if serials is None or not positive or args.ridge == "none" else args.ridge

        model.build.ridge_rule = rule
    if args.unbounded_lag:
        import model.build

        model.build.lag_transform = lambda serials, rule: {}
    if args.cap is not None:
        import model.serials

        model.serials.RIDGE_CAP = args.cap
    print(f"serial ridge: {args.ridge}" + (f", cap {args.cap}" if args.cap is not None else "")
          + (", use_lag unbounded" if args.unbounded_lag else ""))  # fmt: skip
    if is_programme(args.folder):
        programme = load_programme(args.folder)
        if args.plants:
            keep = args.plants.split(",")
            plants = tuple(p for p in programme.plants if p.id in keep)
            programme = dataclasses.replace(programme, plants=plants)
            print(f"only {', '.join(p.id for p in plants)}")
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

    if args.evaluations:  # 0: skip (the C backend's compile takes a while)
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
    settings = dataclasses.replace(
        settings,
        draws=args.draws or settings.draws,
        tune=args.tune or settings.tune,
        adaptation=args.adaptation or settings.adaptation,
        seed=args.seed or settings.seed,
        target_accept=args.target_accept or settings.target_accept,
    )
    print(f"{settings.chains} chains, {settings.tune} tune + {settings.draws} draws, "
          f"adaptation {settings.adaptation}, target_accept {settings.target_accept}, "
          f"seed {settings.seed}")  # fmt: skip
    wall = time.perf_counter()
    from model.callbacks import compile_nutpie

    compiled = compile_nutpie(pm_model)  # as capest compiles: callbacks cached on disk
    print(f"nutpie compile: {time.perf_counter() - wall:.1f} s (capest's cache)")
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
        store_unconstrained=args.geometry,
        store_gradient=args.geometry,
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
    rhat = az.rhat(post[free])
    print(f"largest R-hat of a free variable: {max(float(rhat[v].max()) for v in free):.3f}")
    # The posterior itself, to compare candidates: a coordinate must not move it.
    shown = ("rate_before", "rate_after", "capacity_multiplier", "use_lag", "completion")
    for name in [n for n in post.data_vars if str(n).rpartition("::")[2] in shown]:
        lo, mid, hi = np.quantile(post[name], [0.025, 0.5, 0.975])
        print(f"  {name:35s} median {mid:8.3f}  95% {lo:8.3f}-{hi:8.3f}  bulk ESS "
              f"{float(ess[name]):.0f}")  # fmt: skip
    if args.geometry:
        geometry(stats)
    return 0


def geometry(stats) -> None:
    """Where the posterior is stiff: per coordinate, sd(draws) x sd(gradient) (1 for a
    Gaussian), and the shift, in sds, of the draws whose trajectories had the largest energy
    errors (the top fifth) from the others."""
    draws = stats["unconstrained_draw"]
    names = [str(n) for n in draws.coords[draws.dims[-1]].values]
    u = draws.to_numpy().reshape(-1, len(names))
    g = stats["gradient"].to_numpy().reshape(-1, len(names))
    error = np.abs(stats["max_energy_error"].to_numpy().ravel())
    high = error > np.quantile(error, 0.8)
    shift = (u[high].mean(0) - u[~high].mean(0)) / u.std(0)
    stiff = u.std(0) * g.std(0)
    diverging = stats["diverging"].to_numpy().ravel()
    where = (u[diverging].mean(0) - u.mean(0)) / u.std(0) if diverging.any() else 0 * shift
    print("coordinate                                     sd x grad sd   high-error shift"
          "   divergent draws' shift")  # fmt: skip
    for i in np.argsort(-stiff):
        print(f"  {names[i]:45s} {stiff[i]:10.1f} {shift[i]:+12.2f} {where[i]:+12.2f}")


if __name__ == "__main__":
    sys.exit(main())
