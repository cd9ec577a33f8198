"""Where a warm estimate's compile goes: nutpie's compile of the February 11 model, split into
PyTensor's functions (graph rewrites; their numba code comes from PyTensor's disk cache) and
nutpie's two numba C callbacks that wrap them (log-density + gradient, and the draws'
deterministics), which numba compiles afresh in every process.

    .venv/bin/python benchmarks/profile_compile.py

Run it twice: the first run may fill PyTensor's numba cache. Prints the seconds of each part,
whether the inner PyTensor functions were loaded from the disk cache, and how many other numba
functions were compiled afresh (each a `numba:compile` event). Figures for one run on a shared
machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    start = time.perf_counter()
    import numba
    import nutpie
    from numba.core import event

    from model import load_case
    from model.build import build_model
    from model.priors import resolve_priors

    print(f"imports: {time.perf_counter() - start:.1f} s")

    class FreshCompiles(event.Listener):
        """Counts the numba functions compiled (not loaded from a cache) while it listens."""

        count = 0

        def on_start(self, event):
            pass

        def on_end(self, event):
            self.count += 1

    case = load_case(ROOT / "data" / "cases" / "february-11-plant")
    model = build_model(case, resolve_priors(case))

    # nutpie calls numba.cfunc for its two callbacks; time those calls from outside.
    callbacks: list[float] = []
    cfunc = numba.cfunc

    def timed_cfunc(*args, **kwargs):
        decorate = cfunc(*args, **kwargs)

        def wrapped(fn):
            begin = time.perf_counter()
            try:
                return decorate(fn)
            finally:
                callbacks.append(time.perf_counter() - begin)

        return wrapped

    fresh = FreshCompiles()
    numba.cfunc = timed_cfunc
    event.register("numba:compile", fresh)
    begin = time.perf_counter()
    try:
        compiled = nutpie.compile_pymc_model(model, backend="numba")
    finally:
        numba.cfunc = cfunc
    total = time.perf_counter() - begin

    print(f"nutpie.compile_pymc_model: {total:.1f} s")
    print(
        f"  numba C callbacks (log-density, deterministics): {callbacks[0]:.1f} s, "
        f"{callbacks[1]:.1f} s"
    )
    print(f"  the rest (PyTensor functions and rewrites): {total - sum(callbacks):.1f} s")
    for name, fn in (("log-density", compiled.logp_func), ("deterministics", compiled.expand_func)):
        stats = fn.vm.jit_fn.stats
        hits, misses = sum(stats.cache_hits.values()), sum(stats.cache_misses.values())
        print(
            f"  PyTensor's {name} function: {hits} loads from numba's disk cache, {misses} misses"
        )
    print(f"  other numba functions compiled afresh: {fresh.count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
