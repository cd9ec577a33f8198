"""Publish a run's report folder: reports/<case>/<UTC timestamp>/ with summary.json,
report.md, report.html (self-contained), the figures, monthly_production.csv and posterior.nc.

The folder is written under a temporary name and renamed when complete, so a killed run
leaves no half-written report; `latest` is then repointed. Nothing is ever overwritten.
What the report says is model/report.py; how it looks, model/render.py.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import xarray as xr

from model import footprints_report, plots, strict_json
from model.render import to_html, to_markdown

# posterior.nc's reader and writer: netCDF4 (the Unidata C library) writes February 11's 38
# groups in 0.35 s, h5netcdf in 1.7 (benchmarks/README.md, sixteenth session)
NETCDF_ENGINE = "netcdf4"


def write_report(idata: xr.DataTree, summary: dict, reports_dir: str | Path = "reports") -> Path:
    """Write the report folder and return its path. Raises if it cannot, never half-writes."""
    reports_dir = Path(reports_dir)
    case_dir = (reports_dir / summary["case_id"]).resolve()
    if reports_dir.resolve() not in case_dir.parents:
        raise ValueError(f"case id {summary['case_id']!r} would write outside {reports_dir}")
    case_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tmp = case_dir / f".incomplete-{stamp}-{os.getpid()}"
    tmp.mkdir()
    try:
        figures = {"fan_chart.png": plots.png(plots.fan_chart(idata))}
        if summary.get("programme"):
            figures["plants.png"] = plots.png(plots.plants_chart(summary))
        else:
            figures["prior_posterior.png"] = plots.png(plots.prior_posterior(idata))
            figures["readings.png"] = plots.png(plots.readings_chart(summary))
            figures.update(footprints_report.figures(summary))
        if len(summary.get("history", [])) >= 2:
            figures["history.png"] = plots.png(plots.history_chart(summary))
        for name, data in figures.items():
            (tmp / name).write_bytes(data)
        idata.to_netcdf(tmp / "posterior.nc", engine=NETCDF_ENGINE)
        (tmp / "summary.json").write_text(strict_json.dumps(summary, indent=2) + "\n")
        if "monthly_production" in summary:  # summaries saved before it have none
            (tmp / "monthly_production.csv").write_text(monthly_csv(summary))
        from model import report  # deferred: model.report re-exports write_report

        blocks = report.blocks(summary, idata)
        (tmp / "report.md").write_text(to_markdown(blocks))
        (tmp / "report.html").write_text(to_html(blocks, figures, summary["case_title"]))
        final = _free_name(case_dir, stamp)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if summary["provenance"].get("replay"):
        return final  # a replay of old evidence (--as-of) never becomes `latest`
    link = case_dir / "latest"
    staging = case_dir / f".latest-{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(final.name)
    os.replace(staging, link)  # atomic: `latest` always points at a complete run
    return final


def monthly_csv(summary: dict) -> str:
    """monthly_production.csv: one line per month, the median and the 50/80/95% equal-tailed
    bounds of production (summary["monthly_production"]), at full precision for reuse."""
    ps = ("0.5", "0.8", "0.95")
    head = ["month", "unit", "median"]
    head += [f"{side}_{float(p):.0%}".replace("%", "") for p in ps for side in ("lower", "upper")]
    lines = [",".join(head)]
    for row in summary["monthly_production"]:
        bounds = [repr(v) for p in ps for v in row["intervals"][p]]
        lines.append(",".join([row["month"], row["unit"], repr(row["median"]), *bounds]))
    return "\n".join(lines) + "\n"


def remove_incomplete(case_dir: str | Path) -> list[str]:
    """Delete what a killed run left in a case folder: its `.incomplete-*` folder and its
    `.latest-*` staging link. Only safe while holding the case lock (runs.case_lock calls
    it), since a live run's folder has the same name pattern."""
    removed = []
    for leftover in sorted(Path(case_dir).glob(".incomplete-*")):
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover.name)
    for leftover in sorted(Path(case_dir).glob(".latest-*")):
        leftover.unlink(missing_ok=True)
        removed.append(leftover.name)
    return removed


def _free_name(case_dir: Path, stamp: str) -> Path:
    candidate, n = case_dir / stamp, 1
    while candidate.exists():
        candidate, n = case_dir / f"{stamp}-{n}", n + 1
    return candidate
