"""Unattended runs: a lock per case, every case in its own process, and an index page.

A scheduler calls `capest report --all`: each case under data/cases/ is estimated in a
separate process (up to `jobs` at once), the others finish even when one fails, and
reports/index.html links the latest report of every case with its status.
"""

from __future__ import annotations

import contextlib
import fcntl
import html
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from model.errors import Busy, InputError, Problem

log = logging.getLogger("capest")


def report_folder(reports_dir: str | Path, case_id: str) -> Path:
    """reports/<case>, created and checked before anything is fitted: the id is a plain
    name (no path), the reports folder is a folder, and the case's folder is a real folder
    directly in it, not a symlink that would put the lock and the report somewhere else."""
    from model.case import CASE_ID

    where = str(Path(reports_dir) / case_id)
    if not CASE_ID.match(case_id):
        message = f"case id {case_id!r} is not lowercase letters, digits and hyphens"
        raise InputError([Problem(where, "-", "id", message)])
    reports = Path(reports_dir)
    folder = reports / case_id
    try:
        reports.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink():
            raise InputError(
                [Problem(where, "-", "-", "is a symlink; a case's report folder must be a folder")]
            )
        folder.mkdir(exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        message = f"cannot make the report folder: {exc.strerror} ({exc.filename})"
        raise InputError([Problem(where, "-", "--reports-dir", message)]) from None
    if folder.resolve().parent != reports.resolve():
        raise InputError([Problem(where, "-", "-", "resolves outside the reports folder")])
    return folder


@contextlib.contextmanager
def case_lock(reports_dir: str | Path, case_id: str):
    """Hold reports/<case>/.lock for the whole run; a second run of the case fails at once.
    Whoever holds the lock owns the folder, so it also clears what a killed run left."""
    from model.report import remove_incomplete

    folder = report_folder(reports_dir, case_id)
    try:
        # O_NOFOLLOW: a .lock planted as a symlink is refused, not followed (its target would
        # get our pid). No O_TRUNC: the holder's pid stays until the lock is ours.
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        message = f"cannot open the lock file (a symlink is refused): {exc.strerror}"
        raise InputError([Problem(str(folder / ".lock"), "-", "-", message)]) from None
    with os.fdopen(fd, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another run of {case_id} is writing to {folder}") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        for name in remove_incomplete(folder):
            log.warning("removed %s/%s, left by a run that was killed", folder, name)
        yield  # the lock is released when the file closes, also if the process dies


def case_folders(cases_dir: str | Path) -> list[Path]:
    return sorted(p.parent for p in Path(cases_dir).glob("*/case.toml"))


def run_all(cases_dir: str | Path, reports_dir: str | Path, jobs: int, extra: list[str]) -> int:
    """Estimate every case in its own process; write the index; 0 only if all passed."""
    cases = case_folders(cases_dir)
    if not cases:
        log.error("no case.toml under %s", cases_dir)
        return 2

    done = 0
    progress = threading.Lock()

    def one(case: Path) -> tuple[Path, int, float]:
        nonlocal done
        start = time.perf_counter()
        log.info("started %s", case.name)
        cmd = [
            sys.executable,
            "-m",
            "model.cli",
            "estimate",
            str(case),
            "--reports-dir",
            str(reports_dir),
            *extra,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode not in (0, 1):
            sys.stderr.write(out.stderr)
        seconds = time.perf_counter() - start
        with progress:
            done += 1
            log.info(
                "[%d/%d] finished %s: %s in %.0f s",
                done,
                len(cases),
                case.name,
                {0: "passed", 1: "report written, a check FAILED"}.get(
                    out.returncode, f"error (exit {out.returncode})"
                ),
                seconds,
            )
        return case, out.returncode, seconds

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(one, cases))
    index = write_index(reports_dir)
    failed = [c.name for c, code, _ in results if code != 0]
    log.info(
        "index written to %s; %d of %d case(s) failed%s",
        index,
        len(failed),
        len(results),
        f": {', '.join(failed)}" if failed else "",
    )
    return 1 if failed else 0


def write_index(reports_dir: str | Path) -> Path:
    """reports/index.html: the latest run of each case, its status and headline numbers."""
    reports_dir = Path(reports_dir)
    rows = []
    for summary_path in sorted(reports_dir.glob("*/latest/summary.json")):
        s = json.loads(summary_path.read_text())
        q = s["quantities"]
        status = "passed" if s.get("passed") else "FAILED"
        warned = [c["name"] for c in s.get("checks", []) if c["status"] == "warn"]
        link = html.escape(f"{summary_path.parent.parent.name}/latest/report.html", quote=True)
        if warned:
            status += f" (warnings: {', '.join(warned)})"
        rows.append(
            f'<tr class="{"passed" if s.get("passed") else "failed"}"><td><a href="{link}">'
            f"{html.escape(s['case_title'])}</a></td><td>{html.escape(status)}</td>"
            f"<td>{html.escape(s['created'])}</td>"
            f"<td>{q['rate_before']['median']:.3g}</td><td>{q['rate_after']['median']:.3g}</td>"
            f"<td>{html.escape(s['unit'])}/month</td></tr>"
        )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\"><title>capest reports</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:.3em .6em}table{border-collapse:collapse}.failed td{background:#fce8e6}"
        "</style></head><body><h1>capest reports</h1><table><thead><tr><th>case</th>"
        "<th>status</th><th>run (UTC)</th><th>rate before (median)</th>"
        "<th>rate after (median)</th><th>unit</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>\n"
    )
    reports_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=reports_dir, suffix=".html", delete=False) as f:
        f.write(page)
    os.replace(f.name, reports_dir / "index.html")
    return reports_dir / "index.html"
