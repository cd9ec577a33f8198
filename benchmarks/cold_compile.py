"""What a model costs to compile on a machine whose caches do not hold it (issue #19, CI time).

    .venv/bin/python benchmarks/cold_compile.py CACHES plants
    .venv/bin/python benchmarks/cold_compile.py CACHES programme

CACHES is the PyTensor compile folder to use (`base_compiledir`): an empty one, or a copy of
the caches as the default test tier leaves them (what the slow tier starts from in a cold CI).
`plants`: two SYNTHETIC plants of tests/test_indicators.py (shipments, then workforce) in one
process, each nutpie's compile and the draws' expansion's (`Sampler`, `Density.warm`), so the
second shows what is per model and not per process. `programme`: `capest estimate` of the
SYNTHETIC three-plant programme of tests/test_programme.py at 2 chains x 100 draws, and its
fit's stage timings (posterior.nc's `timings`). Run it twice on one folder for the warm figures.
benchmarks/README.md (twenty-second session) has a run.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plants(folder: Path) -> None:
    import numpy as np

    from model import load_case
    from model.build import build_model
    from model.moment_match import Density
    from model.priors import resolve_priors
    from model.sampler import Sampler, SamplerSettings, stored_names
    from tests import test_indicators as ti

    (folder / "a").mkdir(), (folder / "b").mkdir()
    made = {
        "shipments": ti._shipment_case(folder / "a", ti.SHIPMENT_PRIORS, np.random.default_rng(4)),
        "workforce": ti._workforce_case(folder / "b", np.random.default_rng(4)),
    }
    for name, (case, _) in made.items():
        loaded = load_case(case)
        model = build_model(loaded, resolve_priors(loaded))
        start = time.perf_counter()
        Sampler(model, SamplerSettings())
        compiled = time.perf_counter()
        Density(model, stored_names(model)).warm(model, logp=False)
        done = time.perf_counter()
        print(f"{name}: nutpie {compiled - start:.1f} s, expansion {done - compiled:.1f} s")


def programme(folder: Path) -> None:
    import xarray as xr

    from model.cli import main
    from tests.test_programme import write_programme

    case = write_programme(folder / "programme")
    reports = folder / "reports"
    start = time.perf_counter()
    few = ["--chains", "2", "--draws", "100", "--tune", "100"]
    code = main(["estimate", str(case), "--reports-dir", str(reports), *few])
    wall = time.perf_counter() - start
    run = reports / "synthetic-programme" / "latest" / "posterior.nc"
    timings = json.loads(xr.open_datatree(run, engine="netcdf4").attrs["timings"])
    print(f"exit {code} (1: so few draws fail the ESS rule), {wall:.1f} s: {timings}")


if __name__ == "__main__":
    caches, what = sys.argv[1], sys.argv[2]
    # before PyTensor loads: its compile folder, and so every cache of ours under it
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"base_compiledir={caches}") if f)
    with tempfile.TemporaryDirectory() as tmp:
        {"plants": plants, "programme": programme}[what](Path(tmp))
