"""Can moment matching replace the checks' refits? For each target a saved estimate refitted
(a row or a source left out, a scenario), moment-match the saved main fit to it
(model/moment_match.py) and print the Pareto k before and after, the efficiency, the
reweighted ESS, the k of the moved draws against the posterior, the seconds it took, and how
far its medians and 10%/90% quantiles lie from the refit's, in combined MCSEs.

    .venv/bin/python benchmarks/moment_match.py reports/february-11-plant/latest/posterior.nc \
        [--case data/cases/february-11-plant] [--out moment_match.json] [--arviz-stats]

The posterior.nc must come from an estimate that refitted these targets (before moment
matching, e.g. commit 59268c6): a saved refit node is what each result is compared with.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("posterior", type=Path)
    parser.add_argument("--case", type=Path, default=ROOT / "data/cases/february-11-plant")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--arviz-stats",
        action="store_true",
        help="also run arviz-stats' loo_moment_match on the rows (a cross-check; slow: it "
        "compiles with the numba backend)",
    )
    args = parser.parse_args()

    import logging

    import xarray as xr

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from model import load_case
    from model.build import build, prior_data, prior_families
    from model.fit import (
        REFIT_VARS,
        Alternatives,
        Refit,
        _influence_refits,
        _source_refits,
        scenario_priors,
    )
    from model.priors import resolve_priors
    from model.reweight import LOG_WEIGHT, effective_sizes
    from model.summary import alternative_summary
    from model.timing import Stopwatch

    tree = xr.open_datatree(args.posterior).load()
    case = load_case(args.case)
    priors = resolve_priors(case)
    model, mix, _ = build(case, priors)
    defaults = {v.name: v.get_value() for v in model.data_vars}
    watch = Stopwatch("moment matching")
    main = Alternatives(tree, model, defaults, watch)
    start = time.perf_counter()
    main.upars  # noqa: B018 - compile the density (timed apart)
    compile_seconds = time.perf_counter() - start

    refits = [*_influence_refits(tree, mix), *_source_refits(tree, mix)]
    for name in case.scenarios:
        alt, _, alt_mix = scenario_priors(case, priors, name)
        if prior_families(alt) == prior_families(priors):
            what = f"scenario '{name}'"
            refits.append(
                Refit(f"scenarios/{name}", what, alt_mix.weights, prior_data(alt, alt_mix))
            )
    rows = []
    for refit in refits:
        group, name = refit.node.split("/")
        saved = tree[refit.node].to_dataset() if name in tree.get(group, {}) else None
        if saved is None or LOG_WEIGHT in saved:
            continue  # reweighted already, or not in this estimate: nothing to replace
        start = time.perf_counter()
        out = main.moment_matched(refit)
        seconds = time.perf_counter() - start
        matched = not isinstance(out, Refit)
        row = {"target": refit.node, "seconds": round(seconds, 2), "moment_matched": matched}
        if matched:
            w = out.attrs
            ess = effective_sizes(out, REFIT_VARS, 1.0)
            row |= {
                "pareto_k_before": w["pareto_k_reweighted"],
                "pareto_k_after": w["pareto_k"],
                "efficiency": w["efficiency"],
                "ess_bulk": ess["min_ess_bulk"] * w["efficiency"],
                "ess_tail": ess["min_ess_tail"] * w["efficiency"],
                "pareto_k_posterior": w["pareto_k_posterior"],
                "steps": w["moment_matching_steps"],
                "worst_mcse_ratio": _compare(out, saved, alternative_summary),
            }
        else:
            row |= {"why_not": out.attrs.get("moment_matching", "")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"compile of the log density: {compile_seconds:.1f} s")
    if args.arviz_stats:
        rows.append(_arviz_stats(tree, model))
    if args.out:
        args.out.write_text(
            json.dumps({"compile_seconds": compile_seconds, "targets": rows}, indent=1)
        )
    return 0


def _arviz_stats(tree, model) -> dict:
    """arviz-stats' own moment matching of the rows PSIS-LOO flags: their k before and
    after, and its seconds."""
    import arviz as az
    from arviz_stats import loo_moment_match

    start = time.perf_counter()
    loo = az.loo(tree, pointwise=True, var_name="evidence")
    out = loo_moment_match(tree, loo, var_name="evidence", model=model)
    flagged = loo.pareto_k > 0.7
    row = {
        "target": "arviz-stats loo_moment_match",
        "seconds": round(time.perf_counter() - start, 2),
        "pareto_k_before": loo.pareto_k.where(flagged, drop=True).to_series().to_dict(),
        "pareto_k_after": out.pareto_k.where(flagged, drop=True).to_series().to_dict(),
    }
    print(json.dumps(row), flush=True)
    return row


def _compare(matched, refitted, alternative_summary) -> float:
    """The largest |matched - refit| over the headline quantities' median and 10% / 90%
    quantiles, in combined MCSEs (as tests/test_reweight.py)."""
    a, b = alternative_summary(matched, "u"), alternative_summary(refitted, "u")
    worst = 0.0
    for q in ("rate_before", "rate_after", "capacity_multiplier"):
        for p, value in ((0.1, lambda s: s["intervals"]["0.8"][0]),
                         (0.5, lambda s: s["median"]),
                         (0.9, lambda s: s["intervals"]["0.8"][1])):  # fmt: skip
            se = np.hypot(a[q]["mcse"][str(p)], b[q]["mcse"][str(p)])
            worst = max(worst, abs(value(a[q]) - value(b[q])) / se)
    return round(float(worst), 2)


if __name__ == "__main__":
    raise SystemExit(main())
