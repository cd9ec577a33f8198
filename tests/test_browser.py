"""The report and the index page in a real browser (Debian's headless Chromium).

Each page must load with no console error and no request beyond itself and its embedded
images, and show the headline numbers. Evidence text is made hostile first, so that a
quote that escaped into markup would show here as a script run or a request. Screenshots
go to test-artifacts/ (or $CAPEST_ARTIFACTS) for a person to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model.report import fmt, write_report
from model.runs import write_index
from model.summary import summarize
from tests.browser import Browser
from tests.conftest import ROOT

ARTIFACTS = Path(os.environ.get("CAPEST_ARTIFACTS", ROOT / "test-artifacts"))
# Each would run code or fetch something if it ever reached the page unescaped.
HOSTILE_QUOTE = '<script>console.error("injected")</script><img src="https://example.org/x.png">'
HOSTILE_URL = "javascript:console.error('clicked')"


# Where the key judgments are on the first screen, the banner's words, the ledger's state.
PROBES = {
    "judgments": "JSON.stringify(document.getElementById('key-judgments').getBoundingClientRect())",
    "viewport": "JSON.stringify([window.innerWidth, window.innerHeight])",
    "status": "document.getElementById('status').innerText",
    "ledger_open": "document.querySelector('details').open",
    "ledger_rows": "document.querySelectorAll('details tbody tr').length",
    # last: opens the collapsed ledger as a reader would, and reads the whole page
    "opened_text": "document.querySelectorAll('details').forEach(d => d.open = true); "
    "document.body.innerText",
}


def _make_hostile(tree):
    ev = tree["evidence"].to_dataset()
    quote = ev["quote"].to_numpy().astype(object)
    url = ev["url"].to_numpy().astype(object)
    quote[0], url[0] = HOSTILE_QUOTE, HOSTILE_URL
    tree["evidence"] = ev.assign(quote=("row", quote.astype(str)), url=("row", url.astype(str)))
    return tree


@pytest.fixture(scope="module")
def pages(small_fit, tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    tree = _make_hostile(small_fit.copy())
    summary = summarize(tree)
    folder = write_report(tree, summary, reports)
    # A second case whose title is hostile, to test the index's escaping in the browser too.
    other = {**summary, "case_id": "other-plant", "case_title": HOSTILE_QUOTE}
    write_report(tree, other, reports)
    index = write_index(reports)
    with Browser() as browser:  # a 1280 x 800 viewport: a laptop's first screen
        visits = {
            "report": browser.visit(folder / "report.html", probes=PROBES),
            "index": browser.visit(index),
        }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, visit in visits.items():
        (ARTIFACTS / f"{name}.png").write_bytes(visit.screenshot)
    return summary, visits


@pytest.mark.parametrize("name", ["report", "index"])
def test_page_loads_without_console_errors(pages, name):
    _, visits = pages
    assert visits[name].console_errors == []


@pytest.mark.parametrize("name", ["report", "index"])
def test_page_makes_no_request_beyond_itself(pages, name):
    _, visits = pages
    visit = visits[name]
    others = [u for u in visit.requests if u != visit.url and not u.startswith("data:")]
    assert others == []
    assert visit.url in visit.requests  # the network log did record the page itself


def test_report_shows_headline_numbers(pages):
    summary, visits = pages
    text = visits["report"].text
    q = summary["quantities"]
    for name in ("rate_before", "rate_after"):
        lo, hi = q[name]["intervals"]["0.95"]
        assert f"{fmt(q[name]['median'])} " in text and f"{fmt(lo)}–{fmt(hi)}" in text
    assert f"{q['p_capacity_doubled']['value']:.0%}" in text
    # shown to the reader, once the ledger is opened, as the text it is
    assert HOSTILE_QUOTE not in text and HOSTILE_QUOTE in visits["report"].probes["opened_text"]


def test_index_shows_each_case_with_its_status_and_medians(pages):
    summary, visits = pages
    text = visits["index"].text
    q = summary["quantities"]
    assert summary["case_title"] in text and HOSTILE_QUOTE in text
    assert text.count(f"{q['rate_after']['median']:.3g}") >= 2
    status = "passed" if summary["passed"] else "FAILED"
    assert status in text


def test_screenshots_are_saved(pages):
    for name in ("report", "index"):
        png = (ARTIFACTS / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name  # a page, not a blank


def test_key_judgments_are_on_the_first_screen(pages):
    """The box an analyst reads first is wholly inside the first 1280 x 800 viewport."""
    import json

    summary, visits = pages
    probes = visits["report"].probes
    box = json.loads(probes["judgments"])
    assert json.loads(probes["viewport"]) == [1280, 800]
    assert 0 <= box["top"] < box["bottom"] <= 800, box
    # and it holds the numbers of the summary, with their 80% and 95% intervals
    q = summary["quantities"]["rate_after"]
    text = visits["report"].text
    judgments = text[: text.index("Contents")]
    for p in ("0.8", "0.95"):
        lo, hi = q["intervals"][p]
        assert f"{fmt(lo)}–{fmt(hi)}" in judgments
    assert f"{summary['quantities']['p_capacity_doubled']['value']:.0%}" in judgments
    assert "ICD 203" in judgments


def test_banner_says_passed_or_failed_in_words(pages):
    summary, visits = pages
    word = "PASSED" if summary["passed"] else "FAILED"
    assert visits["report"].probes["status"].startswith(f"{word}: ")


def test_ledger_is_collapsed_but_complete(pages):
    summary, visits = pages
    assert visits["report"].probes["ledger_open"] is False
    assert visits["report"].probes["ledger_rows"] == summary["evidence"]["rows"]


def test_analyst_reads_labels_not_variable_names(pages):
    text = pages[1]["report"].probes["opened_text"]  # the ledger opened too
    for name in ("rate_before", "rate_after", "log_gain_log", "p_capacity_doubled"):
        assert name not in text, name
