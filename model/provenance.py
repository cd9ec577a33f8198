"""What a saved fit records about its inputs and its run: the ledger as written (every cell
as text), the input hash, the code's commit and version, the packages, the sampler settings."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from model import MODEL_VERSION, __version__
from model.case import Case, input_hash
from model.priors import DEFAULT_PRIORS, REFERENCE_DIR, Priors
from model.sampler import SamplerSettings

PACKAGES = [
    "capest",
    "pymc",
    "pytensor",
    "nutpie",
    "numba",
    "arviz",
    "arviz-base",
    "arviz-stats",
    "arviz-plots",
    "numpy",
    "scipy",
    "pandas",
    "xarray",
    "netcdf4",
]


def ledger_dataset(case: Case) -> xr.Dataset:
    """The whole ledger (context rows too) as strings, so reports need nothing but the file.
    Each cell is turned into text one by one: a column cast as a whole (`astype(str)` then
    `to_numpy(dtype=str)`) is cut to one character under pandas 3 when it holds a missing value."""
    ev = case.evidence.drop(columns=["line"])
    data = {
        c: ("row", np.array([cell_text(v) for v in ev[c]], dtype=object))
        for c in ev.columns
        if c != "id"
    }
    return xr.Dataset(data, coords={"row": np.array([str(i) for i in ev["id"]], dtype=object)})


def cell_text(value) -> str:
    """A validated ledger cell as the analyst wrote it: dates as YYYY-MM-DD, numbers as plain
    decimals without a trailing .0 (74, 2.6), missing values as empty text."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, float | np.floating):
        return np.format_float_positional(value, trim="-")
    return str(value)


def provenance(case: Case, priors: Priors, settings: SamplerSettings, sampler: str) -> dict:
    files = [*case.input_files, DEFAULT_PRIORS, *sorted(REFERENCE_DIR.glob("*.csv"))]
    return {
        "case_id": case.id,
        "case_title": case.title,
        "unit": case.unit,
        **run_provenance(files, settings, sampler),
        "priors": json.dumps(
            {
                n: {**dataclasses.asdict(s), "description": s.describe(), "borrowed": s.borrowed}
                for n, s in priors.specs.items()
            }
        ),
        "measurement": json.dumps(
            {
                "noise": priors.noise,
                "outlier_share": priors.outlier_share,
                "outlier_sd": priors.outlier_sd,
                "rationale": priors.noise_rationale,
            }
        ),
        "window": f"{case.window.start}/{case.window.end}",
        "candidates": json.dumps(case.settings.get("candidates", {})),  # model/voi.py
        "voi": json.dumps(case.settings.get("voi", {})),  # its target (model/voi.py)
        "export_start": case.export_start.strftime("%Y-%m-%d"),
        # The evidence cut-off: --as-of if given, else the last date a used row was reported.
        "evidence_as_of": case.as_of or case.evidence["date_reported"].max().strftime("%Y-%m-%d"),
        # A replay (--as-of) estimates from old evidence: it never becomes `latest`.
        "replay": int(case.as_of is not None),
    }


def run_provenance(files: list[Path], settings: SamplerSettings, sampler: str) -> dict:
    """What every saved fit records about its run: when, from which inputs and code, how."""
    return {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input_hash": input_hash(files),
        "input_files": json.dumps([str(p) for p in files]),
        "git_commit": git_commit(),
        "model_version": MODEL_VERSION,
        "capest_version": __version__,
        "packages": json.dumps(package_versions()),
        "sampler": sampler,
        "sampler_settings": json.dumps({**dataclasses.asdict(settings), "sampler": sampler}),
        "seed": settings.seed,
    }


def git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "model", "data"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
