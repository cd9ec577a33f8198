"""Could moment matching replace the value-of-information refits? A probe (issue #19), not
part of capest: for a saved run (its posterior.nc, default settings), each of the first
`--per-candidate` flagged simulated values of each ledger candidate (Pareto k above 0.7, the
simulation of model/voi.py) gets the posterior variance of log rate_after three ways:

- moment matched (model/moment_match.py, every draw moved, as the checks' targets are), from
  the main fit's draws to the main model's density with the candidates' rows appended as data
  (model/voi_refit.py `through`) and this value's row in;
- the same map, split: the main fit's draws and the moved ones together, weighed against the
  mixture of the two (multiple importance sampling, as Paananen et al.'s split), which can see
  a mode the moved draws alone do not reach;
- a refit at that value (`--refit`, chains x draws x tuning), the reference.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/voi_moment_match.py \
        reports/february-11-plant/latest/posterior.nc

Prints one line a value: plain k, the matched k and variance, the split k, efficiency and
variance, the refit's variance, and the seconds each took. benchmarks/README.md has a run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def weighted_var(logy: np.ndarray, log_w: np.ndarray) -> float:
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    return float(w @ (logy - w @ logy) ** 2)


def main() -> int:
    import xarray as xr

    from model import load_case, voi, voi_refit
    from model.build import build
    from model.candidates import IMAGERY
    from model.moment_match import Density, match
    from model.observation import observations
    from model.priors import resolve_priors
    from model.reweight import SAMPLE, psis
    from model.sampler import SamplerSettings
    from model.summary import window_of

    parser = argparse.ArgumentParser()
    parser.add_argument("posterior", type=Path)
    parser.add_argument("--case", type=Path, default=ROOT / "data/cases/february-11-plant")
    parser.add_argument("--per-candidate", type=int, default=3)
    parser.add_argument("--refit", default="4x1000x1000")
    args = parser.parse_args()
    idata = xr.open_datatree(args.posterior, engine="netcdf4").load()
    case = load_case(args.case)
    priors = resolve_priors(case)
    post = idata["posterior"].to_dataset()
    shape = (post.sizes["chain"], post.sizes["draw"])

    model = build(case, priors).model
    density = Density(model, ["rate_after"])  # the row predictions would be one row longer
    upars = density.unconstrained(post)
    base = density.logp(upars, None)
    candidates = [c for c in voi.all_candidates(idata, window_of(idata)) if c.kind != IMAGERY]
    added = voi_refit.with_rows(case, candidates)
    obs = observations(added.evidence, added.window, priors.noise)
    defaults = {v.name: v.get_value() for v in model.data_vars}
    main_data = type("Main", (), {"defaults": defaults})
    data = voi_refit.through(main_data, observations(case.evidence, case.window, priors.noise), obs)
    rows = {c.name: obs.ids.index(c.ledger_row(case.unit)["id"]) for c in candidates}
    chains, draws, tune = map(int, args.refit.split("x"))
    voi_refit.REFIT_CHAINS, voi_refit.REFIT_DRAWS, voi_refit.REFIT_TUNE = chains, draws, tune
    refits = voi_refit.RowModel.of(case, priors, SamplerSettings(), candidates)

    def target(candidate, measured: float) -> dict:
        d = {**defaults, **{k: v.copy() for k, v in data.items()}}
        at = rows[candidate.name]
        d["row_weight"][list(rows.values())] = 0.0
        d["row_weight"][at] = 1.0
        d["evidence_observed"][at] = measured
        d["evidence_lower"][at], d["evidence_upper"][at] = measured - 1.0, measured + 1.0
        return d

    def rate_after(u: np.ndarray, d: dict) -> np.ndarray:
        out = density.draws(u, shape, d, post)["rate_after"]
        return np.log(out.transpose(*SAMPLE).to_numpy().ravel())

    for candidate, y, flagged, result in voi_refit.flagged_values(idata).values():
        if candidate.kind == IMAGERY:
            continue
        k_plain = result["pareto_k"]
        for j in flagged[: args.per_candidate]:
            d = target(candidate, y[j])
            began = time.perf_counter()
            m = match(lambda u, d=d: density.logp(u, d), lambda u: density.logp(u, None),
                      upars, shape)  # fmt: skip
            matched = weighted_var(rate_after(m.upars, d), m.weights.log_weight.to_numpy().ravel())
            t_match = time.perf_counter() - began
            # the map, recovered from the draws it moved; the split: both sets of draws
            # against the equal mixture of the posterior and its image under the map
            coef, *_ = np.linalg.lstsq(np.hstack([upars, np.ones((len(upars), 1))]), m.upars)
            a, b = coef[:-1].T, coef[-1]
            both = np.vstack([upars, m.upars])
            back = density.logp((both - b) @ np.linalg.inv(a).T, None)
            log_q = np.logaddexp(
                np.concatenate([base, density.logp(m.upars, None)]),
                back - np.linalg.slogdet(a)[1],
            )
            ratio = density.logp(both, d) - log_q
            split = psis(xr.DataArray(ratio.reshape(2 * shape[0], shape[1]), dims=SAMPLE))
            logy = np.concatenate([rate_after(upars, d), rate_after(m.upars, d)])
            split_var = weighted_var(logy, split.log_weight.to_numpy().ravel())
            t_split = time.perf_counter() - began - t_match
            began = time.perf_counter()
            refit = refits.refit(candidate, y[j], 9100 + int(j))
            reference = float(np.var(np.log(refit["rate_after"].to_numpy())))
            t_refit = time.perf_counter() - began
            print(
                f"{candidate.name:18s} value {j:3d}: k {k_plain[j]:.2f} | matched k "
                f"{m.weights.pareto_k:.2f} var {matched:.3f} ({t_match:.1f} s) | split k "
                f"{split.pareto_k:.2f} eff {split.efficiency:.3f} var {split_var:.3f} "
                f"(+{t_split:.1f} s) | refit {args.refit} var {reference:.3f} ({t_refit:.1f} s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
