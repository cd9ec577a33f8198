"""Distribution on Dask (model/distribute.py): wall time in one process (no cluster, the code
before Dask), on a local cluster of 1 worker and of 2 workers, and the scaling efficiency
t(in process) / (2 t(2 workers)) (1.0 = perfect).

    .venv/bin/python benchmarks/distribute.py [--cases 3] [--sims 12] [--draws 100]

Sections: `capest report --all` on synthetic cases (benchmarks/synthetic.py, 36 months, 12
rows) with few draws, each a fresh process: `--jobs 1` (one after another in the command's
process), `--scheduler` of a LocalCluster of one single-thread worker started here, and
`--jobs 2` (a local cluster of two); and a calibration (`calibrate` at --sims simulations of the
February 11 case) in one process, on one worker and on two. Every worker compiles its model
once, so the worker figures include one compile per worker. The machine is shared and noisy:
compare only figures of one run. Prints a table and writes benchmarks/distribute.json.
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

SETUPS = ("in process", "1 worker", "2 workers")

CALIBRATE = """
import sys
from distributed import Client, LocalCluster
from model import load_case
from model.calibration import calibrate
from model.sampler import SamplerSettings
from model.priors import resolve_priors
workers, sims, draws = map(int, sys.argv[1:4])
case = load_case("data/cases/february-11-plant")
settings = SamplerSettings(draws=draws, tune=draws, chains=2, seed=1)
priors = resolve_priors(case)
if workers == 0:  # in this process, no cluster
    calibrate(case, priors, sims=sims, seed=1, settings=settings)
else:
    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        calibrate(case, priors, sims=sims, seed=1, settings=settings, client=client)
"""

ONE_WORKER = """
import sys
from distributed import LocalCluster
with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                  dashboard_address=":0") as cluster:
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
"""


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode not in (0, 1):  # 1: a check failed at few draws, still a timing
        raise RuntimeError(f"{cmd} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def report_all(cases: Path, reports: Path, setup: str, few: list[str]) -> float:
    cmd = [sys.executable, "-m", "model.cli", "report", "--all", "--cases-dir", str(cases),
           "--reports-dir", str(reports), *few]  # fmt: skip
    if setup != "1 worker":
        return timed([*cmd, "--jobs", "1" if setup == "in process" else "2"])
    # a one-worker local cluster, started before the clock (as a user's scheduler would be)
    one = subprocess.Popen([sys.executable, "-c", ONE_WORKER], cwd=ROOT, text=True,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    try:
        address = one.stdout.readline().strip()
        return timed([*cmd, "--scheduler", address])
    finally:
        one.stdin.close()
        one.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--sims", type=int, default=12)
    parser.add_argument("--draws", type=int, default=100)
    args = parser.parse_args()
    rows = []
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cases = Path(tmp) / "cases"
        for i in range(args.cases):
            write_case(cases / f"bench-{i:02d}", months=36, rows=12, seed=i)
        few = ["--draws", str(args.draws), "--tune", str(args.draws), "--chains", "2"]
        for k, setup in enumerate(SETUPS):
            seconds = report_all(cases, Path(tmp) / f"reports-{k}", setup, few)
            rows.append({"what": f"report --all, {args.cases} cases", "setup": setup,
                         "seconds": seconds, "load": os.getloadavg()[0]})  # fmt: skip
            print(rows[-1], flush=True)
    for workers, setup in enumerate(SETUPS):
        cmd = [sys.executable, "-c", CALIBRATE, str(workers), str(args.sims), str(args.draws)]
        rows.append({"what": f"calibration, {args.sims} simulations", "setup": setup,
                     "seconds": timed(cmd), "load": os.getloadavg()[0]})  # fmt: skip
        print(rows[-1], flush=True)
    print("\n| what | in process | 1 worker | 2 workers | speed-up (2 workers / in process) "
          "| efficiency |\n|---|---|---|---|---|---|")  # fmt: skip
    for i in range(0, len(rows), len(SETUPS)):
        here, one, two = (r["seconds"] for r in rows[i : i + len(SETUPS)])
        speedup = here / two
        print(f"| {rows[i]['what']} | {here:.0f} s | {one:.0f} s | {two:.0f} s | "
              f"{speedup:.2f}x | {speedup / 2:.0%} |")  # fmt: skip
    record = {"cores": os.cpu_count(), "load_at_start": load_at_start,
              "load_at_end": os.getloadavg(), "rows": rows, **vars(args)}  # fmt: skip
    (ROOT / "benchmarks" / "distribute.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
