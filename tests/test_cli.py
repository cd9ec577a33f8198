"""The command line end to end on the real case, in a fresh process as a user runs it."""

import json
import os
import re
import shutil
import subprocess
import sys

from tests.conftest import CASE, ROOT


def capest(*args, cwd=ROOT, env=None):
    """`capest ARGS` in a fresh process; `env`: variables set on top of this one's."""
    return subprocess.run(
        [sys.executable, "-m", "model.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=None if env is None else {**os.environ, **env},
    )


def test_estimate_with_few_draws_writes_a_report_marked_failed(tmp_path):
    """100 draws in all cannot give a bulk ESS of 400, so the diagnostics must fail: the
    report is still written, says FAILED at the top, and the exit code is 1."""
    out = capest(
        "estimate",
        str(CASE),
        "--reports-dir",
        str(tmp_path),
        "--no-conditional",
        "--draws",
        "50",
        "--tune",
        "200",
        "--chains",
        "2",
    )
    assert out.returncode == 1, out.stderr
    latest = tmp_path / "february-11-plant" / "latest"
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["diagnostics"]["passed"] is False
    assert summary["provenance"]["draws"] == 50 and summary["provenance"]["chains"] == 2
    status = (latest / "report.md").read_text().splitlines()[4]  # under "## Key judgments"
    assert status.startswith("> **FAILED**")
    assert "ERROR capest: sampler diagnostics FAIL" in out.stderr
    # the estimate is said as soon as the main fit has sampled, before the checks, with the
    # main fit's failed diagnostics, and is the one the report's line gives at the end
    early = re.search(
        r"fit: main fit: (rate before .*P\(doubled\) [\d.]+); its diagnostics FAIL "
        r"\([^)]*bulk ESS \d+ < 400[^)]*\) \(provisional",
        out.stderr,
    )
    final = re.search(r"INFO capest: (rate before .*P\(doubled\) [\d.]+)\n", out.stderr)
    assert early and final, out.stderr
    assert early[1] == final[1]
    assert early.start() < out.stderr.index("estimate: checks and summary")
    q = summary["quantities"]
    lo, hi = q["rate_after"]["intervals"]["0.95"]
    assert f"rate before {q['rate_before']['median']:.3g}/month" in final[1]
    assert f"after {q['rate_after']['median']:.3g}/month (95%: {lo:.3g}-{hi:.3g})" in final[1]


def test_bad_input_exits_2_naming_file_row_column_and_writes_nothing(tmp_path):
    case = tmp_path / "case"
    shutil.copytree(CASE, case)
    ledger = case / "evidence.csv"
    lines = ledger.read_text().splitlines()
    lines[5] = lines[5].replace(",between,", ",sometimes,", 1)
    ledger.write_text("\n".join(lines) + "\n")
    reports = tmp_path / "reports"
    out = capest("estimate", str(case), "--reports-dir", str(reports))
    assert out.returncode == 2
    assert "evidence.csv, line 6" in out.stderr and "column 'bound'" in out.stderr
    assert not reports.exists()


def _broken_case(tmp_path):
    """A copy of the case whose ledger has a bound no row may have."""
    case = tmp_path / "case"
    shutil.copytree(CASE, case)
    ledger = case / "evidence.csv"
    lines = ledger.read_text().splitlines()
    lines[5] = lines[5].replace(",between,", ",sometimes,", 1)
    ledger.write_text("\n".join(lines) + "\n")
    return case


def test_validate_checks_every_input_without_sampling(tmp_path, caplog, monkeypatch, capsys):
    """validate exits 0 on the real case and 2 on a broken one, with the very message
    estimate stops with; it never fits (fit is made to fail if it were called)."""
    import model.fit
    from model.cli import main

    def no_fit(*args, **kwargs):
        raise AssertionError("validate must not sample")

    monkeypatch.setattr(model.fit, "fit", no_fit)
    assert main(["validate", str(CASE)]) == 0
    assert "valid (case february-11-plant, " in capsys.readouterr().out
    case = _broken_case(tmp_path)
    caplog.clear()
    assert main(["validate", str(case)]) == 2
    said = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "evidence.csv, line 6" in said[0] and "column 'bound'" in said[0]
    caplog.clear()
    reports = tmp_path / "reports"
    assert main(["estimate", str(case), "--reports-dir", str(reports)]) == 2
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == said
    assert not reports.exists()


def test_the_command_starts_without_pytensors_graph_traces_unless_the_caller_set_them():
    """`capest`'s process (tune_process) turns off PyTensor's record of where each graph node
    was made (0.3 s of a warm estimate); a limit the caller set in PYTENSOR_FLAGS stands, and
    the caller's other flags are kept."""
    import os

    code = (
        "import model.cli as c; c.tune_process(); from pytensor import config; "
        "print(config.traceback__limit, config.numba__fastmath)"
    )

    def limit(flags: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "PYTENSOR_FLAGS"}
        env |= {"PYTENSOR_FLAGS": flags} if flags else {}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert limit("")[0] == "0"
    assert limit("numba__fastmath=True") == ["0", "True"]
    assert limit("traceback__limit=5") == ["5", "False"]
