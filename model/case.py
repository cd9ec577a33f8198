"""A case: what is estimated (case.toml) and the evidence for it (the ledger)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from model.errors import InputError, Problem
from model.evidence import CASE_UNIT, KINDS, STAGE, load_evidence
from model.timeline import Window, parse_date

CASE_FILE = "case.toml"
CASE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# Allowed keys, per table. Anything else is a typo and is refused, never ignored.
_SCHEMA: dict[str, set[str]] = {
    "": {
        "id",
        "title",
        "product",
        "unit",
        "evidence",
        "window",
        "exports",
        "area_ratio",
        "priors",
        "measurement",
        "scenarios",
        "serials",
        "stages",
    },
    "window": {"start", "end"},
    "exports": {"start", "rationale", "evidence"},
    "area_ratio": {"weights", "rationale", "evidence"},
    "measurement": {"noise", "rationale", "outlier_share", "outlier_sd", "bias_sd"},
    "measurement.noise": {"A", "B", "C", "D"},
}
_SCENARIO_KEYS = {"description", "priors", "weights"}  # in each [scenarios.<name>]
_STAGE_KEYS = {"description", "rationale", "evidence"}  # in each [stages.<name>]
ASSEMBLY = "assembly_floor"  # the stage every case has: floor area (and workers)
_REQUIRED = {
    "": ("id", "title", "unit", "evidence", "window", "exports", "area_ratio"),
    "window": ("start", "end"),
    "exports": ("start",),
    "area_ratio": ("weights",),
}


@dataclass(frozen=True)
class Case:
    """A validated case: its settings, its evidence, and where they came from."""

    path: Path
    id: str
    title: str
    product: str
    unit: str
    window: Window
    export_start: pd.Timestamp
    reading_weights: dict[str, float]
    settings: dict  # the parsed case.toml, for priors and the report
    evidence: pd.DataFrame = field(repr=False)
    input_files: tuple[Path, ...] = ()
    as_of: str | None = None  # evidence reported after this date was left out (--as-of)

    @property
    def readings(self) -> list[str]:
        return list(self.reading_weights)

    @property
    def stages(self) -> list[str]:
        """Production stages declared besides the assembly floor ([stages.<name>]); with any,
        capacity is the (smooth) minimum over the stages (model/build.py)."""
        return list(self.settings.get("stages", {}))


def load_case(
    path: str | Path, *, as_of: str | None = None, evidence: str | Path | None = None
) -> Case:
    """Load case.toml and its ledger from a case folder (or the case.toml itself).
    `evidence` checks another ledger against the case instead of the one case.toml names
    (add-evidence checks the ledger-to-be this way before it replaces the file)."""
    path = Path(path)
    case_file = path / CASE_FILE if path.is_dir() else path
    name = str(case_file)
    try:
        text = case_file.read_text(encoding="utf-8")
        settings = tomllib.loads(text)
    except OSError as exc:
        raise InputError([Problem(name, "file", "-", f"cannot read the case file: {exc}")]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError([Problem(name, "file", "-", f"not valid TOML: {exc}")]) from exc
    problems = _check_keys(settings, text, name)
    if problems:
        raise InputError(problems)

    def bad(key: str, message: str) -> Problem:
        return Problem(name, _line_of(text, key), key, message)

    case_id = str(settings["id"])
    if not CASE_ID.match(case_id):
        problems.append(
            bad("id", f"expected lowercase letters, digits and hyphens, got '{case_id}'")
        )
    dates = {}
    for key, value, end in (
        ("window.start", settings["window"]["start"], False),
        ("window.end", settings["window"]["end"], True),
        ("exports.start", settings["exports"]["start"], False),
    ):
        try:
            dates[key] = parse_date(str(value), end=end)
        except ValueError as exc:
            problems.append(bad(key, str(exc)))
    weights = settings["area_ratio"]["weights"]
    if not isinstance(weights, dict) or not weights:
        problems.append(bad("area_ratio.weights", "expected a table of reading = weight"))
    elif any(not isinstance(w, int | float) or w < 0 for w in weights.values()):
        problems.append(bad("area_ratio.weights", "weights must be numbers >= 0"))
    elif sum(weights.values()) <= 0:
        problems.append(bad("area_ratio.weights", "at least one weight must be positive"))
    stages = settings.get("stages", {})
    if not isinstance(stages, dict) or not all(isinstance(v, dict) for v in stages.values()):
        problems.append(bad("stages", "expected one table [stages.<name>] per stage"))
        stages = {}
    for stage in stages:
        if not STAGE.match(stage) or stage == ASSEMBLY:
            problems.append(
                bad(
                    f"stages.{stage}",
                    "a stage name is lowercase letters, digits and underscores, and not "
                    f"'{ASSEMBLY}' (the floor-area stage every case has)",
                )
            )
    if problems:
        raise InputError(problems)

    window = Window(pd.Period(dates["window.start"], "M"), pd.Period(dates["window.end"], "M"))
    if window.end < window.start:
        raise InputError([bad("window.end", "the window ends before it starts")])
    evidence_path = Path(evidence) if evidence else case_file.parent / str(settings["evidence"])
    evidence = load_evidence(evidence_path)
    if as_of is not None:
        cutoff = parse_date(as_of, end=True)
        evidence = evidence[evidence["date_reported"] <= cutoff]
    _check_against_case(evidence, settings, window, evidence_path, name, text, as_of)

    total = float(sum(weights.values()))
    return Case(
        path=case_file.parent,
        id=case_id,
        title=str(settings["title"]),
        product=str(settings.get("product", "")),
        unit=str(settings["unit"]),
        window=window,
        export_start=dates["exports.start"],
        reading_weights={k: float(v) / total for k, v in weights.items()},
        settings=settings,
        evidence=evidence,
        input_files=(case_file, evidence_path),
        as_of=as_of,
    )


def input_hash(paths: list[Path] | tuple[Path, ...]) -> str:
    """sha256 over the bytes of every input file, in the given order, with its name."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(Path(p).name.encode() + b"\0" + Path(p).read_bytes() + b"\0")
    return digest.hexdigest()


def _check_keys(settings: dict, text: str, name: str) -> list[Problem]:
    scenarios = settings.get("scenarios", {})
    stages = settings.get("stages", {})
    schema = {
        **_SCHEMA,
        **{f"scenarios.{s}": _SCENARIO_KEYS for s in scenarios},
        **{f"stages.{s}": _STAGE_KEYS for s in stages if isinstance(stages, dict)},
    }
    problems = []
    for table, allowed in schema.items():
        node = settings
        for part in table.split(".") if table else []:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict):
            continue
        for key in node:
            if key not in allowed:
                full = f"{table}.{key}" if table else key
                message = f"unknown key (allowed here: {', '.join(sorted(allowed))})"
                problems.append(Problem(name, _line_of(text, full), full, message))
    for table, keys in _REQUIRED.items():
        node = settings.get(table, {}) if table else settings
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                full = f"{table}.{key}" if table else key
                problems.append(Problem(name, "-", full, "required key is missing"))
    return problems


def _check_against_case(evidence, settings, window, evidence_path, name, text, as_of=None) -> None:
    """Cross-checks between the ledger and the case: readings named, dates in the window,
    counts in the case's unit."""
    weights = settings["area_ratio"]["weights"]
    problems = []
    counted = [kind for kind, unit in KINDS.items() if unit == CASE_UNIT]
    for _, row in evidence[evidence["kind"].isin(counted)].iterrows():
        if row["unit"] != str(settings["unit"]):
            problems.append(
                Problem(
                    str(evidence_path),
                    f"line {row['line']} (id '{row['id']}')",
                    "unit",
                    f"counts are in the case's unit '{settings['unit']}', got '{row['unit']}'",
                )
            )
    readings = set(evidence.loc[evidence["kind"] == "area_ratio", "reading"])
    for reading in sorted(readings - set(weights)):
        problems.append(
            Problem(
                name,
                _line_of(text, "area_ratio.weights"),
                "area_ratio.weights",
                f"the ledger has area_ratio rows with reading '{reading}' but no weight for it",
            )
        )
    for reading in sorted(set(weights) - readings):
        problems.append(
            Problem(
                name,
                _line_of(text, f"area_ratio.weights.{reading}"),
                f"area_ratio.weights.{reading}",
                "no area_ratio row in the ledger has this reading"
                + (f" (using only evidence reported by {as_of})" if as_of else ""),
            )
        )
    stages = settings.get("stages", {})
    for _, row in evidence[evidence["kind"] == "stage_ratio"].iterrows():
        if row["stage"] not in stages:
            problems.append(
                Problem(
                    str(evidence_path),
                    f"line {row['line']} (id '{row['id']}')",
                    "stage",
                    f"no stage '{row['stage']}' is declared: add [stages.{row['stage']}] to "
                    "the case file",
                )
            )
    last = window.end.end_time
    for _, row in evidence[evidence["kind"].isin(counted)].iterrows():
        if row["period_end"] > last:
            problems.append(
                Problem(
                    str(evidence_path),
                    f"line {row['line']} (id '{row['id']}')",
                    "period_end",
                    f"ends after the case window ({window.end}); widen [window] in the case file",
                )
            )
    if problems:
        raise InputError(problems)


def _line_of(text: str, key_path: str) -> str:
    """Best-effort 'line N' for a dotted TOML key or table, for error messages."""
    lines = text.splitlines()

    def header(parts: list[str]) -> int | None:
        pattern = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, parts)) + r"\s*\]")
        return next((i for i, ln in enumerate(lines) if pattern.match(ln)), None)

    parts = key_path.split(".")
    table = header(parts)
    if table is not None:  # the key names a table
        return f"line {table + 1}"
    *tables, key = parts
    start = (header(tables) or 0) if tables else 0
    pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for i in range(start, len(lines)):
        if pattern.match(lines[i]):
            return f"line {i + 1}"
    return f"line {start + 1}" if tables else "-"
