"""Calendar <-> model time. Model time is in months since the window start: month t covers
[t, t + 1), and a date maps to t + (day - 1) / days_in_month."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$", re.ASCII)  # \d alone takes any script's digits
FIRST_YEAR, LAST_YEAR = 1900, 2100


def parse_date(text: str, *, end: bool = False) -> pd.Timestamp:
    """Parse 'YYYY-MM-DD', 'YYYY-MM' or 'YYYY'. A month or year alone means its first day,
    or its last day when `end` is true (a period that ends 'in 2024-06' includes all of June;
    a report dated only '2025' is certainly out by 2025-12-31)."""
    if not _DATE.match(text):
        raise ValueError(f"expected a date as YYYY-MM-DD, YYYY-MM or YYYY, got '{text}'")
    if not FIRST_YEAR <= int(text[:4]) <= LAST_YEAR:  # year 0000 is a typo, not a date
        raise ValueError(f"expected a year from {FIRST_YEAR} to {LAST_YEAR}, got '{text}'")
    if len(text) < 10:
        period = pd.Period(text, freq="M" if len(text) == 7 else "Y")
        return period.end_time.normalize() if end else period.start_time
    try:
        return pd.Timestamp(text)
    except ValueError as exc:
        raise ValueError(f"not a calendar date: '{text}'") from exc


@dataclass(frozen=True)
class Window:
    """The monthly grid on which production is modelled."""

    start: pd.Period  # first month
    end: pd.Period  # last month (inclusive)

    @property
    def months(self) -> pd.PeriodIndex:
        return pd.period_range(self.start, self.end, freq="M")

    @property
    def n_months(self) -> int:
        return len(self.months)

    @property
    def labels(self) -> list[str]:
        return [str(m) for m in self.months]

    @property
    def years(self) -> list[int]:
        return sorted({m.year for m in self.months})

    @property
    def year_of_month(self) -> np.ndarray:
        """(year, month) 0/1 weights: a monthly path times its transpose sums it by year."""
        return np.array([[m.year == y for m in self.months] for y in self.years], dtype=float)

    def time_of(self, date: pd.Timestamp, *, end_of_day: bool = False) -> float:
        """Continuous model time of a date (end of that day if `end_of_day`)."""
        month = pd.Period(date, freq="M")
        index = (month - self.start).n
        fraction = (date.day - 1 + (1.0 if end_of_day else 0.0)) / month.days_in_month
        return float(index + fraction)

    def date_of(self, t: float) -> pd.Timestamp:
        """Inverse of time_of, for reporting a continuous time as a date."""
        whole = int(np.floor(t))
        month = self.start + whole
        return month.start_time + pd.Timedelta(days=(t - whole) * month.days_in_month)

    def overlap(self, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
        """Fraction of each month covered by the days start..end (inclusive)."""
        a, b = self.time_of(start), self.time_of(end, end_of_day=True)
        t = np.arange(self.n_months)
        return np.clip(np.minimum(b, t + 1) - np.maximum(a, t), 0.0, 1.0)

    def cumulative(self, date: pd.Timestamp) -> np.ndarray:
        """Weights that sum monthly amounts up to the end of `date`."""
        d = self.time_of(date, end_of_day=True)
        return np.clip(d - np.arange(self.n_months), 0.0, 1.0)
