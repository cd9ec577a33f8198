"""Unattended runs: a lock per case, every case as a job (model/distribute.py), an index page.

A scheduler calls `capest report --all`: each case under data/cases/ is estimated as a job on
a Dask cluster (model/distribute.py: a local one of up to `jobs` processes, or an existing
one), the others finish even when one fails, and reports/index.html links the latest report
of every case with its status.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from model.errors import Busy, InputError, Problem
from model.render import Link, to_html

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


# What each exit code of `capest estimate` means (README, "Exit codes"); the index and the log
# of `report --all` say it in these words.
OUTCOMES = {
    0: "passed",
    1: "report written, a check FAILED",
    2: "input error (nothing written)",
    3: "error (nothing written)",
}


def outcome(code: int) -> str:
    if code < 0:
        return f"error: killed by signal {-code} (nothing written)"
    return OUTCOMES.get(code, f"error (exit {code})")


def worst(codes: list[int]) -> int:
    """report --all exits with its worst case: 3 (or a killed case) > 2 > 1 > 0."""
    return max((3 if c < 0 or c > 3 else c for c in codes), default=0)


def estimate_case(case: str, reports_dir: str, extra: list[str]) -> tuple[int, str]:
    """One case of `report --all`, as a job (model/distribute.py): `capest estimate` in this
    process (a Dask worker's, or ours), its exit code and what it logged."""
    import io

    from model.cli import main

    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        code = main(["estimate", case, "--reports-dir", reports_dir, *extra])
    finally:
        root.removeHandler(handler)
    return code, captured.getvalue()


def run_all(
    cases_dir: str | Path,
    reports_dir: str | Path,
    jobs: int,
    extra: list[str],
    scheduler: str | None = None,
) -> int:
    """Estimate every case as a job (on a Dask cluster: model/distribute.py); write the index;
    the worst exit code."""
    from model.distribute import Job, cluster, run

    cases = case_folders(cases_dir)
    if not cases:
        log.error("no case.toml under %s", cases_dir)
        return 2
    # absolute paths: a worker may run elsewhere (a remote one needs the same shared folders)
    reports = str(Path(reports_dir).resolve())
    work = [Job(c.name, estimate_case, (str(c.resolve()), reports, extra)) for c in cases]
    codes: dict[str, int] = {}

    def finished(result, done: int, total: int) -> None:
        if result.ok:
            code, text = result.value
        else:  # the job itself broke (its worker kept dying, or a bug outside estimate)
            code, text = 3, result.error + "\n"
        codes[result.name] = code
        if code != 0:  # whatever went wrong, in the case's own words
            sys.stderr.write(f"--- {result.name} (exit {code}):\n{text}")
        log.info(
            "[%d/%d] finished %s: %s in %.0f s",
            done,
            total,
            result.name,
            outcome(code),
            result.seconds,
        )

    with cluster(scheduler, jobs, len(work)) as client:
        run(work, client, on_done=finished)
    index = write_index(reports_dir, codes)
    failed = [c.name for c in cases if codes[c.name] != 0]
    log.info(
        "index written to %s; %d of %d case(s) did not pass%s",
        index,
        len(failed),
        len(cases),
        f": {', '.join(failed)}" if failed else "",
    )
    return worst(list(codes.values()))


def _index_row(reports_dir: Path, name: str, code: int | None) -> tuple[list, str]:
    """One case in the index, as table cells and the row's class: this run's outcome (when
    `code` is given) and the headline of its latest report, if one is readable. A broken
    summary is shown, never fatal."""
    link, title, created, before, after, unit = None, name, "", "", "", ""
    summary_path = reports_dir / name / "latest" / "summary.json"
    problem = ""
    if summary_path.exists():
        try:
            s = json.loads(summary_path.read_text(encoding="utf-8"))
            q = s["quantities"]
            title, created, unit = str(s["case_title"]), str(s["created"]), f"{s['unit']}/month"
            before = f"{float(q['rate_before']['median']):.3g}"
            after = f"{float(q['rate_after']['median']):.3g}"
            passed = bool(s.get("passed"))
            warned = [str(c["name"]) for c in s.get("checks", []) if c["status"] == "warn"]
            link = f"{name}/latest/report.html"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"error: latest/summary.json unreadable ({type(exc).__name__}: {exc})"
    if code not in (None, 0, 1):  # this run wrote nothing: say so, above any older report
        status, css = outcome(code), "error"
        if link:
            status += f"; the latest report below is an older run ({created})"
    elif problem:
        status, css = problem, "error"
    elif link:
        status, css = ("passed" if passed else "FAILED"), ("passed" if passed else "failed")
        if warned:
            status += f" (warnings: {', '.join(warned)})"
    else:
        status, css = "no report yet", "error"
    shown = Link(title, link) if link else title
    return [shown, status, created, before, after, unit], css


INDEX_COLUMNS = [
    "case",
    "status",
    "run (UTC)",
    "rate before (median)",
    "rate after (median)",
    "unit",
]


def write_index(reports_dir: str | Path, outcomes: dict[str, int] | None = None) -> Path:
    """reports/index.html: every case, the latest run of each, its status and headline
    numbers; `outcomes` (case folder -> exit code of this run) adds the cases whose run
    wrote nothing, with what went wrong. Rendered as the reports are (model/render.py)."""
    reports_dir = Path(reports_dir)
    outcomes = outcomes or {}
    names = {p.parent.parent.name for p in reports_dir.glob("*/latest/summary.json")}
    rows = [_index_row(reports_dir, n, outcomes.get(n)) for n in sorted(names | set(outcomes))]
    title = "capest reports"
    table = ("table", INDEX_COLUMNS, [cells for cells, _ in rows], [css for _, css in rows])
    page = to_html([("h1", title), table], {}, title)
    reports_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=reports_dir, prefix=".index-", suffix=".html", delete=False, encoding="utf-8"
    ) as f:
        try:
            f.write(page)
            f.flush()
            # NamedTemporaryFile makes the file 0600; the index is for whoever reads reports/.
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)
        except BaseException:
            os.unlink(f.name)  # disk full: the old index stays, no half-written one beside it
            raise
    os.replace(f.name, reports_dir / "index.html")
    return reports_dir / "index.html"
