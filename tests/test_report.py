"""The report folder, its contract and its safety, from one small fit of the real case."""

import json
import re

import numpy as np
import pytest
import xarray as xr

from model.checks import run_checks
from model.report import md_text, report_blocks, to_html, to_markdown, write_report
from model.summary import INTERVALS, diagnostics_check, summarize


@pytest.fixture(scope="module")
def summary(small_fit):
    return summarize(small_fit)


def test_summary_contract(summary):
    for key in ("case_id", "created", "provenance", "diagnostics", "quantities", "readings"):
        assert key in summary
    prov = summary["provenance"]
    for key in ("input_hash", "git_commit", "packages", "sampler", "draws", "seed"):
        assert key in prov
    assert len(prov["input_hash"]) == 64
    d = summary["diagnostics"]
    assert {"passed", "max_rhat", "min_ess_bulk", "min_ess_tail", "divergences"} <= set(d)
    q = summary["quantities"]
    names = {"rate_before", "rate_after", "capacity_multiplier", "p_capacity_doubled"}
    assert names | {"production_2023", "production_2024", "production_2025"} <= set(q)
    assert 0 <= q["p_capacity_doubled"]["value"] <= 1


def test_intervals_are_nested_around_the_median(summary):
    for name, q in summary["quantities"].items():
        if "intervals" not in q:
            continue
        widths = [q["intervals"][str(p)] for p in sorted(INTERVALS)]
        for inner, outer in zip(widths, widths[1:], strict=False):
            assert outer[0] <= inner[0] <= q["median"] <= inner[1] <= outer[1], name


def test_rate_after_is_rate_before_times_multiplier(small_fit):
    post = small_fit["posterior"]
    np.testing.assert_allclose(
        post["rate_after"], post["rate_before"] * post["capacity_multiplier"], rtol=1e-12
    )


def test_each_reading_has_a_conditional_fit(summary):
    readings = {r["reading"]: r for r in summary["readings"]}
    assert set(readings) == {"size_of", "larger", "smaller", "twice"}
    assert sum(r["posterior_probability"] for r in readings.values()) == pytest.approx(1.0)
    # a bigger floor-area ratio gives a bigger multiplier, reading by reading
    med = {k: r["capacity_multiplier"]["median"] for k, r in readings.items()}
    assert med["smaller"] < med["size_of"] < med["larger"] < med["twice"]


def test_report_folder_is_complete_and_never_overwritten(small_fit, summary, tmp_path):
    first = write_report(small_fit, summary, tmp_path)
    second = write_report(small_fit, summary, tmp_path)
    assert first != second and first.exists() and second.exists()
    for name in ("summary.json", "report.md", "report.html", "posterior.nc", "fan_chart.png"):
        assert (first / name).stat().st_size > 0
    latest = tmp_path / summary["case_id"] / "latest"
    assert latest.is_symlink() and latest.resolve() == second.resolve()
    assert not [p for p in (tmp_path / summary["case_id"]).iterdir() if p.name.startswith(".")]
    assert json.loads((first / "summary.json").read_text())["case_id"] == summary["case_id"]


def test_saved_posterior_reopens_with_provenance(small_fit, summary, tmp_path):
    folder = write_report(small_fit, summary, tmp_path)
    back = xr.open_datatree(folder / "posterior.nc")
    assert {"posterior", "prior", "observed_data", "evidence", "conditional"} <= set(back.children)
    assert back.attrs["input_hash"] == summary["provenance"]["input_hash"]
    assert int(back.attrs["seed"]) == summary["provenance"]["seed"]
    # the report is a function of the saved file alone
    assert summarize(back)["quantities"] == summary["quantities"]


def test_html_is_self_contained(small_fit, summary, tmp_path):
    page = (write_report(small_fit, summary, tmp_path) / "report.html").read_text()
    assert "<script" not in page and "<link" not in page
    assert 'src="http' not in page and "src='http" not in page
    assert page.count('src="data:image/png;base64,') == 3
    assert f"{summary['quantities']['rate_before']['median']:.2g}"[:2] in page


def test_hostile_evidence_text_renders_as_text(small_fit, summary):
    tree = small_fit.copy()
    ev = tree["evidence"].to_dataset()
    quote = ev["quote"].to_numpy().astype(object)
    url = ev["url"].to_numpy().astype(object)
    quote[0], url[0] = "<script>alert(1)</script>", "javascript:alert(1)"
    tree["evidence"] = ev.assign(quote=("row", quote.astype(str)), url=("row", url.astype(str)))
    page = to_html(report_blocks(summary, tree), {k: b"" for k in _figures()}, "t")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="javascript' not in page


def test_failed_diagnostics_show_at_the_top(small_fit, summary):
    fit = {**summary["diagnostics"]["fits"][0], "passed": False, "failures": ["R-hat 1.2 > 1.01"]}
    diagnostics = {**summary["diagnostics"], "passed": False, "fits": [fit]}
    failed = {
        **summary,
        "diagnostics": diagnostics,
        "checks": [diagnostics_check(diagnostics), *summary["checks"][1:]],
    }
    md = to_markdown(report_blocks(failed, small_fit))
    assert md.splitlines()[2].startswith("> **FAILED**")
    assert "mixture: R-hat 1.2 > 1.01" in md.splitlines()[2]
    assert "| sampler diagnostics | FAIL |" in md


def test_a_check_that_cannot_compute_fails_visibly(small_fit):
    broken = small_fit.copy()
    del broken["log_likelihood"]
    checks = {c["name"]: c for c in run_checks(broken)}
    assert checks["posterior predictive"]["status"] == "fail"
    assert "could not be computed" in checks["posterior predictive"]["finding"]
    assert checks["prior predictive"]["status"] in ("pass", "warn")  # the others still run


def _figures():
    return ("fan_chart.png", "prior_posterior.png", "readings.png")


def test_case_id_cannot_escape_the_reports_folder(small_fit, summary, tmp_path):
    with pytest.raises(ValueError, match="outside"):
        write_report(small_fit, {**summary, "case_id": "../evil"}, tmp_path / "reports")
    assert not (tmp_path / "evil").exists()


def test_a_run_killed_while_writing_leaves_nothing_half_written(
    small_fit, summary, tmp_path, monkeypatch
):
    import model.report

    first = write_report(small_fit, summary, tmp_path)
    calls = []

    def dies_on_second_figure(fig):
        calls.append(fig)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C or a scheduler's SIGINT would
        return b"png"

    monkeypatch.setattr(model.report.plots, "png", dies_on_second_figure)
    with pytest.raises(KeyboardInterrupt):
        write_report(small_fit, summary, tmp_path)
    case_dir = tmp_path / summary["case_id"]
    assert sorted(p.name for p in case_dir.iterdir() if p.name != ".lock") == [first.name, "latest"]
    assert (case_dir / "latest").resolve() == first.resolve()


# A run that stalls while writing its second figure, so the test can SIGKILL it midway.
_STALLS_WHILE_WRITING = """
import json, sys, time
import xarray as xr
import model.report as report
tree = xr.load_datatree(sys.argv[1], engine="h5netcdf")
summary = json.loads(open(sys.argv[2]).read())
real_png, calls = report.plots.png, []
def stall(fig):
    calls.append(fig)
    if len(calls) == 2:
        print("writing", flush=True)
        time.sleep(600)
    return real_png(fig)
report.plots.png = stall
report.write_report(tree, summary, sys.argv[3])
"""


def test_a_run_killed_with_sigkill_leaves_latest_on_the_last_complete_run(
    small_fit, summary, tmp_path
):
    import signal
    import subprocess
    import sys

    from model.cli import main
    from model.runs import case_lock

    first = write_report(small_fit, summary, tmp_path)
    case_dir = first.parent
    child = subprocess.Popen(
        [sys.executable, "-c", _STALLS_WHILE_WRITING, first / "posterior.nc",
         first / "summary.json", tmp_path],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline() == "writing\n"
        (leftover,) = case_dir.glob(".incomplete-*")  # midway: its folder exists, unfinished
        assert not (leftover / "summary.json").exists()
    finally:
        child.send_signal(signal.SIGKILL)  # no handler, no cleanup: as the OOM killer would
        child.wait()
    assert (case_dir / "latest").resolve() == first.resolve()
    assert [p.name for p in case_dir.glob("2*")] == [first.name]
    assert main(["history", summary["case_id"], "--reports-dir", str(tmp_path)]) == 0
    with case_lock(tmp_path, summary["case_id"]):  # the next run clears the leftover
        assert not leftover.exists()


def test_history_of_runs_is_tabled_and_plotted(small_fit, summary, tmp_path):
    from model.cli import main
    from model.compare import history, history_entry

    first = write_report(small_fit, summary, tmp_path)
    past = history(tmp_path, summary["case_id"])
    assert [r["run"] for r in past] == [first.name]
    assert past[0]["evidence_as_of"] == summary["provenance"]["evidence_as_of"] != ""
    second = {**summary, "history": [*past, history_entry(summary, "this run")]}
    folder = write_report(small_fit, second, tmp_path)
    md = (folder / "report.md").read_text()
    assert "## History" in md and f"| {first.name} |" in md and "| this run |" in md
    assert (folder / "history.png").read_bytes().startswith(b"\x89PNG")
    assert "history.png" not in [p.name for p in first.iterdir()]  # one run: nothing to plot
    assert main(["history", summary["case_id"], "--reports-dir", str(tmp_path)]) == 0


NUMBER = r"\d+(?:\.\d+)?"


def _number(text: str) -> float:
    return float(text.strip().split()[0]) if text.strip() else float("nan")


def test_every_ledger_cell_reaches_the_saved_evidence_and_the_report(small_fit, summary, tmp_path):
    """What the analyst reads equals what the ledger says, for every row, column and kind:
    in the saved `evidence` group and in report.md's ledger table (under pandas 3 a bulk
    string cast once cut every value to its first character: "74" showed as "7")."""
    import csv

    from model.timeline import parse_date
    from tests.conftest import CASE

    ledger = list(csv.DictReader((CASE / "evidence.csv").open(encoding="utf-8")))
    folder = write_report(small_fit, summary, tmp_path)
    saved = xr.open_datatree(folder / "posterior.nc")["evidence"].to_dataset()
    table = {}
    for line in (folder / "report.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| ") and cells[0] in {r["id"] for r in ledger}:
            table[cells[0]] = cells
    assert set(table) == {r["id"] for r in ledger}
    ids = [str(i) for i in saved["row"].to_numpy()]
    for raw in ledger:
        i = ids.index(raw["id"])
        got = {c: str(saved[c].to_numpy()[i]) for c in saved.data_vars}
        for column, text in raw.items():
            if column in ("value", "lower", "upper", "bound") and raw["kind"] == "date_code":
                continue  # capest computes a date code's lag bounds (data/README.md)
            if column in ("value", "lower", "upper"):
                assert _number(got[column]) == pytest.approx(_number(text), nan_ok=True), (
                    raw["id"],
                    column,
                )
            elif column in ("period_start", "period_end", "date_reported"):
                end = column != "period_start"
                want = parse_date(text, end=end).strftime("%Y-%m-%d") if text else ""
                assert got[column] == want, (raw["id"], column)
            elif column in got:
                assert got[column] == text, (raw["id"], column)
        shown = table[raw["id"]]
        assert shown[1] == raw["kind"] and shown[4] == raw["reliability"]
        unit = raw["unit"]
        value = {
            "exact": raw["value"],
            "at_least": f"≥ {raw['lower']}",
            "at_most": f"≤ {raw['upper']}",
            "between": f"{raw['lower']}–{raw['upper']}",
        }.get(raw["bound"], raw["value"])
        if raw["kind"] != "date_code":  # the same numbers and words (3.0 may show as 3)
            want, seen = f"{value} {unit}".strip(), shown[3]
            assert re.sub(NUMBER, "#", seen) == re.sub(NUMBER, "#", want), raw["id"]
            assert [float(x) for x in re.findall(NUMBER, seen)] == [
                float(x) for x in re.findall(NUMBER, want)
            ], raw["id"]
        assert shown[-1] == md_text(raw["quote"]), raw["id"]  # escaped, else the same


def test_evidence_effect_tells_narrowed_moved_and_untouched_quantities_apart():
    from model.summary import evidence_effect

    rng = np.random.default_rng(0)
    prior = xr.Dataset({n: ("draw", rng.lognormal(2.0, 1.0, 4000)) for n in EFFECT_NAMES})
    post = xr.Dataset(
        {
            "exported_flow": ("draw", rng.lognormal(2.3, 0.3, 4000)),  # narrowed
            "export_share": ("draw", rng.lognormal(2.0, 1.0, 4000)),  # the prior itself
            "use_lag": ("draw", rng.lognormal(3.5, 0.95, 4000)),  # moved, as wide
        }
    )
    got = evidence_effect(post, prior)
    assert got["exported_flow"]["decided_by"] == "evidence"
    assert got["exported_flow"]["contraction"] == pytest.approx(1 - 0.09, abs=0.02)
    assert got["export_share"]["decided_by"] == "priors"
    assert got["use_lag"]["decided_by"] == "partly" and got["use_lag"]["z_score"] > 1


EFFECT_NAMES = ("exported_flow", "export_share", "use_lag")


def test_the_report_says_what_the_evidence_decided_and_what_the_priors_did(small_fit, summary):
    """On the real case the launch and transfer rows decide the exported flow; the export
    share stays at its prior, so the rates rest on it and the banner says so (contraction and
    z-scores, not interval width)."""
    effect = summary["evidence_effect"]
    assert effect["exported_flow"]["decided_by"] == "evidence"
    assert effect["export_share"]["decided_by"] == "priors"
    assert "export_share" in effect["rate_after"]["assumptions"]
    # the report names quantities by their labels (model/variables.py)
    page = to_markdown(report_blocks(summary, small_fit))
    status = next(line for line in page.splitlines() if line.startswith("> **"))
    assert "decided mostly by assumptions (share of production exported" in status
    assert "What the evidence decided: exported flow before the expansion" in page
    assert "barely moved" not in page


def test_a_replay_is_written_but_never_becomes_latest(small_fit, summary, tmp_path):
    import copy

    normal = write_report(small_fit, summary, tmp_path)
    replay = copy.deepcopy(summary)
    replay["provenance"] |= {"replay": True, "evidence_as_of": "2024-06-30"}
    old = write_report(small_fit, replay, tmp_path)
    latest = tmp_path / summary["case_id"] / "latest"
    assert old.exists() and latest.resolve() == normal.resolve()
