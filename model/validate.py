"""`capest validate CASE`: every input check `capest estimate` makes before it samples, and
nothing else (no lock, no compilation, no sampling), so a ledger edit is checked in seconds.

It runs the same loaders as the estimate, in the same order, so an InputError here is word
for word the one the estimate would stop with.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Validated:
    case_id: str
    kind: str  # "case" or "programme"
    evidence_rows: int
    plants: int = 1


def validate(path: str, as_of: str | None = None) -> Validated:
    """Load and check a case or programme folder as `capest estimate` does; raise InputError
    listing every problem found."""
    from model import load_case
    from model.footprints_report import summary_block
    from model.priors import resolve_priors
    from model.programme import is_programme, load_programme, resolve_programme_priors
    from model.serials import serial_rows

    if is_programme(path):
        programme = load_programme(path, as_of=as_of)
        resolve_programme_priors(programme)
        for plant in programme.plants:
            serial_rows(plant)
        rows = sum(len(p.evidence) for p in programme.plants)
        return Validated(programme.id, "programme", rows, len(programme.plants))
    case = load_case(path, as_of=as_of)
    resolve_priors(case)
    # What the estimate would otherwise find only after sampling: each scenario's priors
    # and the serial rows against their blocks.
    for name, scenario in case.scenarios.items():
        if scenario.priors:
            resolve_priors(case, scenario=name)
    serial_rows(case)
    summary_block(case)  # the footprints file, when the case has one
    return Validated(case.id, "case", len(case.evidence))
