"""Synthetic cases of any size for the benchmarks: invented numbers, labelled as such.

A plant makes 10 units a month, 15 after an expansion completed half way through the window;
70% of production is used, each month's count Poisson. One floor-area row, then one-month
launch rows cycling through the months (several rows per month when rows > months).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

from model.evidence import COLUMNS

RATE_BEFORE, RATE_AFTER, USED_SHARE = 10.0, 15.0, 0.7
HEADER = COLUMNS
# A synthetic programme's totals over plants: the benchmarks rate a sampler by their lowest ESS.
PROGRAMME_TOTALS = ["rate_before", "rate_after", "capacity_multiplier"]


def write_case(folder: Path, months: int, rows: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    start = pd.Period("2020-01", "M")
    end = start + months - 1
    mid = start + months // 2
    (folder / "case.toml").write_text(
        f"# SYNTHETIC benchmark case: invented numbers, no figure in it is about the world.\n"
        f'id = "{folder.name}"\n'
        f'title = "Synthetic benchmark plant ({months} months, {rows} rows)"\n'
        f'product = "synthetic units"\nunit = "units"\nevidence = "evidence.csv"\n\n'
        f'[window]\nstart = "{start}"\nend = "{end}"\n\n[exports]\nstart = "{start + 1}"\n\n'
        f'[area_ratio]\nrationale = "Synthetic: one reading."\n\n'
        f"[area_ratio.weights]\nonly = 1.0\n\n"
        f'[priors.completion]\ndist = "Uniform"\nlower = "{mid - 3}"\nupper = "{mid + 3}"\n'
        f'source = "case"\nrationale = "Synthetic."\n'
    )
    rng = np.random.default_rng(seed)
    common = {
        "source": "Synthetic benchmark data (not a real source)",
        "url": "https://example.org/synthetic",
        "reliability": "B",
        "quote": "synthetic",
        "note": "Invented for benchmarks.",
        "unit": "units",
        "bound": "exact",
    }
    lines = [
        {
            **common,
            "id": "area",
            "kind": "area_ratio",
            "period_end": str(mid.start_time.date()),
            "lower": "1.4",
            "upper": "1.6",
            "bound": "between",
            "unit": "ratio",
            "reading": "only",
            "date_reported": str((mid + 1).start_time.date()),
        }
    ]
    exportable = [start + 1 + i for i in range(months - 1)]
    for i in range(rows - 1):
        month = exportable[i % len(exportable)]
        rate = RATE_AFTER if month >= mid + 6 else RATE_BEFORE
        lines.append(
            {
                **common,
                "id": f"launches-{i:04d}",
                "kind": "launches",
                "period_start": str(month.start_time.date()),
                "period_end": str(month.end_time.date()),
                "value": str(rng.poisson(USED_SHARE * rate)),
                "date_reported": str((month + 1).end_time.date()),
            }
        )
    with (folder / "evidence.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, HEADER, restval="")
        writer.writeheader()
        writer.writerows(lines)
    return folder


def write_programme(folder: Path, plants: int, months: int, rows: int, seed: int = 0) -> Path:
    """A SYNTHETIC programme of `plants` plants, each a write_case() plant."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"plant-{i:02d}" for i in range(plants)]
    for i, name in enumerate(names):
        write_case(folder / name, months=months, rows=rows, seed=seed + i)
    (folder / "case.toml").write_text(
        "# SYNTHETIC benchmark programme: invented numbers.\n"
        f'id = "{folder.name}"\ntitle = "Synthetic programme ({plants} plants, {months} months)"\n'
        f'unit = "units"\nplants = {json.dumps(names)}\n'
    )
    return folder
