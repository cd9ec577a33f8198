"""Moment matching's batched log density (model/moment_match.py `Density`) under other
PyTensor modes: what its cold compile costs and what each call costs. A probe (issue #19, the
cold start), not part of capest.

A cold `capest estimate` of February 11 spends about 50 s in moment matching, nearly all of
it numba jitting the density's functions at their first call. Each mode runs in a fresh
process with empty PyTensor and numba caches (`--warm`: the same process twice, the second
timed) on 4,000 unconstrained points near the model's initial point:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/density_modes.py

Prints per mode: building the functions (graph rewrites, and C compiles for the C backend),
the first call of the log density and of the draws' outputs (numba jits there), then a call of
each once compiled; and the largest difference of its log densities from numba's.
benchmarks/README.md has a run.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODES = ["numba", "py_nofusion", "fast_compile", "c", "c_nofusion"]


def mode_of(name: str):
    from pytensor.compile.mode import Mode

    return {
        "numba": "FAST_RUN",  # numba in PyTensor 3: capest's choice
        "fast_compile": "FAST_COMPILE",  # Python implementations, few rewrites
        "py_nofusion": Mode(linker="py", optimizer="fast_run").excluding("fusion"),
        "c": Mode(linker="cvm", optimizer="fast_run"),
        "c_nofusion": Mode(linker="cvm", optimizer="fast_run").excluding("fusion"),
    }[name]


def one(name: str, out: Path) -> None:
    """Time one mode in this process; its log densities go to `out`."""
    sys.path.insert(0, str(ROOT))
    from model import compiled, load_case
    from model import moment_match as mm
    from model.build import build_model
    from model.fit import DENSITY_VARS
    from model.priors import resolve_priors

    case = load_case(ROOT / "data" / "cases" / "february-11-plant")
    model = build_model(case, resolve_priors(case))
    function = compiled.function

    def in_mode(inputs, outputs=None, mode=None, **kwargs):
        return function(inputs, outputs, mode=mode_of(name), **kwargs)

    compiled.function = in_mode
    times = {}
    start = time.perf_counter()
    density = mm.Density(model, DENSITY_VARS)
    times["build"] = time.perf_counter() - start
    point = model.initial_point()
    base = np.concatenate([np.ravel(point[v.name]) for v in density.value_vars])
    upars = base + 0.3 * np.random.default_rng(1).standard_normal((4000, base.size))
    blocks, data = density._blocks(upars), density._data(None)
    for label, call in (
        ("logp", lambda: density.logp(upars)),
        ("outputs", lambda: density._outputs(*blocks, *data)),
    ):
        start = time.perf_counter()
        call()
        times[f"first {label}"] = time.perf_counter() - start
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            call()
            runs.append(time.perf_counter() - start)
        times[label] = min(runs)
    np.save(out, density.logp(upars))
    print(json.dumps(times))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--warm", action="store_true", help="time a second process instead")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.out)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="capest-density-modes-"))
    reference = None
    head = f"{'mode':<14}{'build':>8}{'1st logp':>10}{'logp':>8}{'1st out':>9}{'out':>8}"
    print(f"{head}  max |diff|")
    for name in args.modes:
        caches = tmp / name
        env = os.environ | {
            "PYTENSOR_FLAGS": f"base_compiledir={caches}",
            "NUMBA_CACHE_DIR": str(caches / "numba"),
        }
        cmd = [sys.executable, __file__, "--one", name, "--out", str(tmp / f"{name}.npy")]
        for _ in range(2 if args.warm else 1):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        t = json.loads(done.stdout.strip().splitlines()[-1])
        logp = np.load(tmp / f"{name}.npy")
        reference = logp if reference is None else reference
        print(
            f"{name:<14}{t['build']:8.1f}{t['first logp']:10.2f}{t['logp']:8.3f}"
            f"{t['first outputs']:9.2f}{t['outputs']:8.3f}  {np.max(np.abs(logp - reference)):.1e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
