"""A case: what is estimated (case.toml) and the evidence for it (the ledger)."""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

import pandas as pd

from model import candidates
from model.errors import InputError, Problem
from model.evidence import (
    CASE_UNIT,
    KIND,
    MAX_NUMBER,
    STAGE,
    load_evidence,
    read_text,
)
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
        "footprints",
        "candidates",  # measurements to value (model/candidates.py checks their keys)
        "voi",  # the quantity "what to measure next" ranks by (model/candidates.py)
    },
    "voi": {"target"},
    "window": {"start", "end"},
    "exports": {"start", "rationale", "evidence"},
    "area_ratio": {"weights", "rationale", "evidence"},
    "measurement": {"noise", "rationale", "outlier_share", "outlier_sd", "bias_sd"},
    "measurement.noise": {"A", "B", "C", "D"},
    # building outlines on dated imagery: model/footprints.py SETTINGS, data/README.md 3.10
    "footprints": {
        "file",
        "source",
        "url",
        "reliability",
        "edge_sd_pixels",
        "unknown_storeys",
        "rationale",
    },
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
class Scenario:
    """One [scenarios.<name>]: an alternative the report compares with the estimate."""

    name: str
    description: str
    priors: dict[str, dict]  # prior overrides, each as a [priors.<name>] table
    weights: dict[str, float] | None  # reading weights (any scale); None: the case's

    @classmethod
    def from_table(cls, name: str, table: dict) -> Scenario:
        weights = dict(table["weights"]) if "weights" in table else None
        return cls(name, str(table.get("description", "")), dict(table.get("priors", {})), weights)

    def reading_weights(self, case_weights: dict[str, float]) -> dict[str, float]:
        """The weight of each of the case's readings under this scenario, summing to 1 (a
        reading the scenario does not name gets 0)."""
        if self.weights is None:
            return dict(case_weights)
        total = float(sum(self.weights.values()))
        return {r: float(self.weights.get(r, 0.0)) / total for r in case_weights}


@dataclass(frozen=True)
class Stage:
    """One [stages.<name>]: a production stage besides the assembly floor."""

    name: str
    description: str
    rationale: str
    evidence: tuple[str, ...]

    @classmethod
    def from_table(cls, name: str, table: dict) -> Stage:
        # load_case does not check these documentation keys' types: any value reads as text
        evidence = table.get("evidence", [])
        return cls(
            name,
            str(table.get("description", "")),
            str(table.get("rationale", "")),
            tuple(map(str, evidence if isinstance(evidence, list) else [evidence])),
        )


@dataclass(frozen=True)
class Measurement:
    """A [measurement] table (data/priors.toml's defaults, or a case's overrides): None
    where the table does not set the value."""

    noise: dict[str, float] | None  # noise sd per reliability grade, replaced as a whole
    outlier_share: float | None
    outlier_sd: float | None
    bias_sd: float | None
    rationale: str | None

    @classmethod
    def from_table(cls, table: dict) -> Measurement:
        def number(key: str) -> float | None:
            return float(table[key]) if key in table else None

        noise = table.get("noise")
        return cls(
            None if noise is None else {k: float(v) for k, v in noise.items()},
            number("outlier_share"),
            number("outlier_sd"),
            number("bias_sd"),
            str(table["rationale"]) if "rationale" in table else None,
        )

    def over(self, defaults: Measurement) -> Measurement:
        """These settings where set, the defaults' elsewhere."""
        return Measurement(
            *(
                mine if mine is not None else default
                for mine, default in zip(self._values(), defaults._values(), strict=True)
            )
        )

    def _values(self) -> tuple:
        return (self.noise, self.outlier_share, self.outlier_sd, self.bias_sd, self.rationale)


@dataclass(frozen=True)
class SerialBlock:
    """One [serials.<block>] as written; model/serials.py checks it against the window."""

    name: str
    keys: tuple[str, ...]  # every key given (model/serials.py refuses unknown ones)
    start: str | None
    end: str | None
    first: float | None
    first_lower: float

    @classmethod
    def from_table(cls, name: str, table: dict) -> SerialBlock:
        def text(key: str) -> str | None:
            return str(table[key]) if key in table else None

        first = float(table["first"]) if "first" in table else None
        return cls(
            name,
            tuple(table),
            text("start"),
            text("end"),
            first,
            float(table.get("first_lower", 0)),
        )


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
    settings: dict  # the parsed case.toml; its tables typed below (scenarios, stages, ...)
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
        return list(self.declared_stages)

    # The tables below case.toml's top level, typed (load_case has validated them).
    @cached_property
    def scenarios(self) -> dict[str, Scenario]:
        return self._named("scenarios", Scenario)

    @cached_property
    def declared_stages(self) -> dict[str, Stage]:
        return self._named("stages", Stage)

    @cached_property
    def measurement(self) -> Measurement:
        return Measurement.from_table(self.settings.get("measurement", {}))

    @cached_property
    def serial_blocks(self) -> dict[str, SerialBlock]:
        return self._named("serials", SerialBlock)

    def _named(self, key: str, kind):
        """[<key>.<name>] tables as `kind`s, by name."""
        return {n: kind.from_table(n, t) for n, t in self.settings.get(key, {}).items()}


def load_case(
    path: str | Path, *, as_of: str | None = None, evidence: str | Path | None = None
) -> Case:
    """Load case.toml and its ledger from a case folder (or the case.toml itself).
    `evidence` checks another ledger against the case instead of the one case.toml names
    (add-evidence checks the ledger-to-be this way before it replaces the file)."""
    path = Path(path)
    case_file = path / CASE_FILE if path.is_dir() else path
    name = str(case_file)
    text = read_text(case_file, "case file", MAX_CASE_BYTES)
    try:
        settings = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError([Problem(name, "file", "-", f"not valid TOML: {exc}")]) from exc
    problems = _check_types(settings, text, name)
    if problems:  # the key and value checks below rely on the tables being tables
        raise InputError(problems)
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
    problems += _check_weights(weights, "area_ratio.weights", bad)
    for scenario, table in settings.get("scenarios", {}).items():
        key = f"scenarios.{scenario}.weights"
        if "weights" in table:
            problems += _check_weights(table["weights"], key, bad)
    problems += _check_measurement(settings.get("measurement", {}), bad)
    ledger_name = PurePosixPath(settings["evidence"])
    if not settings["evidence"] or ledger_name.is_absolute() or ".." in ledger_name.parts:
        problems.append(
            bad("evidence", "expected a file name inside the case folder (no '..', not absolute)")
        )
    for block, table in settings.get("serials", {}).items():
        for key in ("start", "end"):
            if key in table:
                try:
                    parse_date(str(table[key]))
                except ValueError as exc:
                    problems.append(bad(f"serials.{block}.{key}", str(exc)))
        for key in ("first", "first_lower"):
            if key in table and not (_number(table[key]) and 0 <= table[key] <= MAX_NUMBER):
                problems.append(bad(f"serials.{block}.{key}", "expected a number >= 0"))
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
    problems = candidates.check(settings, window, bad)
    if problems:
        raise InputError(problems)
    evidence_path = Path(evidence) if evidence else case_file.parent / str(settings["evidence"])
    evidence = load_evidence(evidence_path)
    if as_of is not None:
        try:
            cutoff = parse_date(as_of, end=True)
        except ValueError as exc:
            raise InputError([Problem("command line", "-", "--as-of", str(exc))]) from None
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


# What each entry of case.toml must be, by its dotted key; "*" is any name (a prior, a
# scenario, a block, a stage). Checked before the keys and values, so that `priors = 5` is
# an error naming the key, not a crash three functions later.
_TABLES = (
    "window",
    "exports",
    "area_ratio",
    "area_ratio.weights",
    "priors",
    "priors.*",
    "measurement",
    "measurement.noise",
    "scenarios",
    "scenarios.*",
    "scenarios.*.priors",
    "scenarios.*.priors.*",
    "scenarios.*.weights",
    "serials",
    "serials.*",
    "stages",
    "stages.*",
)
_STRINGS = (
    "id",
    "title",
    "product",
    "unit",
    "evidence",
    "exports.rationale",
    "area_ratio.rationale",
    "measurement.rationale",
    "scenarios.*.description",
    "serials.*.description",
    "stages.*.description",
    "stages.*.rationale",
)
MAX_CASE_BYTES = 1_000_000


def _entries(settings: dict, pattern: str):
    """(dotted key, value) of every entry matching a pattern of _TABLES / _STRINGS."""
    found = [("", settings)]
    for part in pattern.split("."):
        found = [
            (f"{key}.{k}" if key else k, v)
            for key, node in found
            if isinstance(node, dict)
            for k, v in node.items()
            if part in ("*", k)
        ]
    return found


def _check_types(settings: dict, text: str, name: str) -> list[Problem]:
    problems = []
    for pattern in _TABLES:
        for key, value in _entries(settings, pattern):
            if not isinstance(value, dict):
                message = f"expected a table ([{key}]), got {type(value).__name__} {value!r}"
                problems.append(Problem(name, _line_of(text, key), key, message))
    for pattern in _STRINGS:
        for key, value in _entries(settings, pattern):
            if not isinstance(value, str):
                message = f"expected a quoted string, got {type(value).__name__} {value!r}"
                problems.append(Problem(name, _line_of(text, key), key, message))
    return problems


def _number(value) -> bool:
    """A finite TOML number (a boolean is not one, though Python counts it as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_weights(weights: dict, key: str, bad) -> list[Problem]:
    if not weights:
        return [bad(key, "expected a table of reading = weight")]
    if any(not _number(w) or not 0 <= w <= MAX_NUMBER for w in weights.values()):
        return [bad(key, f"weights must be finite numbers between 0 and {MAX_NUMBER:g}")]
    if sum(weights.values()) <= 0:
        return [bad(key, "at least one weight must be positive")]
    return []


def _check_measurement(measurement: dict, bad) -> list[Problem]:
    """A case's [measurement] overrides, checked here so that an error names the case file
    (resolve_priors checks the merged table, and names data/priors.toml)."""
    problems = []
    rules = {
        "outlier_share": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
        "outlier_sd": (lambda v: v > 0, "a number > 0"),
        "bias_sd": (lambda v: v > 0, "a number > 0"),
    }
    for key, (ok, expected) in rules.items():
        if key in measurement and not (_number(measurement[key]) and ok(measurement[key])):
            problems.append(bad(f"measurement.{key}", f"expected {expected}"))
    if "noise" in measurement:
        noise = measurement["noise"]
        for grade in "ABCD":
            if not (_number(noise.get(grade)) and noise[grade] > 0):
                problems.append(
                    bad(
                        f"measurement.noise.{grade}",
                        "[measurement.noise] replaces the whole table: give A, B, C and D, "
                        "each a number > 0",
                    )
                )
    return problems


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
    counted = [k.name for k in KIND.values() if k.unit == CASE_UNIT]
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
    for scenario, table in settings.get("scenarios", {}).items():
        for reading in table.get("weights", {}):
            if reading not in weights:
                key = f"scenarios.{scenario}.weights.{reading}"
                message = "no such reading in [area_ratio.weights]"
                problems.append(Problem(name, _line_of(text, key), key, message))
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
    first_day = window.start.start_time
    in_time = [*counted, "serial"]  # rows the model places on its monthly grid
    for _, row in evidence[evidence["kind"].isin(in_time)].iterrows():
        if row["period_end"] < first_day:
            problems.append(
                Problem(
                    str(evidence_path),
                    f"line {row['line']} (id '{row['id']}')",
                    "period_end",
                    f"ends before the case window starts ({window.start}): the model has no "
                    "month for it; widen [window] or make it a context row",
                )
            )
    declared = settings.get("serials", {})
    for _, row in evidence[evidence["kind"] == "serial"].iterrows():
        name = row["block"] or next(iter(declared), "")
        table = declared.get(name, {})
        where = f"line {row['line']} (id '{row['id']}')"
        if "start" in table and row["period_end"] < parse_date(str(table["start"])):
            problems.append(
                Problem(
                    str(evidence_path),
                    where,
                    "period_end",
                    f"seen before block '{name}' starts ({table['start']}): none of its items "
                    "was made yet",
                )
            )
        if "first" in table and row["value"] < table["first"]:
            problems.append(
                Problem(
                    str(evidence_path),
                    where,
                    "value",
                    f"below the first serial of block '{name}' ({table['first']})",
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
