"""Figures for the report: pure functions of a saved fit (never resample to draw)."""

from __future__ import annotations

import io
import textwrap

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # headless: reports are written by schedulers, not at a screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from model import variables  # noqa: E402
from model.summary import INTERVALS, window_of  # noqa: E402

# (variable, label, log-scale x axis); the figure has a 2 x 4 grid of them
KEY_PARAMETERS = [
    (n, variables.label(n), variables.REGISTRY[n].scale == variables.LOG)
    for n in variables.select(variables.PLOTTED)
]


def fan_chart(idata: xr.DataTree) -> plt.Figure:
    """Monthly production (posterior median and equal-tailed 50/80/95% bands) with the
    evidence it rests on: the used and exported flows the model predicts, against the launch
    and transfer rows as the monthly values they imply; the completion of the new building as
    a marker under the bands, and the full rate when it is reached after the window."""
    window = window_of(idata)
    post = idata["posterior"]
    draws = _by_month(post["production"])
    x = np.arange(window.n_months) + 0.5  # the middle of each month, in model time
    fig, ax = plt.subplots(figsize=(9, 4.6), layout="constrained")
    for p, alpha in zip(sorted(INTERVALS, reverse=True), (0.15, 0.25, 0.38), strict=True):
        lo, hi = np.quantile(draws, [(1 - p) / 2, (1 + p) / 2], axis=1)
        ax.fill_between(x, lo, hi, color="tab:blue", alpha=alpha, lw=0, label=f"{p:.0%} interval")
    ax.plot(x, np.median(draws, axis=1), color="tab:blue", lw=2, label="production (median)")
    top = np.quantile(draws, 0.975, axis=1).max()
    if "usage" in post:  # a programme's total has no single flow of use
        used = _by_month(post["usage"])
        lo, hi = np.quantile(used, [0.1, 0.9], axis=1)
        # the 80% interval as thin lines: a second filled band would muddy production's
        ax.plot(x, lo, x, hi, color="tab:orange", lw=0.7, ls=":")
        ax.plot(x, np.median(used, axis=1), color="tab:orange", lw=1.5,
                label="used (median, 80%)")  # fmt: skip
        _evidence_rows(ax, idata, window, top)
    if "completion" in post:  # a programme's plants each have their own
        _completion_marker(ax, post, window)
    ticks = [i for i, m in enumerate(window.months) if m.month in (1, 7)]
    ax.set_xticks(ticks, [str(window.months[i]) for i in ticks])
    ax.set_xlim(0, window.n_months)
    ax.set_ylabel(f"{idata.attrs['unit']} per month")
    ax.set_ylim(0, top * 1.12)
    ax.set_title("Monthly production (posterior) and the evidence")
    ax.legend(loc="upper left", fontsize=7.5, frameon=False, ncols=2)
    return fig


def _by_month(da: xr.DataArray) -> np.ndarray:
    return da.stack(sample=("chain", "draw")).transpose("month", "sample").to_numpy()


# Rows shorter than this are not drawn as a monthly value: a day's salvo is not a rate.
MIN_DAYS = 14


def _evidence_rows(ax, idata: xr.DataTree, window, top: float) -> None:
    """Launch rows (units used in a period) and transfer rows (units exported from the
    start of exports to a date) as the monthly value they imply: the stated value, or the
    stated range, over the months the row covers. Superseded and relayed rows are left out
    (the model does not count them)."""
    import pandas as pd

    ev = idata["evidence"].to_dataset()
    col = {k: ev[k].to_numpy().astype(str) for k in ev.data_vars}
    styles = {"launches": ("black", "launch rows (implied monthly)"),
              "transfers": ("tab:purple", "transfer rows (implied monthly exports)")}  # fmt: skip
    seen = set()
    for i, kind in enumerate(col["kind"]):
        if kind not in styles or col["superseded_by"][i] or col["counted_as"][i]:
            continue
        start, end = pd.Timestamp(col["period_start"][i]), pd.Timestamp(col["period_end"][i])
        days = (end - start).days + 1
        if days < MIN_DAYS:
            continue
        a, b = window.time_of(start), window.time_of(end, end_of_day=True)
        months = days / (365.25 / 12)
        lo = float(col["lower"][i] or col["value"][i] or "nan") / months
        hi = float(col["upper"][i] or col["value"][i] or "nan") / months
        bound = col["bound"][i]
        mid = lo if bound in ("exact", "at_least") else hi
        if bound == "between":
            mid = (lo + hi) / 2
        colour, text = styles[kind]
        shown = min(mid, top * 1.08)
        ax.hlines(shown, a, b, color=colour, lw=1.6, label=None if kind in seen else text)
        seen.add(kind)
        centre = (a + b) / 2
        if bound == "between":
            ax.vlines(centre, lo, min(hi, top * 1.1), color=colour, lw=1)
        elif bound == "at_least":
            ax.plot(centre, shown, marker="^", color=colour, ms=5)
        elif bound == "at_most":
            ax.plot(centre, shown, marker="v", color=colour, ms=5)
    post = idata["posterior"]
    exports = window.time_of(pd.Timestamp(idata.attrs.get("export_start", window.start)))
    if "export_share" in post:  # what the transfer rows count: the exported share
        share = np.clip(np.arange(window.n_months) + 1 - exports, 0, 1)
        exported = _by_month(post["production"] * post["export_share"]) * share[:, None]
        ax.plot(np.arange(window.n_months) + 0.5, np.median(exported, axis=1), color="tab:purple",
                lw=1.2, ls="--", label="exported (median)")  # fmt: skip
    if exports > 0:
        ax.axvline(exports, color="tab:purple", lw=0.8, ls=":")
        ax.annotate("exports begin", (exports, 0), xytext=(3, 12), textcoords="offset points",
                    fontsize=7, color="tab:purple")  # fmt: skip


def _completion_marker(ax, post, window) -> None:
    """The new building's completion as a bar under the bands (median and 80% interval),
    and the full rate after the ramp as a line at the right edge when it falls after the
    window's end (else the median path reaches it inside the chart)."""
    completion = post["completion"].to_numpy().ravel()
    c_lo, c_med, c_hi = np.quantile(completion, [0.1, 0.5, 0.9])
    where = ax.get_xaxis_transform()  # x in data, y in axes fractions: always at the bottom
    ax.plot([c_lo, c_hi], [0.03, 0.03], color="tab:red", lw=3, alpha=0.6, transform=where,
            solid_capstyle="butt", label="new building complete (median, 80%)")  # fmt: skip
    ax.plot([c_med], [0.03], "|", color="tab:red", ms=10, mew=2, transform=where)
    if "ramp_months" not in post or "rate_after" not in post:
        return
    full = np.median(completion + post["ramp_months"].to_numpy().ravel())
    if full > window.n_months:
        level = float(np.median(post["rate_after"]))
        ax.axhline(level, xmin=0.85, color="tab:blue", lw=1.2, ls="--")
        ax.annotate(
            f"full rate {level:.2g}/month (median),\nreached about "
            f"{window.date_of(full):%Y-%m}, after the window",
            (window.n_months, level), xytext=(-4, 4), textcoords="offset points",
            ha="right", va="bottom", fontsize=7, color="tab:blue",
        )  # fmt: skip


def prior_posterior(idata: xr.DataTree) -> plt.Figure:
    """Prior against posterior for the key parameters: where the evidence moved the prior,
    and where it did not (the two histograms then coincide)."""
    post, prior = idata["posterior"].to_dataset(), idata["prior"].to_dataset()
    fig, axes = plt.subplots(2, 4, figsize=(11, 5), layout="constrained")
    for ax, (name, label, log) in zip(axes.ravel(), KEY_PARAMETERS, strict=True):
        a, b = prior[name].to_numpy().ravel(), post[name].to_numpy().ravel()
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        lo, hi = np.quantile(np.concatenate([a, b]), [0.005, 0.995])
        bins = np.geomspace(lo, hi, 50) if log and lo > 0 else np.linspace(lo, hi, 50)
        # one filled outline per histogram ("stepfilled"), not a patch per bar: the same
        # picture, drawn in a fraction of the time (16 histograms of 49 bars each)
        style = {"bins": bins, "density": True, "alpha": 0.6, "histtype": "stepfilled"}
        ax.hist(a, color="0.6", label="prior", **style)
        ax.hist(b, color="tab:blue", label="posterior", **style)
        if log and lo > 0:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_title(textwrap.fill(label, 30), fontsize=9)
        ax.set_yticks([])
    axes[0, 0].legend(fontsize=8, frameon=False)
    return fig


def readings_chart(summary: dict) -> plt.Figure:
    """rate_after under each reading of the size ratio alone, and under the mixture."""
    rows = [r for r in summary["readings"] if "rate_after" in r]
    labels = [f"{r['reading']} ({r['ratio_low']:g}-{r['ratio_high']:g}x)" for r in rows]
    stats = [r["rate_after"] for r in rows]
    labels.append("mixture (case weights)")
    stats.append(summary["quantities"]["rate_after"])
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(stats) + 1.2), layout="constrained")
    y = np.arange(len(stats))[::-1]
    for yi, s in zip(y, stats, strict=True):
        for p, lw in (("0.95", 1.2), ("0.5", 4.0)):
            ax.hlines(yi, *s["intervals"][p], color="tab:blue", lw=lw)
        ax.plot(s["median"], yi, "o", color="white", mec="tab:blue")
    ax.set_yticks(y, labels)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel(f"rate after the expansion, {summary['unit']} per month (50% and 95% intervals)")
    return fig


def plants_chart(summary: dict) -> plt.Figure:
    """A programme's plants: rate after the expansion, posterior against the outside view
    (the plant's prior), 50% and 95% intervals."""
    plants = summary["plants"]
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(plants) + 1.4), layout="constrained")
    y = np.arange(len(plants))[::-1]
    for group, colour, shift in (
        ("prior_quantities", "tab:grey", 0.15),
        ("quantities", "tab:blue", -0.15),
    ):
        for yi, plant in zip(y, plants, strict=True):
            q = plant[group]["rate_after"]
            for p, lw in (("0.95", 1.2), ("0.5", 4.0)):
                ax.hlines(yi + shift, *q["intervals"][p], color=colour, lw=lw)
            ax.plot(q["median"], yi + shift, "o", color="white", mec=colour)
    ax.plot([], [], color="tab:grey", lw=4, label="outside view (prior)")
    ax.plot([], [], color="tab:blue", lw=4, label="posterior")
    ax.set_yticks(y, [p["plant"] for p in plants])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel(f"rate after the expansion, {summary['unit']} per month (50% and 95%)")
    ax.legend(frameon=False, loc="lower right")
    return fig


def history_chart(summary: dict) -> plt.Figure:
    """Headline rates over the runs of the case (summary["history"]), oldest first."""
    runs = summary["history"]
    x = np.arange(len(runs))
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    for name, colour, shift in (
        ("rate_before", "tab:grey", -0.08),
        ("rate_after", "tab:blue", 0.08),
    ):
        med = [r["quantities"][name]["median"] for r in runs]
        lo, hi = np.array([r["quantities"][name]["interval_95"] for r in runs]).T
        ax.errorbar(
            x + shift,
            med,
            yerr=[np.subtract(med, lo), np.subtract(hi, med)],
            fmt="o",
            color=colour,
            capsize=3,
            label=name.replace("_", " "),
        )
    ax.set_xticks(x, [_run_label(r) for r in runs], fontsize=7.5, rotation=30, ha="right")
    if len(runs) > 12:  # every run keeps its point; only every k-th is named
        k = int(np.ceil(len(runs) / 12))
        for i, tick in enumerate(ax.xaxis.get_major_ticks()):
            tick.label1.set_visible(i % k == 0 or i == len(runs) - 1)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_ylabel(f"{summary['unit']} per month (median, 95%)")
    ax.legend(frameon=False)
    return fig


def _run_label(run: dict) -> str:
    """A run as a reader names it: when its evidence ends and when it ran (not the folder's
    compact UTC stamp)."""
    created = str(run.get("created", ""))[:16].replace("T", " ")
    name = "this run" if run["run"] == "this run" else created or run["run"]
    return f"evidence to {run['evidence_as_of']}\n{name}"


def png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
