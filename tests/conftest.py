"""Shared fixtures. Fits here use few draws: they test the plumbing, not the estimate
(the estimate at default settings is checked by the CLI test and by `make report`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "data" / "cases" / "february-11-plant"
HEADER = (
    "id,kind,period_start,period_end,value,lower,upper,bound,unit,reading,source,url,"
    "date_reported,reliability,quote,note"
)


def row(**cells) -> str:
    """One ledger line with sensible defaults, for tests that build small ledgers."""
    base = {
        "id": "launches-x",
        "kind": "launches",
        "period_start": "2024-01-01",
        "period_end": "2024-01-31",
        "value": "10",
        "lower": "",
        "upper": "",
        "bound": "exact",
        "unit": "missiles",
        "reading": "",
        "source": "Outlet",
        "url": "https://example.org/a",
        "date_reported": "2024-02-01",
        "reliability": "B",
        "quote": "ten were fired",
        "note": "",
    }
    base.update(cells)
    return ",".join(f'"{v}"' if "," in v else v for v in base.values())


@pytest.fixture
def case_copy(tmp_path) -> Path:
    """A writable copy of the February 11 case folder."""
    dest = tmp_path / "case"
    shutil.copytree(CASE, dest)
    return dest


@pytest.fixture(scope="session")
def small_fit():
    """One fit of the real case with few draws, shared by the summary and report tests."""
    from model import load_case
    from model.fit import SamplerSettings, fit
    from model.priors import resolve_priors

    case = load_case(CASE)
    settings = SamplerSettings(draws=200, tune=300, chains=2, prior_draws=400)
    return fit(case, resolve_priors(case), settings)
