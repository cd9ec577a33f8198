"""Where the time of one estimate goes: stage timings of the February 11 case at default
settings, in this process, plus peak memory. Prints a table and writes benchmarks/results.json.

    make bench            (or: .venv/bin/python benchmarks/run.py)

Figures on a shared machine are noisy: compare stages measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "data" / "cases" / "february-11-plant"


def stages() -> dict[str, float]:
    times: dict[str, float] = {}
    t = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name] = now - t
        t = now

    import pymc as pm

    import model
    from model.build import build_model, readings
    from model.fit import Sampler, SamplerSettings, fit
    from model.priors import resolve_priors
    from model.report import write_report
    from model.summary import summarize

    mark("import")
    case = model.load_case(CASE)
    priors = resolve_priors(case)
    mark("load evidence and priors")
    m = build_model(case, priors)
    mark("build model")
    settings = SamplerSettings()
    sampler = Sampler(m, settings)
    mark("compile (nutpie, numba)")
    sampler.sample(readings(case, priors["elasticity"]).weights, settings.seed)
    mark("sample mixture (4 x 1000 + 1000 tune)")
    with m:
        pm.sample_prior_predictive(
            draws=settings.prior_draws, random_seed=1, compile_kwargs={"mode": "FAST_RUN"}
        )
    mark("prior draws")
    idata = fit(case, priors, settings)
    mark("whole fit() again (compile, mixture, readings, scenarios, prior)")
    summary = summarize(idata)
    mark("summary and diagnostics")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_report(idata, summary, tmp)
        times["posterior.nc MB"] = (folder / "posterior.nc").stat().st_size / 1e6
    mark("write report")
    times["peak RSS GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    result = stages()
    width = max(map(len, result))
    for name, value in result.items():
        unit = "" if name.endswith(("MB", "GiB")) else " s"
        print(f"{name:<{width}}  {value:8.2f}{unit}")
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
