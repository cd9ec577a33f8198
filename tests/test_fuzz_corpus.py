"""The corpus of bad inputs (tests/fuzz_corpus/bad_inputs.toml): each gives exit 2 with its
clear error, no traceback, nothing written, and never reaches the fit (which would take
minutes: here it is replaced by one that fails the test at once)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from model.cli import main

from .test_reliability import capest

CORPUS = Path(__file__).parent / "fuzz_corpus"
BAD = tomllib.loads((CORPUS / "bad_inputs.toml").read_text(encoding="utf-8"))["bad"]


def make_case(entry: dict, tmp_path: Path) -> Path:
    case = tmp_path / "case"
    shutil.copytree(CORPUS / "base", case)
    for edit in entry.get("edits", []):
        path = case / edit["file"]
        text = path.read_text(encoding="utf-8")
        if "old" in edit:
            assert edit["old"] in text, f"{entry['name']}: {edit['old']!r} not in {path.name}"
            text = text.replace(edit["old"], edit["new"], 1)
        text += edit.get("append", "") + "#" * edit.get("pad", 0)
        path.write_bytes(text.encode("latin-1" if edit.get("latin1") else "utf-8"))
    return case


def run(entry: dict, case: Path, reports: Path) -> int:
    command = entry.get("command", "estimate")
    args = [a.replace("{case}", str(case)) for a in entry.get("args", [])]
    if command == "estimate" and "--reports-dir" not in args:
        args += ["--reports-dir", str(reports)]
    try:
        return main([command, str(case), *args])
    except SystemExit as exc:  # argparse refuses a bad option value itself, with exit 2
        return exc.code


def test_the_corpus_holds_the_64_bad_inputs_of_the_issue_and_more():
    assert len(BAD) >= 64
    assert len({e["name"] for e in BAD}) == len(BAD)


@pytest.mark.parametrize("entry", BAD, ids=[e["name"] for e in BAD])
def test_bad_input_is_refused_clearly_before_any_fit(entry, tmp_path, monkeypatch, caplog, capsys):
    import model.fit
    import model.programme

    def no_fit(*args, **kwargs):
        pytest.fail(f"{entry['name']}: bad input reached the fit")

    monkeypatch.setattr(model.fit, "fit", no_fit)
    monkeypatch.setattr(model.programme, "fit_programme", no_fit)
    case = make_case(entry, tmp_path)
    before = {p.name: p.read_bytes() for p in case.iterdir()}
    reports = tmp_path / "reports"
    code = run(entry, case, reports)
    said = caplog.text + capsys.readouterr().err
    assert code == 2, said
    assert entry["expect"] in said
    assert "Traceback" not in said
    assert not reports.exists()  # nothing written, no lock taken
    assert {p.name: p.read_bytes() for p in case.iterdir()} == before


@pytest.mark.parametrize(
    "name", ["priors-not-a-table", "seed-negative", "launches-before-the-window"]
)
def test_bad_input_fails_in_seconds_in_a_real_process(name, tmp_path):
    """The same through `python -m model.cli` as a user runs it: exit 2 and the message on
    stderr, without a traceback (the issue saw them after 35 s to 213 s of compiling)."""
    import time

    entry = next(e for e in BAD if e["name"] == name)
    case = make_case(entry, tmp_path)
    args = [a.replace("{case}", str(case)) for a in entry.get("args", [])]
    start = time.perf_counter()
    out = capest("estimate", str(case), "--reports-dir", str(tmp_path / "reports"), *args)
    assert out.returncode == 2, out.stderr
    assert entry["expect"] in out.stderr and "Traceback" not in out.stderr
    assert time.perf_counter() - start < 60
    assert not (tmp_path / "reports").exists()
