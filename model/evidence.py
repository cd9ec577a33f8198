"""The evidence ledger: one CSV row per observation, validated into a typed DataFrame.

Every row keeps its source, address, date, reliability and verbatim quote. Rows that
disagree stay as separate rows; the model weighs them by reliability (see data/README.md).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from model import likelihood
from model.errors import Busy, InputError, Problem
from model.timeline import Window, parse_date

COLUMNS = [
    "id",
    "kind",
    "period_start",
    "period_end",
    "value",
    "lower",
    "upper",
    "bound",
    "unit",
    "reading",
    "source",
    "url",
    "date_reported",
    "reliability",
    "quote",
    "note",
]
CASE_UNIT = "<case unit>"  # counts are in the unit the case file names (checked by load_case)
SPAN, DATE = "span", "date"  # a row needs period_start and period_end, or period_end


@dataclass(frozen=True)
class Kind:
    """One evidence kind, declared once. What a row of it measures is documented in
    data/README.md 3.2 (a test checks that every kind has its row there); what a row of it
    measures is its function in model/likelihood.py. Code looks kinds up in KIND when it runs,
    so a test can add one (tests/test_evidence_kinds.py)."""

    name: str
    unit: str | None  # the unit its rows are given in; CASE_UNIT; None: any (not checked)
    period: str  # SPAN, DATE, or "" (no period needed, or the kind's own rule below)
    # what a row measures (model/likelihood.py); None: not a measurement in the likelihood
    # (area_ratio and serial have their own terms in model/build.py, context none)
    likelihood: Callable[[pd.Series, Window], likelihood.Measures] | None
    stacks: bool  # the stacked programme model (model/stacked.py) handles its rows
    priors: tuple[str, ...] = ()  # priors only a case with rows of this kind needs

    @property
    def modelled(self) -> bool:
        return self.likelihood is not None


EVIDENCE_KINDS = (
    Kind("launches", CASE_UNIT, SPAN, likelihood=likelihood.launches, stacks=True),
    Kind("transfers", CASE_UNIT, DATE, likelihood=likelihood.transfers, stacks=True),
    Kind("use_lag", "months", DATE, likelihood=likelihood.use_lag, stacks=True),
    # a made-in mark on an item used on `used`: bounds the use lag (its own rules, _date_code)
    Kind("date_code", "months", "", likelihood=likelihood.date_code, stacks=True),
    # made between period_start and period_end ("produced N in 2024")
    Kind("production", CASE_UNIT, SPAN, likelihood=likelihood.production, stacks=True),
    # units a year at the rate of period_end ("can produce N a year")
    Kind("capacity", CASE_UNIT, DATE, likelihood=likelihood.capacity, stacks=True),
    # containers or rail cars leaving in the period, some with product
    Kind(
        "shipments",
        "shipments",
        SPAN,
        likelihood=likelihood.shipments,
        stacks=False,
        priors=("units_per_shipment", "shipment_share"),
    ),
    # workers after / before the expansion (housing, dormitories)
    Kind(
        "workforce_ratio",
        "ratio",
        "",
        likelihood=likelihood.workforce_ratio,
        stacks=False,
        priors=("workforce_ratio", "labour_elasticity"),
    ),
    # capacity after / before of one declared stage ([stages.<name>])
    Kind("stage_ratio", "ratio", "", likelihood=likelihood.stage_ratio, stacks=False),
    # the floor-area readings: a mixture over readings, in both programme models
    Kind("area_ratio", "ratio", "", likelihood=None, stacks=True),
    # a serial number seen on an item (model/serials.py; its period rule is its own)
    Kind("serial", "serial", "", likelihood=None, stacks=False),
    # kept for the record, not modelled
    Kind("context", None, "", likelihood=None, stacks=True),
)
KIND = {k.name: k for k in EVIDENCE_KINDS}  # the registry every check and term looks up
# Optional: `supersedes` names the id of an earlier row this one corrects. The earlier row is
# kept in the ledger (history is never edited) but no longer modelled. `block` names the
# serial-number block ([serials.<block>] in case.toml) of a `serial` row.
# `bias_group` names a group of rows (normally one source's) that share one bias term.
# `same_as` names the row that first reported the figure this row relays (another outlet's
# copy, a quote of the same official count): the group enters the likelihood once (`relays`).
# `used` is the date a `date_code` row's item was used or recovered. `stage` names the
# production stage ([stages.<name>] in case.toml) whose capacity a `stage_ratio` row measures.
OPTIONAL = ["supersedes", "same_as", "block", "bias_group", "used", "stage"]
FORMULA_PREFIXES = ("=", "+", "-", "@")
NUMBER = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,12})?\Z", re.ASCII)  # no sign, exponent, '_'
MAX_NUMBER = 1e9  # no count, ratio, lag or serial comes near it; documented in data/README.md
BOUNDS = ("exact", "at_least", "at_most", "between")
GRADES = ("A", "B", "C", "D")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
STAGE = re.compile(r"^[a-z][a-z0-9_]*$")  # a stage name is also a TOML key and a prior's name


MAX_LEDGER_BYTES = 10_000_000  # documented in data/README.md 3: a ledger is hand-curated
MAX_LEDGER_ROWS = 10_000  # ... and the report tables and the fit grow with every row


def read_text(path: Path, what: str, limit: int) -> str:
    """A whole input file as text, or InputError naming the line of what is wrong with it.
    UTF-8 with or without a byte-order mark (Excel writes one); no NUL; at most `limit`
    bytes, checked before the file is read."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise InputError(
                [Problem(name, "file", "-", f"{size:,} bytes: a {what} holds at most {limit:,}")]
            )
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError([Problem(name, "file", "-", f"cannot read the {what}: {reason}")]) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        raise InputError([Problem(name, f"line {line}", "-", message)]) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise InputError([Problem(name, f"line {line}", "-", "contains a NUL character")])
    return text


def load_evidence(path: str | Path) -> pd.DataFrame:
    """Read and validate a ledger. Raises InputError listing every bad cell."""
    path = Path(path)
    name = str(path)
    text = read_text(path, "ledger", MAX_LEDGER_BYTES)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str], int]] = []  # (first line, cells, last line)
    try:
        for cells in reader:
            # A quoted cell may span lines: count physical lines, as an editor shows them.
            start = rows[-1][2] + 1 if rows else 1
            rows.append((start, cells, reader.line_num))
    except csv.Error as exc:
        message = f"not valid CSV: {exc}"
        raise InputError([Problem(name, f"line {reader.line_num}", "-", message)]) from None
    if not rows:
        raise InputError([Problem(name, "header", "-", "the ledger is empty")])
    if len(rows) - 1 > MAX_LEDGER_ROWS:
        message = f"{len(rows) - 1:,} rows: a ledger holds at most {MAX_LEDGER_ROWS:,}"
        raise InputError([Problem(name, "file", "-", message)])
    header, body = rows[0][1], rows[1:]
    problems = [
        Problem(name, "header", c, "required column is missing") for c in COLUMNS if c not in header
    ] + [
        Problem(name, "header", c, f"unknown column (expected {', '.join(COLUMNS + OPTIONAL)})")
        for c in header
        if c not in COLUMNS + OPTIONAL
    ]
    if problems:
        raise InputError(problems)
    records = []
    for line, cells, _ in body:
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            problems.append(
                Problem(
                    name, f"line {line}", "-", f"has {len(cells)} fields, header has {len(header)}"
                )
            )
            continue
        raw = {
            "supersedes": "",
            "same_as": "",
            "block": "",
            "bias_group": "",
            "used": "",
            "stage": "",
            **{k: v.strip() for k, v in zip(header, cells, strict=True)},
        }
        record, row_problems = _validate_row(raw, name, line)
        problems += row_problems
        records.append(record)
    seen: dict[str, int] = {}
    for r in records:
        if r["id"] and r["id"] in seen:
            problems.append(
                Problem(
                    name,
                    f"line {r['line']}",
                    "id",
                    f"duplicate id '{r['id']}' (also line {seen[r['id']]})",
                )
            )
        seen.setdefault(r["id"], r["line"])
    superseded_by: dict[str, str] = {}
    for r in records:
        target = r["supersedes"]
        if not target:
            continue
        if target == r["id"] or target not in seen:
            why = "a row cannot supersede itself" if target == r["id"] else "no row has this id"
            problems.append(Problem(name, f"line {r['line']}", "supersedes", f"'{target}': {why}"))
        superseded_by[target] = r["id"]
    for r in records:
        r["superseded_by"] = superseded_by.get(r["id"], "")
    problems += _relays(records, name)
    if problems:
        raise InputError(problems)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        raise InputError([Problem(name, "header", "-", "the ledger has no rows")])
    return frame.set_index("id", drop=False)


GRADE_ORDER = {g: i for i, g in enumerate(GRADES)}


def _relays(records: list[dict], name: str) -> list[Problem]:
    """Group rows that relay one figure (`same_as`) and pick the one row that counts.

    A group is a row and every row whose `same_as` names it (directly or through another
    relay). It enters the likelihood once, as its best-graded row that is not superseded (the
    earliest in the ledger among equals): the copies add no information about the figure, only
    about who repeated it, and the best grade is the most faithful rendering available. Every
    other member stays in the ledger and the report, marked with `counted_as` (the row that
    counts for it); the others' wording differences are the outlets', not the source's."""
    by_id = {r["id"]: r for r in records if r["id"]}
    problems = []
    for r in records:
        r["counted_as"] = ""
        target = r["same_as"]
        if not target:
            continue
        where = f"line {r['line']} (id '{r['id']}')"
        if target == r["id"] or target not in by_id:
            why = "a row cannot relay itself" if target == r["id"] else "no row has this id"
            problems.append(Problem(name, where, "same_as", f"'{target}': {why}"))
        elif by_id[target]["kind"] != r["kind"]:
            message = f"'{target}' is a {by_id[target]['kind']} row; a relay has its kind"
            problems.append(Problem(name, where, "same_as", message))
        elif r["kind"] not in modelled_kinds():
            message = f"only modelled rows ({', '.join(modelled_kinds())}) are counted once"
            problems.append(Problem(name, where, "same_as", message))
    if problems:
        return problems
    groups: dict[str, list[dict]] = {}
    for r in records:
        root, seen = r, {r["id"]}
        while root["same_as"]:
            root = by_id[root["same_as"]]
            if root["id"] in seen:
                where = f"line {r['line']} (id '{r['id']}')"
                return [Problem(name, where, "same_as", "rows relay each other in a circle")]
            seen.add(root["id"])
        groups.setdefault(root["id"], []).append(r)
    for members in groups.values():
        live = [r for r in members if not r["superseded_by"]]
        if len(members) < 2 or not live:
            continue
        counted = min(live, key=lambda r: (GRADE_ORDER.get(r["reliability"], 9), r["line"]))
        for r in members:
            r["counted_as"] = "" if r is counted else counted["id"]
    return problems


def modelled(evidence: pd.DataFrame) -> pd.DataFrame:
    """The rows the likelihood sees: neither superseded nor relaying a figure another row
    counts (`same_as`). Every consumer of the evidence filters through here."""
    keep = (evidence["superseded_by"] == "") & (evidence["counted_as"] == "")
    return evidence[keep]


def _validate_row(raw: dict[str, str], name: str, line: int) -> tuple[dict, list[Problem]]:
    problems: list[Problem] = []
    where = f"line {line}" + (f" (id '{raw['id']}')" if raw.get("id") else "")

    def bad(column: str, message: str) -> None:
        problems.append(Problem(name, where, column, message))

    rec: dict = {**raw, "line": line}
    if not _ID.match(raw["id"]):
        bad("id", f"expected lowercase letters, digits and hyphens, got '{raw['id']}'")
    kind = raw["kind"]
    if kind not in KIND:
        bad("kind", f"expected one of {', '.join(KIND)}, got '{kind}'")
    for column in ("source", "quote"):
        if not raw[column]:
            bad(column, "must not be empty: every row keeps its source and verbatim quote")
    for column, cell in raw.items():
        # A spreadsheet runs a cell starting with one of these as a formula when an analyst
        # opens the ledger (=HYPERLINK(...) can leak data). Numbers have their own syntax,
        # which already refuses a sign.
        if cell[:1] in FORMULA_PREFIXES and column not in ("value", "lower", "upper"):
            bad(
                column,
                f"starts with '{cell[0]}', which a spreadsheet would run as a formula; "
                "reword it to start with another character",
            )
    if not re.match(r"^https?://\S+$", raw["url"]):
        bad("url", f"expected an http(s) address, got '{raw['url']}'")
    if raw["reliability"] not in GRADES:
        bad("reliability", f"expected one of {', '.join(GRADES)}, got '{raw['reliability']}'")

    # Imprecise dates are read at their latest: a report dated '2024-11' is certainly out by
    # 30 Nov, which is what replaying the evidence "as of" a date needs.
    for column, end in (("period_start", False), ("period_end", True), ("date_reported", True)):
        rec[column] = pd.NaT
        if raw[column]:
            try:
                rec[column] = parse_date(raw[column], end=end)
            except ValueError as exc:
                bad(column, str(exc))
    if not raw["date_reported"] and kind != "context":
        bad("date_reported", "must not be empty (YYYY-MM-DD, YYYY-MM or YYYY)")
    if pd.notna(rec["period_start"]) and pd.notna(rec["period_end"]):
        if rec["period_start"] > rec["period_end"]:
            bad(
                "period_start",
                f"period starts ({raw['period_start']}) after it ends ({raw['period_end']})",
            )

    for column in ("value", "lower", "upper"):
        rec[column] = np.nan
        if raw[column]:
            # One syntax: float() would also take '1_000', '1e308', 'nan' and other scripts'
            # digits, which no analyst means and the model cannot use.
            if not NUMBER.match(raw[column]) or float(raw[column]) > MAX_NUMBER:
                bad(
                    column,
                    f"expected a plain decimal number >= 0 and <= {MAX_NUMBER:,.0f} "
                    f"(e.g. 24 or 7.6), got '{raw[column]}'",
                )
                continue
            rec[column] = float(raw[column])

    if raw["bias_group"] and kind not in modelled_kinds():
        bad("bias_group", f"only modelled rows ({', '.join(modelled_kinds())}) take a bias group")
    elif raw["bias_group"] and not _ID.match(raw["bias_group"]):
        bad("bias_group", "expected lowercase letters, digits and hyphens")
    if raw["used"] and kind != "date_code":
        bad("used", "only date_code rows take a `used` date")
    if kind == "stage_ratio" and not STAGE.match(raw["stage"]):
        bad("stage", "a stage_ratio row names its stage (lowercase letters, digits, underscores)")
    elif raw["stage"] and kind != "stage_ratio":
        bad("stage", "only stage_ratio rows take a stage")
    if kind not in KIND or kind == "context":
        return rec, problems
    if kind == "date_code":
        return _date_code(raw, rec, bad), problems

    # Modelled kinds and area_ratio: bounds, unit and period must be complete.
    bound = raw["bound"]
    if bound not in BOUNDS:
        bad("bound", f"expected one of {', '.join(BOUNDS)}, got '{bound}'")
    else:
        needed = {
            "exact": ("value",),
            "at_least": ("lower",),
            "at_most": ("upper",),
            "between": ("lower", "upper"),
        }[bound]
        for column in ("value", "lower", "upper"):
            if column in needed and not raw[column]:
                bad(column, f"bound '{bound}' needs a {column}")
            elif column not in needed and raw[column]:
                bad(column, f"bound '{bound}' takes no {column} (leave it empty)")
        if bound == "between" and rec["lower"] > rec["upper"]:
            bad("lower", f"lower bound {raw['lower']} is above upper bound {raw['upper']}")
    if KIND[kind].unit == CASE_UNIT:
        if not raw["unit"]:
            bad("unit", f"kind '{kind}' is counted in the case's unit (case.toml `unit`)")
    elif raw["unit"] != KIND[kind].unit:
        bad("unit", f"kind '{kind}' is counted in '{KIND[kind].unit}', got '{raw['unit']}'")
    if KIND[kind].period == SPAN and (not raw["period_start"] or not raw["period_end"]):
        bad(
            "period_start" if not raw["period_start"] else "period_end",
            f"'{kind}' counts need the period they cover (period_start and period_end)",
        )
    if KIND[kind].period == DATE and not raw["period_end"]:
        bad("period_end", f"a '{kind}' row needs the date it refers to")
    if kind == "serial":
        if bound != "exact":
            bad("bound", "a serial number is read exactly: bound 'exact'")
        if not raw["period_end"]:
            bad("period_end", "a serial row needs the date the item was seen (period_end)")
    elif raw["block"]:
        bad("block", "only serial rows take a block")
    if kind == "area_ratio":
        if not raw["reading"]:
            bad("reading", "an area_ratio row names the reading of the wording it follows")
        for column in ("value", "lower", "upper"):
            if raw[column] and rec[column] < 1:
                bad(column, "a total floor-area ratio after/before an addition is at least 1")
    elif raw["reading"]:
        bad("reading", "only area_ratio rows take a reading")
    return rec, problems


DAYS_PER_MONTH = 365.25 / 12


def _date_code(raw: dict[str, str], rec: dict, bad) -> dict:
    """A date code: the mark puts the item's making between period_start and period_end, and
    it was used (or recovered) on `used`. So its production-to-use lag lies between
    used - period_end (at least 0) and used - period_start, in months: the row becomes a
    censored use_lag measurement, its bounds written into lower/upper (the ledger leaves them
    empty: capest computes them, so nobody does the date arithmetic by hand)."""
    for column in ("bound", "value", "lower", "upper"):
        if raw[column]:
            bad(column, "a date_code row leaves it empty: capest computes the lag's bounds")
    for column in ("period_start", "period_end", "used"):
        if not raw[column]:
            what = "the date it refers to" if column == "used" else "the window its mark allows"
            bad(column, f"a date_code row needs {what} ({column})")
    if raw["unit"] != KIND["date_code"].unit:
        bad("unit", f"kind 'date_code' is counted in 'months', got '{raw['unit']}'")
    if not raw["used"]:
        return rec
    try:
        earliest, latest = (parse_date(raw["used"], end=e) for e in (False, True))
    except ValueError as exc:
        bad("used", str(exc))
        return rec
    if pd.isna(rec["period_start"]) or pd.isna(rec["period_end"]):
        return rec
    if latest < rec["period_start"]:
        bad("used", f"the item was used ({raw['used']}) before its mark allows it was made")
        return rec
    low = max(0.0, (earliest - rec["period_end"]).days / DAYS_PER_MONTH)
    high = (latest - rec["period_start"]).days / DAYS_PER_MONTH
    rec["lower"] = round(low, 2) if low > 0 else np.nan
    rec["upper"] = round(high, 2)
    rec["bound"] = "between" if low > 0 else "at_most"
    return rec


LOCK_WAIT = 60.0  # seconds an add-evidence waits for another one on the same ledger


@contextlib.contextmanager
def ledger_lock(ledger: Path, wait: float = LOCK_WAIT):
    """Hold an exclusive lock on the folder that holds `ledger` for read-validate-replace, so
    concurrent appends land one after the other instead of the last writer dropping the
    others' rows. The lock is on the folder, not the file: os.replace puts a new file in the
    ledger's place, and a lock on the old one would not exclude the next writer. The kernel
    drops it when the process ends, even by SIGKILL, so no stale lock is left behind."""
    fd = os.open(ledger.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Busy(
                        f"another add-evidence has been writing to {ledger} for {wait:.0f} s; "
                        "nothing was written, try again"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _candidate_glob(ledger: Path) -> str:
    return f".{ledger.name}.add-*.tmp"


def candidate_path(real: Path) -> Path:
    """Where append_rows writes the file-to-be of `real` (the ledger, or a companion such as
    case.toml) while it is checked: a check that loads several files reads them from here."""
    real = Path(os.path.realpath(real))
    return real.parent / f".{real.name}.add-{os.getpid()}.tmp"


def append_row(
    path: str | Path, row: dict[str, str], check: Callable[[Path], object] | None = None
) -> Path:
    """Add one row to a ledger (add-evidence): append_rows with one row."""
    return append_rows(path, [row], check)


def append_rows(
    path: str | Path,
    rows: list[dict[str, str]],
    check: Callable[[Path], object] | None = None,
    companions: dict[Path, Callable[[str], str]] | None = None,
) -> Path:
    """Add rows to a ledger: validate the ledger as it would be with `check` (default
    `load_evidence`; add-evidence passes one that also checks it against case.toml, which
    loads the ledger itself), then replace the file atomically. On any problem nothing is
    written and InputError names the new row. Returns the file written.

    `companions` maps other files of the case folder to how their text changes with the rows
    (capest footprints adds its readings' weights to case.toml): they are rewritten under the
    same lock, their candidates (candidate_path) are in place while `check` runs, and they are
    replaced just before the ledger.

    A symlinked ledger is written through: the real file gets the rows and the link stays.
    The file keeps its mode, its line endings and any byte-order mark; only the new rows'
    bytes are added."""
    path = Path(path)
    unknown = {c for row in rows for c in row} - set(COLUMNS + OPTIONAL)
    if unknown:
        raise InputError(
            [Problem(str(path), "new row", c, "unknown column") for c in sorted(unknown)]
        )
    real = Path(os.path.realpath(path))
    companions = {Path(os.path.realpath(p)): edit for p, edit in (companions or {}).items()}
    with ledger_lock(real):
        # Candidates left by an add-evidence killed before it could clean up (SIGKILL): the
        # lock holder owns the folder's candidates, as the case lock owns .incomplete-*.
        for other in [real, *companions]:
            for stale in other.parent.glob(_candidate_glob(other)):
                stale.unlink(missing_ok=True)
        try:
            text = real.read_bytes().decode("utf-8")  # bytes: "\r\n" stays "\r\n"
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(
                [Problem(str(path), "file", "-", f"cannot read the ledger: {exc}")]
            ) from exc
        eol = "\r\n" if text.split("\n", 1)[0].endswith("\r") else "\n"
        if text and not text.endswith("\n"):
            text += eol
        header = header_of(text)
        missing = sorted({c for row in rows for c in OPTIONAL if row.get(c) and c not in header})
        if missing:
            message = "add this column to the ledger's header to use it"
            raise InputError([Problem(str(path), "header", c, message) for c in missing])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=eol)
        for row in rows:
            writer.writerow([row.get(c, "") for c in header])
        new_text = {real: text + out.getvalue()}
        for other, edit in companions.items():
            new_text[other] = edit(other.read_bytes().decode("utf-8"))
        candidates = {p: candidate_path(p) for p in new_text}
        try:
            for target, candidate in candidates.items():
                fd = os.open(
                    candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600
                )
                with os.fdopen(fd, "wb") as f:
                    os.fchmod(f.fileno(), stat.S_IMODE(target.stat().st_mode))
                    f.write(new_text[target].encode("utf-8"))
                    f.flush()
                    os.fsync(f.fileno())
            candidate = candidates[real]
            try:
                (check or load_evidence)(candidate)
            except InputError as exc:
                first_new = text.count(chr(10)) + 1
                new_lines = {f"line {first_new + i}" for i in range(len(rows))}

                def where(row: str) -> str:
                    line = row.split(" (", 1)[0]
                    if line not in new_lines:
                        return row
                    return "new row" if len(rows) == 1 else f"new row {row}"

                raise InputError(
                    [
                        # Problems in the candidate are the ledger's; others (case.toml) keep
                        # their file.
                        Problem(
                            str(path) if p.file == str(candidate) else p.file,
                            where(p.row) if p.file == str(candidate) else p.row,
                            p.column,
                            p.message,
                        )
                        for p in exc.problems
                    ]
                ) from None
            for target in [*companions, real]:  # the ledger last: its rows need the rest
                os.replace(candidates[target], target)
        finally:
            for candidate in candidates.values():  # on every exit but SIGKILL (see above)
                candidate.unlink(missing_ok=True)
    return real


def header_of(text: str) -> list[str]:
    """The ledger's own column order (its header), so an appended row lines up with it."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    return next(csv.reader([first])) if text else COLUMNS


def modelled_kinds() -> list[str]:
    """The kinds whose rows are measurements in the likelihood, in registry order."""
    return [k.name for k in KIND.values() if k.modelled]
