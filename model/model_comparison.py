"""The PSIS-LOO comparison of the stock model with the flow model it replaced, as summary.json
(`model_comparison`) and the report's "Model comparison" block state it.

It is read from the committed benchmarks/model_comparison.json (benchmarks/compare_models.py,
about half an hour: never run during an estimate), which records the commit and MODEL_VERSION
it was computed at. A fit of another MODEL_VERSION gets the comparison marked stale; a missing
or unreadable file gives "not computed" (the report never fails for it).
"""

from __future__ import annotations

import json
from pathlib import Path

from model.loo import PARETO_K

COMPARISON_FILE = Path(__file__).resolve().parent.parent / "benchmarks" / "model_comparison.json"
SOURCE = "benchmarks/model_comparison.json"
# A difference of more than two of its standard errors is read as LOO preferring one model (a
# convention for reading the numbers, not a test; the report shows the numbers themselves).
SEPARATED = 2.0


def model_comparison(fit_model_version: str, path: Path = COMPARISON_FILE) -> dict:
    """The comparison for a fit of `fit_model_version`: `status` ("current", "stale" or "not
    computed"), the file's `computed` date, `git_commit` and `model_version`, and per case the
    stock model's elpd less the flow model's (`elpd_diff`, > 0: the stock model predicts
    left-out rows better), its standard error `se`, the `reading` of the two and the largest
    Pareto k of the two models' rows."""
    out = {"status": "not computed", "source": SOURCE, "fit_model_version": fit_model_version}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        cases = [_case(c) for c in record["cases"]]
        version = str(record["model_version"])
    except FileNotFoundError:
        return out | {"reason": f"{SOURCE} does not exist"}
    except (OSError, ValueError, KeyError, TypeError) as error:  # an older or broken file
        return out | {"reason": f"{SOURCE} could not be read ({type(error).__name__}: {error})"}
    return out | {
        "status": "current" if version == fit_model_version else "stale",
        "computed": record.get("computed", ""),
        "git_commit": record.get("git_commit", ""),
        "model_version": version,
        "note": record.get("note", ""),  # what the file says about itself, if anything
        "cases": cases,
    }


def _case(entry: dict) -> dict:
    diff = float(entry["stock_vs_flow"]["elpd_diff"])
    se = float(entry["stock_vs_flow"]["se"])
    if abs(diff) > SEPARATED * se:
        reading = f"{'stock' if diff > 0 else 'flow'} model ahead"
    else:
        reading = f"not separated (within {SEPARATED:g} se)"
    models = entry["models"].values()
    k = max(float(m["max_pareto_k"]) for m in models)
    # Rows PSIS could not judge were refitted exactly (compare_models.py's `reloo`) in files
    # that record it; then the largest k left is what qualifies the numbers.
    after = [m.get("max_pareto_k_after_refits") for m in models]
    k_after = max(float(a) for a in after) if None not in after else k
    refitted = sum(len(r.get("rows_refitted", [])) for r in entry.get("runs", {}).values())
    return {"case": entry["case"], "elpd_diff": diff, "se": se, "reading": reading,
            "max_pareto_k": k, "max_pareto_k_after_refits": k_after,
            "rows_refitted": refitted}  # fmt: skip


def model_comparison_blocks(summary: dict, level: str = "h3") -> list[tuple]:
    """The report's "Model comparison" block (a heading of `level`, a sentence and a table)."""
    mc = summary.get("model_comparison") or {"status": "not computed", "reason": "not recorded"}
    blocks: list[tuple] = [(level, "Model comparison")]
    if mc["status"] == "not computed":
        reason = mc.get("reason", "")
        return blocks + [
            (
                "p",
                "The PSIS-LOO comparison of the stock model with the flow model it replaced: "
                f"not computed ({reason}; `benchmarks/compare_models.py` computes it).",
            )
        ]
    blocks.append(
        (
            "p",
            "PSIS-LOO comparison of the stock model (use drawn from a stock, data/README.md "
            "3.2.1) with the flow model it replaced, on the evidence rows of each case: the "
            "stock model's elpd less the flow model's (positive: the stock model predicts "
            f"left-out rows better) and its standard error. From `{mc['source']}`, computed "
            f"{mc['computed'] or 'on an unrecorded date'} at commit "
            f"{mc['git_commit'][:12] or 'unrecorded'}, model version {mc['model_version']}.",
        )
    )
    if mc.get("note"):
        blocks.append(("p", f"Note in the file: {mc['note']}"))
    if mc["status"] == "stale":
        blocks.append(
            (
                "p",
                f"**Stale**: the comparison was computed at model version {mc['model_version']}"
                f" and this fit is model version {mc['fit_model_version']}; rerun "
                "`benchmarks/compare_models.py`.",
            )
        )
    rows = [
        [
            c["case"],
            f"{c['elpd_diff']:+.2f}",
            f"{c['se']:.2f}",
            c["reading"],
            _k_cell(c),
        ]
        for c in mc["cases"]
    ]
    header = ["case", "elpd difference (stock - flow)", "se", "reading", "largest Pareto k"]
    return blocks + [("table", header, rows)]


def _k_cell(case: dict) -> str:
    """The largest PSIS Pareto k, and what was done about rows above PARETO_K: refitted exactly
    (the numbers are then exact for them), or left (the numbers are approximate)."""
    k, after = case["max_pareto_k"], case.get("max_pareto_k_after_refits", case["max_pareto_k"])
    cell = f"{k:.2f}"
    if case.get("rows_refitted"):
        cell += f" ({case['rows_refitted']} rows above {PARETO_K:g} refitted exactly)"
    if after > PARETO_K:
        cell += " (approximate)"
    return cell
