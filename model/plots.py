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
    """Monthly production: posterior median and equal-tailed 50/80/95% bands."""
    window = window_of(idata)
    prod = idata["posterior"]["production"]
    draws = prod.stack(sample=("chain", "draw")).transpose("month", "sample").to_numpy()
    x = np.arange(window.n_months)
    fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
    for p, alpha in zip(sorted(INTERVALS, reverse=True), (0.18, 0.3, 0.45), strict=True):
        lo, hi = np.quantile(draws, [(1 - p) / 2, (1 + p) / 2], axis=1)
        ax.fill_between(x, lo, hi, color="tab:blue", alpha=alpha, lw=0, label=f"{p:.0%} interval")
    ax.plot(x, np.median(draws, axis=1), color="tab:blue", lw=2, label="median")
    if "completion" in idata["posterior"]:  # a programme's plants each have their own
        completion = idata["posterior"]["completion"].to_numpy().ravel()
        c_lo, c_hi = np.quantile(completion, [0.1, 0.9])
        ax.axvspan(c_lo, c_hi, color="tab:orange", alpha=0.12, label="new building complete (80%)")
    ticks = [i for i, m in enumerate(window.months) if m.month in (1, 7)]
    ax.set_xticks(ticks, [str(window.months[i]) for i in ticks])
    ax.set_ylabel(f"{idata.attrs['unit']} per month")
    ax.set_ylim(bottom=0)
    ax.set_title("Monthly production (posterior)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig


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
        ax.hist(a, bins=bins, density=True, color="0.6", alpha=0.6, label="prior")
        ax.hist(b, bins=bins, density=True, color="tab:blue", alpha=0.6, label="posterior")
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
    ax.set_xticks(x, [f"{r['run']}\nevidence by {r['evidence_as_of']}" for r in runs], fontsize=7)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_ylabel(f"{summary['unit']} per month (median, 95%)")
    ax.legend(frameon=False)
    return fig


def png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
