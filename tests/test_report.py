"""The report folder, its contract and its safety, from one small fit of the real case."""

import copy
import json
import re

import numpy as np
import pytest
import xarray as xr

from model.checks import run_checks
from model.report import (
    estimative,
    fmt,
    interval,
    label,
    md_text,
    report_blocks,
    to_html,
    to_markdown,
    write_report,
)
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


def test_summary_json_is_strict_json(small_fit, summary, tmp_path):
    """A Pareto k whose tail fit failed is infinite; summary.json holds it as null, which
    JavaScript, jq and a scheduler can parse (Python's json would write Infinity)."""
    import math

    from tests.test_strict_json import strict_loads

    rows = copy.deepcopy(summary.get("what_to_measure_next", []))
    for r in rows[:1]:
        r["pareto_k"], r["mcse_sd_log"] = math.inf, math.nan
    odd = {**summary, "what_to_measure_next": rows, "ratio": math.nan}
    folder = write_report(small_fit, odd, tmp_path)
    saved = strict_loads((folder / "summary.json").read_text())
    assert saved["ratio"] is None
    if rows:
        assert saved["what_to_measure_next"][0]["pareto_k"] is None
    assert saved["quantities"] == json.loads(json.dumps(summary["quantities"]))


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


def test_a_heading_from_a_case_file_renders_as_text():
    """A plant's title heads its section of a programme report: it is input, not markup."""
    title = "North *hall* <img src=x> | [link](javascript:alert(1))"
    md = to_markdown([("h2", title)])
    assert md == f"## {md_text(title)}\n"
    assert "\\<img src=x\\>" in md and "\\[link\\]" in md and "\\*hall\\*" in md
    page = to_html([("h2", title)], {}, "t")
    assert "<img src=x>" not in page and "&lt;img src=x&gt;" in page


def test_failed_diagnostics_show_at_the_top(small_fit, summary):
    fit = {**summary["diagnostics"]["fits"][0], "passed": False, "failures": ["R-hat 1.2 > 1.01"]}
    diagnostics = {**summary["diagnostics"], "passed": False, "fits": [fit]}
    failed = {
        **summary,
        "diagnostics": diagnostics,
        "checks": [diagnostics_check(diagnostics), *summary["checks"][1:]],
    }
    md = to_markdown(report_blocks(failed, small_fit))
    lines = md.splitlines()
    assert lines[2] == "## Key judgments"  # the first thing after the title
    assert lines[4].startswith("> **FAILED**")
    assert "mixture: R-hat 1.2 > 1.01" in lines[4]
    assert "| sampler diagnostics | FAIL |" in md
    page = to_html(report_blocks(failed, small_fit), {k: b"" for k in _figures()}, "t")
    assert '<div class="status failed" id="status"><strong>FAILED</strong>: ' in page


def test_a_check_that_cannot_compute_fails_visibly(small_fit):
    broken = small_fit.copy()
    del broken["posterior_predictive"]  # (the fit's saved PSIS-LOO needs no log-likelihood)
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
tree = xr.load_datatree(sys.argv[1], engine="netcdf4")
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
    assert effect["rate_after"]["decided_by"] == "priors"  # narrowed, but what is left is assumed
    page = to_markdown(report_blocks(summary, small_fit))
    assert f"What the evidence decided: {label(summary, 'exported_flow')}" in page
    share = f"{effect['rate_after']['assumed_share']:.0%} of the posterior variance of the"
    assert (
        f"{share} {label(summary, 'rate_after')} comes from {label(summary, 'export_share')}"
        in page
    )
    # the report names quantities by their labels (model/variables.py)
    assert "What the evidence decided: exported flow before the expansion" in page
    assert "barely moved" not in page
    passed = copy.deepcopy(summary)  # the small fit fails its diagnostics; a passing run's banner:
    for c in passed["checks"]:
        c["status"] = "pass"
    page = to_markdown(report_blocks(passed, small_fit))
    assert "**PASSED**" in page
    assert f"decided mostly by assumptions ({label(summary, 'export_share')}" in page


def test_a_replay_is_written_but_never_becomes_latest(small_fit, summary, tmp_path):

    normal = write_report(small_fit, summary, tmp_path)
    replay = copy.deepcopy(summary)
    replay["provenance"] |= {"replay": True, "evidence_as_of": "2024-06-30"}
    old = write_report(small_fit, replay, tmp_path)
    latest = tmp_path / summary["case_id"] / "latest"
    assert old.exists() and latest.resolve() == normal.resolve()


def test_estimative_words_follow_the_icd_203_bands():
    assert estimative(0.03) == ("almost no chance", "1-5%")
    assert estimative(0.27) == ("unlikely", "20-45%")
    assert estimative(0.5) == ("roughly even chance", "45-55%")
    assert estimative(0.55)[0] == "likely"  # a band's edge goes to the higher band
    assert estimative(0.9)[0] == "very likely"
    assert estimative(1.0)[0] == "almost certain"


def _section(md: str, heading: str) -> str:
    start = md.index(f"## {heading}\n")
    end = md.find("\n## ", start + 1)
    return md[start : end if end > 0 else None]


def test_key_judgments_come_first_and_carry_the_summarys_numbers(small_fit, summary):
    md = to_markdown(report_blocks(summary, small_fit))
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Key judgments"
    # the analyst's sections, then the machinery as an appendix, in this order
    order = ["Scenarios", "The size of the new building", "Monthly production", "Appendix"]
    where = [next(i for i, h in enumerate(headings) if h[3:].startswith(o)) for o in order]
    assert where == sorted(where)
    appendix = md[md.index("## Appendix") :]
    for part in ("### Health", "### Diagnostics", "### Priors", "### Evidence ledger"):
        assert part in appendix
    box = _section(md, "Key judgments")
    q = summary["quantities"]
    for name in ("exported_flow", "rate_before", "rate_after", "capacity_multiplier"):
        row = f"| {label(summary, name)} | {fmt(q[name]['median'])} "
        assert row in box and f"| {interval(q[name], '0.8')} | {interval(q[name])} |" in box
    p = q["p_capacity_doubled"]["value"]
    assert f"It is **{estimative(p)[0]}** that capacity at least doubled: probability " in box
    assert f"**{p:.0%}**" in box and "ICD 203" in box
    assert "What decides it:" in box
    medians = [r["rate_after"]["median"] for r in summary["scenarios"]]
    medians.append(q["rate_after"]["median"])
    assert f"from **{fmt(min(medians))}**" in box and f"to **{fmt(max(medians))}**" in box
    # the table of contents links every section
    for heading in headings[1:]:
        assert f"[{heading[3:]}](#" in md


def test_labels_not_variable_names_in_the_report(small_fit, summary):
    md = to_markdown(report_blocks(summary, small_fit))
    for name in ("rate_before", "rate_after", "log_gain_log", "p_capacity_doubled"):
        assert name not in md, name
    # a label from the variables registry, when the summary carries one, is what is shown
    named = {**summary, "quantities": {**summary["quantities"]}}
    named["quantities"]["rate_after"] = {**named["quantities"]["rate_after"], "label": "Full rate"}
    assert "| Full rate | " in to_markdown(report_blocks(named, small_fit))


def test_a_partial_year_says_which_months_it_covers():
    """The window starts in March: its first year is Mar-Dec, never '2023' alone."""
    import pandas as pd

    from model.summary import quantities, year_span
    from model.timeline import Window

    window = Window(pd.Period("2023-03", "M"), pd.Period("2024-12", "M"))
    assert year_span(window, 2023) == "Mar-Dec, 10 months"
    assert year_span(window, 2024) == ""
    assert year_span(Window(pd.Period("2024-01", "M"), pd.Period("2024-01", "M")), 2024) == (
        "Jan, 1 month"
    )
    rng = np.random.default_rng(1)
    ds = xr.Dataset(
        {
            n: (("chain", "draw"), rng.lognormal(2, 0.3, (1, 50)))
            for n in ("rate_before", "rate_after", "capacity_multiplier")
        }
    )
    by_year = rng.lognormal(5, 0.3, (1, 50, 2))
    ds["production_by_year"] = (("chain", "draw", "year"), by_year)
    ds = ds.assign_coords(year=[2023, 2024])
    q = quantities(ds, "units", window)
    assert q["production_2023"]["description"] == "production in 2023 (Mar-Dec, 10 months)"
    assert q["production_2023"]["span"] == "Mar-Dec, 10 months"
    assert "span" not in q["production_2024"]
    # a registry label without the months still gets them in the report
    summary = {"quantities": {"production_2023": {**q["production_2023"], "label": "output 2023"}}}
    assert label(summary, "production_2023") == "output 2023 (Mar-Dec, 10 months)"


def test_the_real_cases_first_year_is_labelled_partial_in_the_report(small_fit, summary):
    md = to_markdown(report_blocks(summary, small_fit))
    assert "| production in 2023 (Mar-Dec, 10 months) | missiles |" in md
    assert "| production in 2024 | missiles |" in md


def test_provenance_shows_paths_relative_to_the_repository(small_fit, summary):
    from tests.conftest import ROOT

    files = summary["provenance"]["input_files"]
    assert files[:2] == [
        "data/cases/february-11-plant/case.toml",
        "data/cases/february-11-plant/evidence.csv",
    ]
    assert all(not f.startswith("/") for f in files)
    md = to_markdown(report_blocks(summary, small_fit))
    assert str(ROOT) not in md and "data/priors.toml" in md


def test_monthly_production_csv_equals_the_posteriors_quantiles(small_fit, summary, tmp_path):
    """What the analyst reads for a month (the CSV, summary.json) is the posterior's own
    median and equal-tailed quantiles of that month's production."""
    import csv

    folder = write_report(small_fit, summary, tmp_path)
    rows = list(csv.DictReader((folder / "monthly_production.csv").open()))
    saved = json.loads((folder / "summary.json").read_text())["monthly_production"]
    production = small_fit["posterior"]["production"]
    months = [str(m) for m in production["month"].to_numpy()]
    assert [r["month"] for r in rows] == [m["month"] for m in saved] == months
    draws = production.stack(sample=("chain", "draw")).transpose("month", "sample").to_numpy()
    for i, row in enumerate(rows):
        assert row["unit"] == f"{summary['unit']}/month"
        assert float(row["median"]) == pytest.approx(np.median(draws[i]), rel=1e-12)
        for p in (0.5, 0.8, 0.95):
            lo, hi = np.quantile(draws[i], [(1 - p) / 2, (1 + p) / 2])
            name = f"{p:.0%}".replace("%", "")
            assert float(row[f"lower_{name}"]) == pytest.approx(lo, rel=1e-12)
            assert float(row[f"upper_{name}"]) == pytest.approx(hi, rel=1e-12)
            assert saved[i]["intervals"][str(p)] == [
                float(row[f"lower_{name}"]),
                float(row[f"upper_{name}"]),
            ]


def test_fan_chart_shows_the_evidence_rows_at_their_implied_monthly_values(small_fit):
    """Each launch and transfer row the model counts (two weeks or longer) is drawn over its
    period at its value per month; the completion is a marker, not a band over the fan; the
    full rate is drawn when the ramp ends after the window."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from model import plots
    from model.summary import window_of

    fig = plots.fan_chart(small_fit)
    ax = fig.axes[0]
    segments = [
        tuple(np.round(seg, 6).ravel())
        for c in ax.collections
        for seg in getattr(c, "get_segments", lambda: [])()
    ]
    window = window_of(small_fit)
    ev = small_fit["evidence"].to_dataset()
    col = {k: ev[k].to_numpy().astype(str) for k in ev.data_vars}
    drawn = 0
    for i, row in enumerate(ev["row"].to_numpy().astype(str)):
        if col["kind"][i] not in ("launches", "transfers") or col["bound"][i] != "exact":
            continue
        if col["superseded_by"][i] or col["counted_as"][i]:
            continue
        start, end = pd.Timestamp(col["period_start"][i]), pd.Timestamp(col["period_end"][i])
        days = (end - start).days + 1
        if days < plots.MIN_DAYS:
            continue
        y = float(col["value"][i]) / (days / (365.25 / 12))
        a, b = window.time_of(start), window.time_of(end, end_of_day=True)
        assert tuple(np.round([a, y, b, y], 6)) in segments, row
        drawn += 1
    assert drawn >= 3  # the half-year and monthly counts of the real case
    assert len(ax.patches) == 0  # no shaded span across the bands
    labels = [t.get_label() for t in ax.get_lines()]
    assert "new building complete (median, 80%)" in labels
    post = small_fit["posterior"]
    full = np.median(post["completion"].to_numpy().ravel() + post["ramp_months"].to_numpy().ravel())
    notes = [t.get_text() for t in ax.texts]
    if full > window.n_months:
        level = float(np.median(post["rate_after"]))
        assert any(f"full rate {level:.2g}/month" in n and "after the window" in n for n in notes)
    plt.close(fig)


def test_history_chart_ticks_stay_readable_with_many_runs():
    import matplotlib.pyplot as plt

    from model import plots

    runs = [
        {
            "run": f"2026112{i % 10}T0{i % 10}3458Z",
            "created": f"2026-11-2{i % 10}T0{i % 10}:34:58Z",
            "evidence_as_of": f"2024-{1 + i % 12:02d}-15",
            "quantities": {
                n: {"median": 10.0 + i, "interval_95": [5.0, 20.0 + i]}
                for n in ("rate_before", "rate_after")
            },
        }
        for i in range(30)
    ]
    fig = plots.history_chart({"history": runs, "unit": "units"})
    ax = fig.axes[0]
    shown = [t.label1 for t in ax.xaxis.get_major_ticks() if t.label1.get_visible()]
    assert len(ax.get_xticks()) == 30 and len(shown) <= 13  # a point per run, fewer names
    assert all("T0" not in t.get_text() for t in shown)  # dates, not folder stamps
    assert shown[-1].get_text().startswith("evidence to 2024-06-15")
    plt.close(fig)
