"""How much of nutpie's cold compile of February 11 is the draws' expansion (issue #19, the
cold start). A probe, not part of capest.

nutpie compiles two numba callbacks: the log density with its gradient, and the expansion of
each draw into every stored variable (the free variables and every deterministic). This
compiles the case's model with nutpie's `var_names` restricted, in a fresh process; run it
with empty caches to see a cold compile, once per choice:

    PYTENSOR_FLAGS=base_compiledir=/tmp/cold1/pytensor NUMBA_CACHE_DIR=/tmp/cold1/numba \\
        .venv/bin/python benchmarks/expand_probe.py free     # the free variables only
    ... nolik    # all but the pointwise log-likelihood, log-prior and outlier probabilities
    ... all      # every variable (what capest stores)

It prints the compile's seconds, each callback's, and one fit's sampling (4 x 1000 draws).
benchmarks/README.md (nineteenth session) has a run.
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    start = time.perf_counter()
    import numba
    import nutpie

    from model import load_case
    from model.build import build_model
    from model.priors import resolve_priors

    case = load_case(ROOT / "data" / "cases" / "february-11-plant")
    model = build_model(case, resolve_priors(case))
    print("imports and build", round(time.perf_counter() - start, 1), flush=True)
    cfunc, times = numba.cfunc, []

    def timed(*args, **kwargs):  # nutpie calls numba.cfunc once per callback
        decorate = cfunc(*args, **kwargs)

        def wrapped(fn):
            begin = time.perf_counter()
            out = decorate(fn)
            times.append((fn.__name__, round(time.perf_counter() - begin, 1)))
            return out

        return wrapped

    numba.cfunc = timed
    choice = sys.argv[1] if len(sys.argv) > 1 else "all"
    names = None
    if choice == "free":
        names = [v.name for v in model.free_RVs]
    elif choice == "nolik":
        skip = ("log_likelihood__", "log_prior__", "outlier_probability")
        names = [v.name for v in model.unobserved_value_vars if not v.name.startswith(skip)]
    begin = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model, backend="numba", var_names=names)
    print(choice, "compile", round(time.perf_counter() - begin, 1), times, flush=True)
    begin = time.perf_counter()
    nutpie.sample(compiled, draws=1000, tune=1000, chains=4, cores=2, progress_bar=False, seed=1)
    print("sampling", round(time.perf_counter() - begin, 1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
