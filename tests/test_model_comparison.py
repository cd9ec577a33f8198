"""The report's "Model comparison" block and summary.json's `model_comparison`
(model/model_comparison.py): the committed PSIS-LOO comparison of the stock and flow models,
stale when the fit's MODEL_VERSION differs, "not computed" when the file is missing."""

from __future__ import annotations

import json

from model import MODEL_VERSION
from model.model_comparison import COMPARISON_FILE, model_comparison, model_comparison_blocks
from model.report import report_blocks, to_markdown
from model.summary import summarize


def _record(version: str) -> dict:
    """A comparison file as benchmarks/compare_models.py writes it (invented numbers)."""
    models = {"stock": {"max_pareto_k": 0.5}, "flow": {"max_pareto_k": 0.9}}
    return {
        "computed": "2026-12-01T00:00:00Z",
        "git_commit": "0123456789abcdef",
        "model_version": version,
        "cases": [
            {"case": "a", "models": models, "stock_vs_flow": {"elpd_diff": 3.456, "se": 1.2}},
            {"case": "b", "models": models, "stock_vs_flow": {"elpd_diff": -0.4, "se": 0.3}},
        ],
    }


def test_the_report_states_the_committed_comparison(small_fit):
    """The summary carries the committed file's numbers unrounded, and the report shows each
    case's elpd difference and se as the summary has them, with the file's commit."""
    record = json.loads(COMPARISON_FILE.read_text())
    summary = summarize(small_fit)
    mc = summary["model_comparison"]
    expected = "current" if record["model_version"] == MODEL_VERSION else "stale"
    assert mc["status"] == expected and mc["fit_model_version"] == MODEL_VERSION
    assert [c["case"] for c in mc["cases"]] == [c["case"] for c in record["cases"]]
    page = to_markdown(report_blocks(summary, small_fit))
    assert "### Model comparison" in page and record["git_commit"][:12] in page
    for got, saved in zip(mc["cases"], record["cases"], strict=True):
        assert got["elpd_diff"] == saved["stock_vs_flow"]["elpd_diff"]
        assert got["se"] == saved["stock_vs_flow"]["se"]
        assert f"| {got['case']} | {got['elpd_diff']:+.2f} | {got['se']:.2f} |" in page


def test_a_comparison_of_another_model_version_is_stale(tmp_path):
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(_record("1")))
    mc = model_comparison("2", path)
    assert mc["status"] == "stale"
    page = to_markdown(model_comparison_blocks({"model_comparison": mc}))
    assert "**Stale**: the comparison was computed at model version 1" in page
    assert "this fit is model version 2" in page
    # what it found: a is separated (3.456 > 2 x 1.2), b is not; k above 0.7 is flagged
    assert "| a | +3.46 | 1.20 | stock model ahead | 0.90 (approximate) |" in page
    assert "| b | -0.40 | 0.30 | not separated (within 2 se) |" in page
    assert "Note in the file" not in page  # the file has none
    assert model_comparison("1", path)["status"] == "current"
    # rows above 0.7 refitted exactly (compare_models.py's reloo): no longer approximate
    record = json.loads(json.dumps(_record("2")))  # the two cases' own copies of `models`
    record["cases"][0]["models"]["flow"]["max_pareto_k_after_refits"] = 0.6
    record["cases"][0]["models"]["stock"]["max_pareto_k_after_refits"] = 0.5
    record["cases"][0]["runs"] = {"stock": {"rows_refitted": []}, "flow": {"rows_refitted": [4]}}
    path.write_text(json.dumps(record))
    page = to_markdown(model_comparison_blocks({"model_comparison": model_comparison("2", path)}))
    assert (
        "| a | +3.46 | 1.20 | stock model ahead | 0.90 (1 rows above 0.7 refitted exactly) |"
        in page
    )
    assert "| b | -0.40 | 0.30 | not separated (within 2 se) | 0.90 (approximate) |" in page
    path.write_text(json.dumps(_record("1")))
    current = model_comparison_blocks({"model_comparison": model_comparison("1", path)})
    current = to_markdown(current)
    assert "Stale" not in current and "0123456789ab" in current


def test_a_missing_or_unreadable_comparison_reads_not_computed(tmp_path):
    """The report never fails for the file: missing, of the older layout (a bare list) or not
    JSON, the block says "not computed" and why; a summary without the key (an older run) too."""
    missing = model_comparison("2", tmp_path / "none.json")
    assert missing["status"] == "not computed" and "does not exist" in missing["reason"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(_record("2")["cases"]))  # the list the file once was
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for path in (older, broken):
        mc = model_comparison("2", path)
        assert mc["status"] == "not computed" and "could not be read" in mc["reason"]
    for summary in ({"model_comparison": missing}, {}):
        page = to_markdown(model_comparison_blocks(summary))
        assert "## Model comparison" in page and "not computed" in page


def test_the_readme_states_the_committed_comparison():
    """The README's comparison paragraph quotes the committed file: each case's elpd
    difference and se as the file has them (rounded as written), and its commit."""
    from .conftest import ROOT

    record = json.loads(COMPARISON_FILE.read_text())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"commit {record['git_commit'][:7]}" in readme
    feb, synthetic, programme = (c["stock_vs_flow"] for c in record["cases"])
    assert f"ahead by {feb['elpd_diff']:.2f} (se {feb['se']:.2f};" in readme
    assert f"behind by {-synthetic['elpd_diff']:.2f} (se {synthetic['se']:.2f})" in readme
    assert f"ahead by {programme['elpd_diff']:.1f} (se {programme['se']:.1f};" in readme
