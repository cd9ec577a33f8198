"""Unattended runs: the case lock, the index page, and report --all."""

import json

import pytest

from model.cli import main
from model.runs import Busy, case_lock, write_index
from tests.conftest import CASE, ROOT


def test_a_second_run_of_the_same_case_is_refused_while_one_holds_the_lock(tmp_path, caplog):
    with case_lock(tmp_path, "february-11-plant"):
        with pytest.raises(Busy):
            with case_lock(tmp_path, "february-11-plant"):
                pass
        assert main(["estimate", str(CASE), "--reports-dir", str(tmp_path)]) == 2
    assert "another run of february-11-plant" in caplog.text
    with case_lock(tmp_path, "february-11-plant"):  # released: free again
        pass


def test_index_links_latest_reports_and_escapes_text(tmp_path):
    run = tmp_path / "x" / "20260101T000000Z"
    run.mkdir(parents=True)
    (tmp_path / "x" / "latest").symlink_to(run.name)
    q = {"median": 3.0}
    summary = {
        "case_title": "<script>alert(1)</script>",
        "created": "2026-01-01T00:00:00Z",
        "unit": "units",
        "passed": False,
        "checks": [],
        "quantities": {"rate_before": q, "rate_after": q},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    page = write_index(tmp_path).read_text()
    assert 'href="x/latest/report.html"' in page and "FAILED" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert '<tr class="failed">' in page


def test_the_index_is_rendered_with_the_reports_styles_from_the_package_file(tmp_path):
    """One renderer and one stylesheet (model/report.css) for the reports and the index."""
    from importlib.resources import files

    from model.render import to_html

    css = files("model").joinpath("report.css").read_text(encoding="utf-8").strip()
    assert "tr.error td" in css  # the index's row styles live in the same file
    page = write_index(tmp_path, {"broken-case": 2}).read_text()
    assert f"<style>{css}</style>" in page
    assert f"<style>{css}</style>" in to_html([("p", "x")], {}, "a report")
    assert '<tr class="error">' in page and "input error" in page


@pytest.mark.slow(minutes=1.3)
def test_report_all_runs_every_case_and_writes_the_index(tmp_path):
    reports = tmp_path / "reports"
    code = main(
        [
            "report",
            "--all",
            "--cases-dir",
            str(ROOT / "data" / "cases"),
            "--reports-dir",
            str(reports),
            "--jobs",
            "2",
            "--draws",
            "50",
            "--tune",
            "100",
            "--chains",
            "2",
        ]
    )
    assert code == 1  # 100 draws cannot pass the ESS threshold: each case fails, both finish
    for case in ("february-11-plant", "synthetic-plant"):
        assert (reports / case / "latest" / "summary.json").exists()
    page = (reports / "index.html").read_text()
    assert "february-11-plant/latest/report.html" in page
    assert "synthetic-plant/latest/report.html" in page
