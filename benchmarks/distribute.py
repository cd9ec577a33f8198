"""Distribution on Dask (model/distribute.py): wall time on 1 and 2 local workers, and the
scaling efficiency t(1) / (2 t(2)) (1.0 = perfect).

    .venv/bin/python benchmarks/distribute.py [--cases 4] [--sims 8] [--draws 200]

Sections: `capest report --all` on synthetic cases (benchmarks/synthetic.py, 36 months, 12
rows) with few draws, each a fresh process, `--jobs 1` (one after another in one process, no
cluster) against `--jobs 2` (a local cluster of two single-thread workers); and a small
calibration (`calibrate` at --sims simulations, the February 11 case) with no cluster against a
local cluster of two workers. Every worker compiles its model once, so the 2-worker figures
include one compile per worker. The machine is shared and noisy: compare only figures of one
run. Prints a table and writes benchmarks/distribute.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from synthetic import write_case  # noqa: E402

CALIBRATE = """
import sys, time
from model import load_case
from model.calibration import calibrate
from model.distribute import cluster
from model.sampler import SamplerSettings
from model.priors import resolve_priors
workers, sims, draws = map(int, sys.argv[1:4])
case = load_case("data/cases/february-11-plant")
settings = SamplerSettings(draws=draws, tune=draws, chains=2, seed=1)
with cluster(None, workers, sims) as client:
    calibrate(case, resolve_priors(case), sims=sims, seed=1, settings=settings, client=client)
"""


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode not in (0, 1):  # 1: a check failed at few draws, still a timing
        raise RuntimeError(f"{cmd} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--sims", type=int, default=8)
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = Path(tmp) / "cases"
        for i in range(args.cases):
            write_case(cases / f"bench-{i:02d}", months=36, rows=12, seed=i)
        few = ["--draws", str(args.draws), "--tune", str(args.draws), "--chains", "2"]
        for workers in (1, 2):
            seconds = timed(
                [sys.executable, "-m", "model.cli", "report", "--all", "--cases-dir", str(cases),
                 "--reports-dir", str(Path(tmp) / f"reports-{workers}"), "--jobs", str(workers),
                 *few]
            )  # fmt: skip
            rows.append({"what": f"report --all, {args.cases} cases", "workers": workers,
                         "seconds": seconds})  # fmt: skip
            print(rows[-1], flush=True)
    for workers in (1, 2):
        cmd = [sys.executable, "-c", CALIBRATE, str(workers), str(args.sims), str(args.draws)]
        rows.append({"what": f"calibration, {args.sims} simulations", "workers": workers,
                     "seconds": timed(cmd)})  # fmt: skip
        print(rows[-1], flush=True)
    print("\n| what | 1 worker | 2 workers | speed-up | efficiency |\n|---|---|---|---|---|")
    for one, two in zip(rows[::2], rows[1::2], strict=True):
        speedup = one["seconds"] / two["seconds"]
        print(f"| {one['what']} | {one['seconds']:.0f} s | {two['seconds']:.0f} s | "
              f"{speedup:.2f}x | {speedup / 2:.0%} |")  # fmt: skip
    record = {"cores": os.cpu_count(), "load_at_end": os.getloadavg(), "rows": rows, **vars(args)}
    (ROOT / "benchmarks" / "distribute.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
