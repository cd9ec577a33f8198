"""Could the previous run's value-of-information refits serve a rerun after one added row?
A probe (issue #19), not part of capest.

After a row is added the main fit changes, so the simulated values, and with them every
refit's target, change too: `voi_refit.same_target` reuses none of the previous run's
refits, and the added-row run samples them all (7-9 refits, 10-12 s). Each saved refit holds
its draws in the unconstrained space and its target's log density at them, so it could be
an importance-sampling proposal for a new target of the same candidate. This copies a case
and its reports (which must hold a run whose refits were saved with their draws: run
`capest estimate` twice first), adds benchmarks/run.py's synthetic row, reruns the estimate
in this process and prints, for each new refit target, the PSIS Pareto k and efficiency of
each saved refit of that candidate reweighted to it (best first), beside PSIS's
sample-size threshold for the refits' draws (Vehtari et al. 2024: 1 - 1 / log10(S)).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/voi_previous_refits.py \
        data/cases/february-11-plant reports

benchmarks/README.md has a run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    import xarray as xr
    from run import ADDED_ROW, CAPEST

    from model import pipeline, voi_refit
    from model.reuse import PARAMETER
    from model.reweight import SAMPLE, psis

    parser = argparse.ArgumentParser()
    parser.add_argument("case", type=Path)
    parser.add_argument("reports", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="capest-voi-previous-"))
    case, reports = tmp / args.case.name, tmp / "reports"
    shutil.copytree(args.case, case)
    shutil.copytree(args.reports / args.case.name, reports / args.case.name, symlinks=True)
    subprocess.run([*CAPEST, "add-evidence", str(case), *ADDED_ROW], check=True, cwd=ROOT)

    same_target = voi_refit.same_target

    def probe(saved, sim, measured, density, data, where):
        if saved is not None and density is not None and "upars" in saved:
            rows = []
            for s in saved["simulation"].to_numpy():
                one = saved.sel(simulation=s, drop=True)
                upars = one["upars"].transpose(*SAMPLE, PARAMETER).to_numpy()
                shape = upars.shape[:2]
                log_density = density.logp(upars.reshape(-1, upars.shape[-1]), data)
                ratio = log_density - one["log_density"].transpose(*SAMPLE).to_numpy().ravel()
                w = psis(xr.DataArray(ratio.reshape(shape), dims=SAMPLE))
                rows.append((w.pareto_k, w.efficiency, float(one["measured"])))
            rows.sort()
            threshold = min(0.7, 1 - 1 / np.log10(np.prod(shape)))
            best = "; ".join(f"k {k:.2f} eff {e:.2f} (saved {m:.2f})" for k, e, m in rows)
            print(
                f"{saved.attrs['candidate']:<20} value {measured:6.2f}  threshold "
                f"{threshold:.2f}  {best}",
                flush=True,
            )
        return same_target(saved, sim, measured, density, data, where)

    voi_refit.same_target = probe
    pipeline.run_estimate(case, reports_dir=reports)
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
