"""A rerun after one serial sighting more (issue #19): what it compiles and how long it takes.

Writes the slow tier's serials-only case (10 serials of about 300 on one date, SYNTHETIC:
tests/test_serials.py), estimates it, adds a sighting on the same date and estimates again,
each `capest estimate --no-conditional` in a fresh process. Prints each run's wall time and
the fit's stage timings (posterior.nc's `timings`: "compile" is nutpie's model, "what to
measure next: compile" the value-of-information refits'). With the sightings as pm.Data
(model/serials.py `SerialData`) the second run loads both from the disk caches; with them as
constants it compiled both again. benchmarks/README.md (twenty-first session) has a run.

    .venv/bin/python benchmarks/serial_rerun.py [folder] [serial]

`serial` (default 250) is the added sighting's: with constants, a value not run before on
this machine is a cold compile, one run before a warm one.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def estimate(case: Path, reports: Path) -> dict:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "model.cli", "estimate", str(case), "--no-conditional"]
    done = subprocess.run([*cmd, "--reports-dir", str(reports)], cwd=ROOT, capture_output=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: a check failed, the timings are still the run's
        raise SystemExit(done.stderr.decode()[-2000:])
    import xarray as xr

    latest = reports / "serials-only" / "latest"
    with xr.open_datatree(latest / "posterior.nc", engine="netcdf4") as tree:
        timings = json.loads(tree.attrs["timings"])
    return {"wall": round(wall, 1)} | {k: v for k, v in timings.items() if "count" not in k}


def main() -> int:
    import numpy as np

    from tests.test_serials import SEED, _serial_row, serial_only_case

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    rng = np.random.default_rng(SEED)  # the slow tier's 10-serials-of-300 case
    serials = np.sort(rng.choice(np.arange(1, 301), size=10, replace=False))
    case = serial_only_case(folder / "case", serials, rate_median=15.0)
    print("first run", estimate(case, folder / "reports"), flush=True)
    with (case / "evidence.csv").open("a") as f:
        added = int(sys.argv[2]) if len(sys.argv) > 2 else 250
        f.write(_serial_row("serial-more", added, "2024-12-31") + "\n")
    print("a sighting more", estimate(case, folder / "reports"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
