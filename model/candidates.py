"""Candidate measurements for "what to measure next" (model/voi.py): the ones every case gets,
built from its window and the evidence kinds the model measures, and the ones a case declares
in case.toml as `[candidates.<name>]` (data/README.md, 2.x), checked here like the rest of the
case file: every problem names the file, the key and what was expected.

A candidate is one new ledger row as the analyst would add it (kind, period, reliability
grade), with no value: its value is what the preposterior simulation draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from model import variables
from model.evidence import CASE_UNIT, DATE, GRADES, KIND, SPAN, modelled
from model.likelihood import OnPath
from model.timeline import Window, parse_date

if TYPE_CHECKING:
    from model.case import Case

# Kinds a candidate may be, from the evidence-kind registry (model/evidence.py), looked up
# when used (a test may add a kind): modelled counts in the case's unit over a span or to a
# date. These read the monthly paths the saved posterior holds (usage, production and, with
# the export share, exports: model/likelihood.py), so a fit can value them; a workforce
# count, a stage ratio, shipments or serials need terms that a case without such rows does
# not have in its model (README, "What to measure next"). Imagery of the floor-area ratio is
# valued on its own (its readings are a mixture, not a likelihood row).
IMAGERY = "area_ratio"


def _counts(period: str) -> tuple[str, ...]:
    return tuple(
        k.name for k in KIND.values() if k.modelled and k.unit == CASE_UNIT and k.period == period
    )


def span_kinds() -> tuple[str, ...]:
    return _counts(SPAN)


def date_kinds() -> tuple[str, ...]:
    return _counts(DATE)


def kinds() -> tuple[str, ...]:
    return (*span_kinds(), *date_kinds(), IMAGERY)


# How the report words a candidate of a kind; a kind without an entry gets "a <kind> figure".
SPAN_WORDS = {"launches": "a launch count for", "production": "a production figure for"}
DATE_WORDS = {
    "transfers": "a total transferred up to",
    "capacity": "a capacity figure ('can produce N a year') at",
}
KEYS = {"kind", "start", "end", "date", "reliability", "precision", "description"}
DEFAULT_GRADE = "B"
# Assumption (change it per candidate with `precision`): an imagery measurement of the
# floor-area ratio "to +-10%" is read as a log-normal error with sd ln(1.1).
DEFAULT_PRECISION = 0.10


@dataclass(frozen=True)
class Candidate:
    name: str
    kind: str
    start: pd.Timestamp | None  # first day (span kinds); None for a date kind or imagery
    end: pd.Timestamp | None  # last day (span kinds) or the date (date kinds)
    reliability: str = DEFAULT_GRADE
    precision: float = DEFAULT_PRECISION  # imagery only: relative error (one sd, log scale)
    description: str = ""

    def words(self) -> str:
        """The candidate in an analyst's words ("a launch count for March 2025 graded B")."""
        if self.description:
            return self.description
        grade = f"graded {self.reliability}"
        if self.kind == IMAGERY:
            return f"an imagery measurement of the floor-area ratio to ±{self.precision:.0%}"
        if self.start is None:  # a date kind
            what = DATE_WORDS.get(self.kind, f"a {self.kind} figure at")
            return f"{what} {self.end:%d %B %Y} {grade}"
        what = SPAN_WORDS.get(self.kind, f"a {self.kind} figure for")
        return f"{what} {_span_words(self.start, self.end)} {grade}"

    def ledger_row(self, unit: str) -> dict:
        """The candidate as one exact ledger row (model/observation.py reads it)."""
        start = self.start if self.start is not None else self.end
        return {
            "id": f"candidate-{self.name}",
            "kind": self.kind,
            "period_start": start,
            "period_end": self.end,
            "value": 1.0,  # a stand-in: the simulation supplies the value
            "lower": np.nan,
            "upper": np.nan,
            "bound": "exact",
            "unit": unit,
            "reliability": self.reliability,
            "superseded_by": "",
            "counted_as": "",
            "bias_group": "",
            "stage": "",
            "used": "",
        }


def _span_words(start: pd.Timestamp, end: pd.Timestamp) -> str:
    if start.day == 1 and end == (start + pd.offsets.MonthEnd(0)):
        return f"{start:%B %Y}"
    if start.month == 1 and start.day == 1 and end.month == 12 and end.day == 31:
        return f"{start.year}" if start.year == end.year else f"{start.year}-{end.year}"
    return f"{start:%d %b %Y} to {end:%d %b %Y}"


# The quantity a case may name as its target (`[voi] target`): a scalar the registry keeps
# from every refit (role REFIT, so a refit of a candidate can value it), or a year's production
# by year (`production_2025`) or the next calendar year's (`production_next_year`, the year
# after the latest evidence's). Without one the ranking is by the full rate after (DEFAULT).
DEFAULT_TARGET = "rate_after"
YEARLY = "production_by_year"
NEXT_YEAR = "production_next_year"


def target_names(window: Window) -> list[str]:
    """Every name `[voi] target` accepts for a case of this window."""
    scalars = [n for n in variables.select(variables.REFIT) if n != YEARLY]
    years = range(window.start.year, window.end.year + 1)
    return [*scalars, NEXT_YEAR, *[f"production_{y}" for y in years]]


def check_voi(settings: dict, window: Window, bad) -> list:
    """Problems in case.toml's [voi] table (its keys are checked with the rest of the file)."""
    table = settings.get("voi", {})
    if not isinstance(table, dict):
        return [bad("voi", 'expected a table [voi] (e.g. target = "rate_after")')]
    if "target" not in table:
        return []
    allowed = target_names(window)
    target = table["target"]
    if target not in allowed:
        message = f"expected one of {', '.join(allowed)}, got {target!r}"
        return [bad("voi.target", message)]
    return []


def check(settings: dict, window: Window, bad) -> list:
    """Problems in case.toml's [candidates.<name>] tables and its [voi] table (`bad(key,
    message)` makes one)."""
    problems = check_voi(settings, window, bad)
    table = settings.get("candidates", {})
    if not isinstance(table, dict):
        return [bad("candidates", "expected one table [candidates.<name>] per candidate")]
    first, last = window.start.start_time, window.end.end_time.normalize()
    for name, spec in table.items():
        key = f"candidates.{name}"
        if not isinstance(spec, dict):
            problems.append(bad(key, "expected a table [candidates.<name>]"))
            continue
        for extra in sorted(set(spec) - KEYS):
            message = f"unknown key (allowed here: {', '.join(sorted(KEYS))})"
            problems.append(bad(f"{key}.{extra}", message))
        kind = spec.get("kind")
        if kind not in kinds():
            message = f"expected one of {', '.join(kinds())}, got {kind!r}"
            problems.append(bad(f"{key}.kind", message))
            continue
        need = {"start", "end"} if kind in span_kinds() else set()
        need = {"date"} if kind in date_kinds() else need
        for k in sorted(need - set(spec)):
            problems.append(bad(f"{key}.{k}", f"a {kind} candidate needs '{k}'"))
        for k in sorted({"start", "end", "date"} & set(spec) - need):
            problems.append(bad(f"{key}.{k}", f"a {kind} candidate takes no '{k}'"))
        dates = {}
        for k in sorted(need & set(spec)):
            try:
                dates[k] = parse_date(str(spec[k]), end=k != "start")
            except ValueError as exc:
                problems.append(bad(f"{key}.{k}", str(exc)))
                continue
            if not first <= dates[k] <= last:
                problems.append(
                    bad(
                        f"{key}.{k}",
                        f"expected a date inside the case window ({window.start} to "
                        f"{window.end}): the saved fit has no month outside it",
                    )
                )
        if "start" in dates and "end" in dates and dates["end"] < dates["start"]:
            problems.append(bad(f"{key}.end", "the period ends before it starts"))
        if kind == "launches" and "start" in dates and "end" in dates:
            if dates["start"].day != 1 or dates["end"] != dates["end"] + pd.offsets.MonthEnd(0):
                problems.append(
                    bad(
                        f"{key}.start",
                        "a launch candidate covers whole months (start and end as YYYY-MM)",
                    )
                )
        grade = spec.get("reliability", DEFAULT_GRADE)
        if grade not in GRADES:
            problems.append(
                bad(f"{key}.reliability", f"expected one of {', '.join(GRADES)}, got {grade!r}")
            )
        if "precision" in spec:
            p = spec["precision"]
            ok = isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p)
            if kind != IMAGERY:
                problems.append(bad(f"{key}.precision", "only an area_ratio candidate takes it"))
            elif not (ok and 0 < p <= 1):
                problems.append(bad(f"{key}.precision", "expected a number in (0, 1], e.g. 0.1"))
        if "description" in spec and not isinstance(spec["description"], str):
            problems.append(bad(f"{key}.description", "expected a quoted string"))
    return problems


def declared(settings: dict) -> list[Candidate]:
    """The case's own candidates (already checked by `check`)."""
    out = []
    for name, spec in settings.get("candidates", {}).items():
        kind = spec["kind"]
        start = parse_date(str(spec["start"])) if "start" in spec else None
        end = (
            parse_date(str(spec.get("end", spec.get("date"))), end=True)
            if kind != IMAGERY
            else None
        )
        out.append(
            Candidate(
                name,
                kind,
                start,
                end,
                spec.get("reliability", DEFAULT_GRADE),
                float(spec.get("precision", DEFAULT_PRECISION)),
                spec.get("description", ""),
            )
        )
    return out


def defaults(window: Window, ledger: pd.DataFrame) -> list[Candidate]:
    """What every case is offered: a launch count for the latest month no launch row covers
    (graded B), a transfer count to the window's end (B), an official production figure for
    the window's last year and a capacity figure at its end (C: officials' round numbers),
    and an imagery measurement of the floor-area ratio to +-10%. `ledger` holds the modelled
    rows (kind, period_start, period_end as timestamps)."""
    end = window.end.end_time.normalize()
    launches = ledger[ledger["kind"] == "launches"]
    covered = np.zeros(window.n_months)
    for _, row in launches.iterrows():
        covered += window.overlap(row["period_start"], row["period_end"])
    free = [i for i in range(window.n_months) if covered[i] == 0]
    month = window.months[free[-1] if free else window.n_months - 1]
    year = window.end.year
    return [
        Candidate(
            "launches-" + str(month),
            "launches",
            month.start_time,
            month.end_time.normalize(),
        ),
        Candidate("transfers-" + f"{end:%Y-%m}", "transfers", None, end),
        Candidate(
            f"production-{year}",
            "production",
            pd.Timestamp(year=year, month=1, day=1),
            pd.Timestamp(year=year, month=12, day=31),
            reliability="C",
        ),
        Candidate("capacity-" + f"{end:%Y-%m}", "capacity", None, end, reliability="C"),
        Candidate("imagery-area-ratio", IMAGERY, None, None),
    ]


def of_case(case: Case) -> list[Candidate]:
    """The case's candidates, known before its fit: the defaults of its window and modelled
    rows, then its declared ones (the list voi.all_candidates reads back from the fit)."""
    return [*defaults(case.window, modelled(case.evidence)), *declared(case.settings)]


def candidate_paths(case: Case) -> tuple[str, ...]:
    """The monthly paths (model/likelihood.py PATHS) the case's candidate rows read: the case's
    model keeps them (model/build.py), so that the candidates' refits need no model of their
    own. Imagery is a reading of the mixture, not a row."""
    paths = []
    for c in of_case(case):
        if c.kind == IMAGERY:
            continue
        measures = KIND[c.kind].likelihood(pd.Series(c.ledger_row(case.unit)), case.window)
        if isinstance(measures, OnPath):
            paths.append(measures.path)
    return tuple(dict.fromkeys(paths))
