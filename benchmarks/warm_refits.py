"""Refits started where the main fit ended against refits started afresh, on one case.

Runs the case's estimate fit once (`fit`, default settings: the refits start warm), keeps its
compiled models, the refits it sampled (the checks' and the value-of-information ones) and
their seeds, then samples each of them again at every setting asked for: `cold` (a fresh
start, the main fit's tuning: the design before) and `warm:T` (from the main fit's draws,
T tuning draws). For each: seconds, the fit rules (R-hat, bulk and tail ESS, divergences,
model/diagnostics.py) and the headline medians with their MCSE; for the value-of-information
refits the variance of log rate_after (what they feed) with its MCSE.

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python benchmarks/warm_refits.py \\
        --checks cold,warm:100,warm:200,warm:300 --voi 2x300:cold,2x300:warm:300,4x500:warm:200

A value-of-information setting is chains x draws, then cold or warm:T (cold tunes 300 as
voi_refit.REFIT_TUNE did). Prints one JSON line per refit and setting, then a table per
setting (benchmarks/README.md, "Refits that start where the main fit ended").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADLINE = ("flow_before", "rate_before", "rate_after", "capacity_multiplier")


def medians(node) -> dict:
    """Each headline quantity's median and its MCSE (ArviZ)."""
    import arviz as az

    out = {}
    for name in HEADLINE:
        if name in node:
            x = node[name]
            out[name] = (
                float(x.median()),
                float(az.mcse(x.to_dataset(name="x"), method="median")["x"]),
            )
    return out


def judged(node) -> dict:
    from model.diagnostics import check

    c = check(node.drop_vars("diverging"), node["diverging"], "refit")
    return {
        "max_rhat": round(c["max_rhat"], 4),
        "min_ess_bulk": round(c["min_ess_bulk"]),
        "min_ess_tail": round(c["min_ess_tail"]),
        "divergences": c["divergences"],
        "passed": c["passed"],
    }


def main() -> int:
    from model import fit as fitting
    from model import load_case, voi, voi_refit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings

    parser = argparse.ArgumentParser()
    parser.add_argument("--case", type=Path, default=ROOT / "data/cases/february-11-plant")
    parser.add_argument("--checks", default="cold,warm:100,warm:200,warm:300")
    parser.add_argument("--voi", default="2x300:cold,2x300:warm:300")
    args = parser.parse_args()
    case = load_case(args.case)
    priors = resolve_priors(case)

    seen: dict = {"refits": [], "voi": []}
    run_refits, refit = fitting.run_refits, voi_refit.RowModel.refit

    def keep_refits(refits, sampler, case, priors, settings, scheduler=None, start=None):
        seen["refits"] += [r for r in refits if r.priors is None]
        seen["sampler"], seen["start"] = sampler, start
        return run_refits(refits, sampler, case, priors, settings, scheduler, start)

    def keep_voi(self, candidate, measured, seed, start=None):
        seen["voi"].append((self, candidate, measured, seed))
        seen["voi_start"] = start
        return refit(self, candidate, measured, seed, start)

    fitting.run_refits, voi_refit.RowModel.refit = keep_refits, keep_voi
    began = time.perf_counter()
    idata = fitting.fit(case, priors, SamplerSettings())
    print(f"fit: {time.perf_counter() - began:.1f} s", flush=True)
    fitting.run_refits, voi_refit.RowModel.refit = run_refits, refit
    attrs = dict(idata.attrs)
    sampler, start = seen["sampler"], seen["start"]
    sampler.retry = False  # measure each setting as it is, without the one retry
    settings = sampler.settings
    results: dict = {}
    for setting in filter(None, args.checks.split(",")):
        rows = []
        for r in seen["refits"]:
            warm = None
            if setting.startswith("warm:"):
                warm = dataclasses.replace(start, tune=int(setting.split(":")[1]))
            seed = fitting.job_seed(settings.seed, r.node)
            t = time.perf_counter()
            one = sampler.sample(r.weights, seed, label=r.what, start=warm, **r.data)
            seconds = time.perf_counter() - t
            node = fitting._headline(one)
            row = {"refit": r.node, "seconds": round(seconds, 2), **judged(node)}
            row["medians"] = medians(node)
            rows.append(row)
            print("checks", setting, json.dumps(row), flush=True)
        results[f"checks {setting}"] = rows
    for setting in filter(None, args.voi.split(",")):
        size, how = setting.split(":", 1)
        chains, draws = map(int, size.split("x"))
        rows = []
        for model, candidate, measured, seed in seen["voi"]:
            tune = int(how.split(":")[1]) if how.startswith("warm:") else voi_refit.REFIT_TUNE
            warm = dataclasses.replace(start, tune=tune) if how.startswith("warm") else None
            model.sampler.settings = dataclasses.replace(
                model.sampler.settings, chains=chains, draws=draws, tune=tune
            )
            t = time.perf_counter()
            node = refit(model, candidate, measured, seed, warm)
            seconds = time.perf_counter() - t
            y = voi.targets(node, attrs)["rate_after"]
            shape = (node.sizes["chain"], node.sizes["draw"])
            row = {
                "candidate": candidate.name,
                "measured": round(float(np.expm1(measured)), 1),
                "seconds": round(seconds, 2),
                **judged(node),
                "var_log_rate_after": round(float(np.var(np.log(y))), 4),
                "mcse": round(voi.refit_mcse_var_log(y, shape), 4),
            }
            rows.append(row)
            print("voi", setting, json.dumps(row), flush=True)
        results[f"voi {setting}"] = rows
    print(json.dumps({"timings": json.loads(attrs["timings"]), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
