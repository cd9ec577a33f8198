"""Simulation-based calibration of the full model (Talts et al. 2018; Modrak et al. 2023).

Draw parameters from the prior, simulate an evidence set of the real case's shape (its rows,
periods and grades, every row as an exact report), fit it with the same compiled model,
and record where the true value falls among the posterior draws. If the model and the sampler
are right, the ranks are uniform and central p-intervals contain the truth in a share p of
the simulations, up to binomial noise.

    make calibrate   (or: python -m model.calibration --case data/cases/february-11-plant
                     --sims 200 --out reports/calibration)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import arviz as az
import numpy as np
import pymc as pm
from scipy import stats

from model.build import build_model, readings
from model.case import Case
from model.fit import Sampler, SamplerSettings, with_elasticity
from model.priors import Priors

log = logging.getLogger(__name__)
QUANTITIES = ("rate_before", "rate_after", "elasticity")
LEVELS = (0.5, 0.8, 0.95)
ALPHA = 0.01  # family-wise false-alarm rate of the coverage test, over quantities x levels
RANK_DRAWS = 99  # posterior draws kept (thinned) per simulation, so ranks run 0..99
FREE = [
    "rate_before",
    "log_gain_log",
    "completion",
    "ramp_months",
    "export_share",
    "use_lag",
    "burst_sd",
]


def coverage_bounds(n: int, level: float, tests: int) -> tuple[float, float]:
    """Central binomial interval for the observed coverage of a p-interval over n
    simulations, Bonferroni-corrected so that all `tests` pass together with prob 1 - ALPHA."""
    a = ALPHA / tests
    lo, hi = stats.binom.ppf([a / 2, 1 - a / 2], n, level)
    return float(lo / n), float(hi / n)


def calibrate(
    case: Case,
    priors: Priors,
    sims: int = 200,
    seed: int = 1,
    settings: SamplerSettings | None = None,
    fit_priors: Priors | None = None,
) -> dict:
    """Run SBC: simulate from `priors`, fit with `fit_priors` (default: the same model; a
    different one is how a test breaks the model on purpose). Returns ranks, coverage,
    sampler diagnostics and whether coverage is within its binomial bounds."""
    settings = settings or SamplerSettings(draws=500, tune=500, chains=2, seed=seed)
    start = time.perf_counter()
    mix = readings(case, priors["elasticity"])
    rng = np.random.default_rng(seed)
    with build_model(case, priors):
        prior = pm.sample_prior_predictive(
            draws=sims,
            var_names=[
                *FREE,
                "rate_after",
                "capacity_multiplier",
                "reading_probability",
                "evidence",
            ],
            random_seed=seed,
            compile_kwargs={"mode": "FAST_RUN"},
        )
    truth = with_elasticity(prior["prior"].to_dataset(), mix, rng)
    simulated = prior["prior_predictive"]["evidence"].to_numpy()[0]  # (sims, obs)
    sampler = Sampler(build_model(case, fit_priors or priors), settings)
    ones = np.ones(simulated.shape[1])
    ranks = {q: np.zeros(sims, dtype=int) for q in QUANTITIES}
    inside = {(q, p): np.zeros(sims, dtype=bool) for q in QUANTITIES for p in LEVELS}
    worst = {"max_rhat": 0.0, "min_ess_bulk": np.inf, "divergences": 0}
    for i in range(sims):
        y = simulated[i]
        one = sampler.sample(
            mix.weights,
            seed + 1 + i,
            evidence_observed=y,
            evidence_exact=ones,
            evidence_lower=y - 1.0,
            evidence_upper=y + 1.0,
        )
        post = with_elasticity(one["posterior"].to_dataset(), mix, rng)
        worst["divergences"] += int(one["sample_stats"]["diverging"].sum())
        for q in QUANTITIES:
            draws = post[q].to_numpy()  # (chain, draw)
            t = float(truth[q].to_numpy().ravel()[i])
            thinned = draws.ravel(order="F")[:: max(1, draws.size // RANK_DRAWS)][:RANK_DRAWS]
            ranks[q][i] = int((thinned < t).sum())
            for p in LEVELS:
                lo, hi = np.quantile(draws, [(1 - p) / 2, (1 + p) / 2])
                inside[q, p][i] = lo <= t <= hi
            ds = post[[q]]
            worst["max_rhat"] = max(worst["max_rhat"], float(az.rhat(ds)[q]))
            worst["min_ess_bulk"] = min(worst["min_ess_bulk"], float(az.ess(ds, method="bulk")[q]))
        if (i + 1) % 20 == 0:
            log.info("calibration: %d of %d simulations", i + 1, sims)
    tests = len(QUANTITIES) * len(LEVELS)
    coverage = []
    for (q, p), hits in inside.items():
        lo, hi = coverage_bounds(sims, p, tests)
        observed = float(hits.mean())
        coverage.append(
            {
                "quantity": q,
                "level": p,
                "coverage": observed,
                "lower": lo,
                "upper": hi,
                "passed": lo <= observed <= hi,
            }
        )
    return {
        "sims": sims,
        "seed": seed,
        "settings": dataclasses.asdict(settings),
        "coverage": coverage,
        "passed": all(c["passed"] for c in coverage),
        "ranks": {q: r.tolist() for q, r in ranks.items()},
        "rank_max": RANK_DRAWS,
        "sampler": {**worst, "fits": sims, "draws_per_fit": settings.draws * settings.chains},
        "seconds": time.perf_counter() - start,
    }


def write_figures(result: dict, out: Path) -> None:
    """Coverage against nominal with its binomial bounds, and the rank ECDF difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(QUANTITIES), figsize=(11, 3.4), layout="constrained")
    for ax, q in zip(axes, QUANTITIES, strict=True):
        rows = [c for c in result["coverage"] if c["quantity"] == q]
        levels = [c["level"] for c in rows]
        ax.plot([0.4, 1], [0.4, 1], color="0.6", lw=1)
        ax.vlines(
            levels,
            [c["lower"] for c in rows],
            [c["upper"] for c in rows],
            color="0.5",
            lw=6,
            alpha=0.4,
            label="binomial bounds",
        )
        ax.plot(levels, [c["coverage"] for c in rows], "o", color="tab:blue", label="observed")
        ax.set_title(q)
        ax.set_xlabel("nominal coverage")
    axes[0].set_ylabel("observed coverage")
    axes[0].legend(fontsize=8, frameon=False)
    fig.savefig(out / "coverage.png", dpi=110)
    plt.close(fig)

    n, top = result["sims"], result["rank_max"]
    grid = np.linspace(0, 1, 101)
    # pointwise 99% band of an ECDF of n uniform ranks around the diagonal
    band = stats.binom.ppf([[0.005], [0.995]], n, grid) / n - grid
    fig, axes = plt.subplots(1, len(QUANTITIES), figsize=(11, 3.4), layout="constrained")
    for ax, q in zip(axes, QUANTITIES, strict=True):
        u = (np.asarray(result["ranks"][q]) + 0.5) / (top + 1)
        ecdf = (u[None, :] <= grid[:, None]).mean(axis=1)
        ax.fill_between(grid, band[0], band[1], color="0.85", label="99% pointwise band")
        ax.plot(grid, ecdf - grid, color="tab:blue")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_title(q)
        ax.set_xlabel("fractional rank")
    axes[0].set_ylabel("ECDF - uniform")
    axes[0].legend(fontsize=8, frameon=False)
    fig.savefig(out / "ranks.png", dpi=110)
    plt.close(fig)
    (out / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    from model import load_case
    from model.priors import resolve_priors

    parser = argparse.ArgumentParser(description="simulation-based calibration of the model")
    parser.add_argument("--case", required=True, help="case folder whose shape is simulated")
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="reports/calibration")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    case = load_case(args.case)
    result = calibrate(case, resolve_priors(case), sims=args.sims, seed=args.seed)
    write_figures(result, Path(args.out))
    for c in result["coverage"]:
        print(
            f"{c['quantity']:<12} {c['level']:.2f}  {c['coverage']:.3f}  "
            f"[{c['lower']:.3f}, {c['upper']:.3f}]  {'ok' if c['passed'] else 'FAILED'}"
        )
    s = result["sampler"]
    print(
        f"sampler: max R-hat {s['max_rhat']:.3f}, min bulk ESS {s['min_ess_bulk']:.0f}, "
        f"{s['divergences']} divergences in {s['fits']} fits; {result['seconds']:.0f} s"
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
