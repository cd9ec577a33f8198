"""Compare the stock model with the flow model it replaced, by PSIS-LOO (issue: evidence
counted once, a stockpile, serials on the right clock).

    .venv/bin/python benchmarks/compare_models.py [--out benchmarks/model_comparison.json]
        [--only february-11-plant synthetic-plant programme]

About 30 minutes on 2 free cores (six fits at the default settings, the programme's two most of
it); `--only` runs some of the three and writes only those.

Both models see the same modelled rows (relays counted once) of: the February 11 case, the
synthetic case in data/cases/, and a synthetic three-plant programme (benchmarks/synthetic.py).
Each is sampled with capest's default settings; the pointwise log-likelihood of the evidence
rows goes to arviz-stats' `loo`. Rows whose Pareto k is above 0.7 (PSIS cannot judge them: the
stock model's latent monthly use makes several) are refitted without that row, through
arviz-stats' `reloo` (exact LOO for those rows; `runs.<model>.rows_refitted`), and the result
goes to `compare` (elpd difference, its standard error). A positive `elpd_diff` for the flow
model means the stock model predicts left-out rows better.

The file records the commit and MODEL_VERSION it was computed at (the report's "Model
comparison" block says the comparison is stale when the fit's MODEL_VERSION differs) and, per
case, `stock_vs_flow`: the stock model's elpd less the flow model's, and that difference's
standard error. Numbers are written unrounded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import arviz_stats
import numpy as np
import xarray as xr

# Run as a script (`python benchmarks/compare_models.py`), the checkout is not on sys.path;
# PYTHONPATH (another checkout's model/) still comes first.
if str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic import write_programme
from model import MODEL_VERSION, load_case
from model.build import build_model
from model.loo import PARETO_K
from model.priors import resolve_priors
from model.programme import build_programme_model, load_programme, resolve_programme_priors
from model.provenance import git_commit
from model.sampler import Sampler, SamplerSettings

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "february-11-plant": ROOT / "data" / "cases" / "february-11-plant",
    "synthetic-plant": ROOT / "data" / "cases" / "synthetic-plant",
}
PROGRAMME = "programme"  # the synthetic three-plant programme
PROGRAMME_TITLE = "synthetic programme (3 plants x 36 months)"
K_MAX = PARETO_K  # above it a row's PSIS estimate is replaced by an exact refit
# The refits without one row: fewer draws than the main fits (a row's log predictive density
# is a mean over draws of its likelihood, not a tail quantity).
REFIT_SETTINGS = SamplerSettings(draws=500, tune=500, chains=2)


def loglik(tree: xr.DataTree) -> xr.DataTree:
    """The evidence rows' pointwise log-likelihood (every plant's, for a programme) as one
    `log_likelihood` variable over one `row` dimension, as arviz-stats expects."""
    post = tree["posterior"].to_dataset()
    parts = [post[name].rename({post[name].dims[-1]: "row"}) for name in evidence_vars(post)]
    ll = xr.concat(parts, dim="row") if len(parts) > 1 else parts[0]
    ll = ll.drop_vars("row", errors="ignore")
    return xr.DataTree.from_dict(
        {"posterior": post[["rate_before"]], "log_likelihood": xr.Dataset({"evidence": ll})}
    )


def evidence_vars(post: xr.Dataset) -> list[str]:
    """The pointwise log-likelihood variables, in the order `loglik` joins their rows: one for
    a plant or a stacked programme, one per plant (`<plant>::...`) otherwise."""
    return [str(n) for n in post.data_vars if str(n).endswith("log_likelihood__evidence")]


def sample(model, settings) -> tuple[xr.DataTree, dict]:
    start = time.perf_counter()
    tree = Sampler(model, settings).sample(reading_weights(model), settings.seed)
    stats = tree["sample_stats"]
    return tree, {
        "seconds": round(time.perf_counter() - start, 1),
        "divergences": int(stats["diverging"].sum()),
    }


def reading_weights(model):
    return model["reading_weight"].get_value() if "reading_weight" in model.named_vars else None


class LeaveRowOut(arviz_stats.SamplingWrapper):
    """arviz-stats' `reloo` refits the model without each row whose PSIS estimate cannot be
    trusted (Pareto k above K_MAX): the same compiled model with that row's `row_weight` 0
    (every row's log-likelihood is still computed with each draw, so the left-out row's
    predictive density comes from the refit's draws)."""

    def __init__(self, model, tree: xr.DataTree, parts: list[tuple[str, int]], seed: int):
        super().__init__(model, idata_orig=tree)
        self.sampler = Sampler(model, REFIT_SETTINGS)  # the compile is cached (callbacks.py)
        self.parts, self.seed = parts, seed  # (row_weight's name, rows) in `loglik`'s order

    def sel_observations(self, idx):
        weights, offset = {}, 0
        for name, rows in self.parts:
            weights[name] = np.ones(rows)
            if offset <= idx < offset + rows:
                weights[name][idx - offset] = 0.0
            offset += rows
        return (weights, int(idx)), int(idx)

    def sample(self, modified_observed_data):
        weights, left_out = modified_observed_data
        return self.sampler.sample(reading_weights(self.model), self.seed + 1 + left_out, **weights)

    def get_inference_data(self, fitted_model):
        return loglik(fitted_model)

    def log_likelihood__i(self, excluded_obs, idata__i):
        return idata__i["log_likelihood"]["evidence"].isel(row=[excluded_obs])


def elpd(full: xr.DataTree, model, seed: int):
    """PSIS-LOO, with the rows PSIS cannot judge (k > K_MAX) refitted exactly."""
    tree = loglik(full)
    post = full["posterior"]
    parts = [
        (name.removesuffix("log_likelihood__evidence") + "row_weight", post[name].shape[-1])
        for name in evidence_vars(post.to_dataset())
    ]
    psis = arviz_stats.loo(tree, pointwise=True)
    k = np.asarray(psis.pareto_k)
    refitted = [int(i) for i in np.flatnonzero(k > K_MAX)]
    if not refitted:
        return psis, psis, refitted
    wrapper = LeaveRowOut(model, tree, parts, seed)
    exact = arviz_stats.reloo(wrapper, loo_orig=psis, k_threshold=K_MAX, pointwise=True)
    return psis, exact, refitted


def compare(name: str, build, settings: SamplerSettings) -> dict:
    runs, psis, exact = {}, {}, {}
    for dynamics in ("stock", "flow"):
        model = build(dynamics)
        tree, runs[dynamics] = sample(model, settings)
        start = time.perf_counter()
        psis[dynamics], exact[dynamics], refitted = elpd(tree, model, settings.seed)
        runs[dynamics]["rows_refitted"] = refitted
        runs[dynamics]["refit_seconds"] = round(time.perf_counter() - start, 1)
    table = arviz_stats.compare(exact, method="stacking", round_to="none")
    out = {"case": name, "runs": runs, "models": {}}
    for model_name, row in table.iterrows():
        out["models"][str(model_name)] = {
            "rank": int(row["rank"]),
            **{key: float(row[key]) for key in ("elpd", "se", "elpd_diff", "dse", "weight", "p")},
        }
    models = out["models"]
    out["stock_vs_flow"] = {  # > 0: the stock model predicts left-out rows better
        "elpd_diff": models["stock"]["elpd"] - models["flow"]["elpd"],
        "se": max(models["stock"]["dse"], models["flow"]["dse"]),  # the lower-ranked one's
    }
    for dynamics in psis:
        k = np.asarray(psis[dynamics].pareto_k)
        models[dynamics]["max_pareto_k"] = float(np.max(k))  # PSIS's, before the refits
        models[dynamics]["rows_k_above_0.7"] = int((k > K_MAX).sum())
        models[dynamics]["psis_elpd"] = float(psis[dynamics].elpd)
        # after the refits every row's estimate is exact or PSIS with k <= K_MAX
        models[dynamics]["max_pareto_k_after_refits"] = float(np.max(exact[dynamics].pareto_k))
    print(json.dumps(out), flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "model_comparison.json"))
    parser.add_argument("--only", nargs="+", choices=[*CASES, PROGRAMME], default=None)
    args = parser.parse_args(argv)
    wanted = args.only or [*CASES, PROGRAMME]
    settings = SamplerSettings()
    record = {
        "computed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "model_version": MODEL_VERSION,
        "sampler_settings": {k: getattr(settings, k) for k in ("draws", "tune", "chains", "seed")},
        "cases": [],
    }
    results = record["cases"]
    for name, folder in CASES.items():
        if name not in wanted:
            continue
        case = load_case(folder)
        priors = resolve_priors(case)
        results.append(compare(name, lambda d, c=case, p=priors: build_model(c, p, d), settings))
    if PROGRAMME not in wanted:
        _write(args.out, record)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_programme(Path(tmp) / "programme", plants=3, months=36, rows=36)
        programme = load_programme(folder)
        priors, hyper = resolve_programme_priors(programme)

        def programme_model(dynamics):
            return build_programme_model(programme, priors, hyper, dynamics=dynamics)[0]

        results.append(compare(PROGRAMME_TITLE, programme_model, settings))
    _write(args.out, record)


def _write(path: str, record: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
