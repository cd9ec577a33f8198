"""What a row of each evidence kind measures: one function per kind, which the kind's
declaration in model/evidence.py (`Kind.likelihood`) points to.

Every modelled row enters the likelihood the same way (model/observation.py: censored, robust
normal on log(1 + predicted)); what differs by kind is the predicted quantity, in one of two
forms:

- `OnPath`: a weighted sum over the months of one of the plant's monthly paths (PATHS), e.g.
  launches in a period = the month-by-month use times the share of each month in the period;
- `OnVariable`: one of the model's scalar variables itself, e.g. the worker ratio.

model/build.py turns the forms into the graph, one matrix product per path for every row that
reads it (kinds that read one path share its product: fewer operations to compile and
differentiate). A new kind is its declaration in EVIDENCE_KINDS, its function here and its row
in data/README.md 3.2 (tests/test_evidence_kinds.py adds one that way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from model.timeline import Window, parse_date

# The monthly paths a row can read (model/build.py `plant_graph` makes them):
#   use        units used in the month (the latent use of the stock model)
#   exported   production counted as exported in the month
#   age        mean months between production and use of the items used in the month
#   production production in the month
#   shipped    exported units / (units a carrying shipment holds x share of shipments carrying)
PATHS = ("use", "exported", "age", "production", "shipped")


@dataclass(frozen=True)
class OnPath:
    """The row measures sum over months of weights x path."""

    path: str  # one of PATHS
    weights: np.ndarray  # (month,)


@dataclass(frozen=True)
class OnVariable:
    """The row measures one scalar variable of the model, by its name (a prior's)."""

    name: str


Measures = OnPath | OnVariable


def month_of(window: Window, date) -> int:
    """The window's month that holds `date` (the first or last month outside the window)."""
    return min(max(int(np.floor(window.time_of(date))), 0), window.n_months - 1)


def _at(window: Window, date, value: float = 1.0) -> np.ndarray:
    weights = np.zeros(window.n_months)
    weights[month_of(window, date)] = value
    return weights


def launches(row: pd.Series, window: Window) -> Measures:
    """Items used in the period (launched, fired)."""
    return OnPath("use", window.overlap(row["period_start"], row["period_end"]))


def transfers(row: pd.Series, window: Window) -> Measures:
    """Items exported (delivered) up to period_end."""
    return OnPath("exported", window.cumulative(row["period_end"]))


def use_lag(row: pd.Series, window: Window) -> Measures:
    """Months between production and use of an item used on period_end."""
    return OnPath("age", _at(window, row["period_end"]))


def date_code(row: pd.Series, window: Window) -> Measures:
    """A made-in mark on an item used on `used`: its lag bound (model/evidence.py) is the
    mean age of the items used in that month."""
    return OnPath("age", _at(window, parse_date(row["used"], end=True)))


def production(row: pd.Series, window: Window) -> Measures:
    """Made between period_start and period_end ("produced N in 2024")."""
    return OnPath("production", window.overlap(row["period_start"], row["period_end"]))


def capacity(row: pd.Series, window: Window) -> Measures:
    """Units a year at the rate of period_end's month ("can produce N a year")."""
    return OnPath("production", _at(window, row["period_end"], 12.0))


def shipments(row: pd.Series, window: Window) -> Measures:
    """Containers or rail cars leaving in the period, some of them with the product."""
    return OnPath("shipped", window.overlap(row["period_start"], row["period_end"]))


def workforce_ratio(row: pd.Series, window: Window) -> Measures:
    """Workers after / before the expansion."""
    return OnVariable("workforce_ratio")


def stage_ratio(row: pd.Series, window: Window) -> Measures:
    """Capacity after / before of one declared stage: its growth's prior variable."""
    from model.priors import stage_prior  # deferred: priors reads the kind registry

    return OnVariable(stage_prior(row["stage"]))
