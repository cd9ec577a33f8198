"""The value-of-information refits of a saved run at other sampler settings: for each value the
run refitted (its posterior.nc, `voi_refits/`), the time, R-hat, ESS, divergences and the
variance of log rate_after (with its MCSE) at each setting, with the same seeds.

    .venv/bin/python benchmarks/voi_refits.py reports/february-11-plant/latest/posterior.nc \
        --settings 2x300x300,4x1000x1000

A setting is chains x draws x tuning. benchmarks/README.md has a run's table (2 x 300 against
4 x 1000: the short refits miss the fit rules and differ by up to 2.3 combined MCSEs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import xarray as xr

    from model import load_case, voi, voi_refit
    from model.candidates import IMAGERY
    from model.diagnostics import check
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings
    from model.summary import window_of

    parser = argparse.ArgumentParser()
    parser.add_argument("posterior", type=Path)
    parser.add_argument("--case", type=Path, default=ROOT / "data/cases/february-11-plant")
    parser.add_argument("--settings", default="2x300x300,4x1000x1000")
    args = parser.parse_args()
    idata = xr.open_datatree(args.posterior, engine="netcdf4").load()
    case = load_case(args.case)
    priors = resolve_priors(case)
    attrs = dict(idata.attrs)
    flagged = voi_refit.flagged_values(idata)
    seed = int(attrs["seed"])
    chosen = {
        int(name.split("_")[1]): idata[f"voi_refits/{name}"]["simulation"].to_numpy().tolist()
        for name in idata["voi_refits"].children
    }
    candidates = [c for c in voi.all_candidates(idata, window_of(idata)) if c.kind != IMAGERY]
    results = {}
    for setting in args.settings.split(","):
        chains, draws, tune = map(int, setting.split("x"))
        voi_refit.REFIT_CHAINS, voi_refit.REFIT_DRAWS, voi_refit.REFIT_TUNE = chains, draws, tune
        began = time.perf_counter()
        model = voi_refit.RowModel.of(case, priors, SamplerSettings(), candidates)
        rows, n = [], 0
        compile_s = time.perf_counter() - began
        for i, sims in chosen.items():
            candidate, measured, _, _ = flagged[i]
            for sim in sims:
                n += 1  # the seeds of refit_flagged
                began = time.perf_counter()
                node = model.refit(candidate, measured[sim], seed + voi_refit.REFIT_SEED_OFFSET + n)
                seconds = time.perf_counter() - began
                c = check(node.drop_vars("diverging"), node["diverging"], "refit")
                y = voi.targets(node, attrs)["rate_after"]
                shape = (node.sizes["chain"], node.sizes["draw"])
                rows.append(
                    {
                        "candidate": candidate.name,
                        "simulation": sim,
                        "seconds": round(seconds, 2),
                        "max_rhat": round(c["max_rhat"], 4),
                        "min_ess_bulk": round(c["min_ess_bulk"]),
                        "min_ess_tail": round(c["min_ess_tail"]),
                        "divergences": c["divergences"],
                        "var_log_rate_after": round(float(np.var(np.log(y))), 4),
                        "mcse": round(voi.refit_mcse_var_log(y, shape), 4),
                    }
                )
                print(setting, json.dumps(rows[-1]), flush=True)
        results[setting] = {"compile_s": round(compile_s, 2), "refits": rows}
        print(f"{setting}: compile {compile_s:.1f} s", flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
