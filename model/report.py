"""Write a run's report folder: reports/<case>/<UTC timestamp>/ with summary.json,
report.md, report.html (self-contained), the figures and posterior.nc.

The folder is written under a temporary name and renamed when complete, so a killed run
leaves no half-written report; `latest` is then repointed. Nothing is ever overwritten.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import xarray as xr

from model import plots
from model.summary import DECIDED, INFORMED, MOVED
from model.variables import HISTORY, RESTS_ON, label, labelled, select

FIGURES = {
    "fan_chart.png": "Monthly production: posterior median with 50%, 80% and 95% equal-tailed "
    "intervals. The shaded band is the 80% interval of the month the new building is complete.",
    "prior_posterior.png": "Prior (grey) against posterior (blue) for the key parameters. Where "
    "the two coincide, the evidence says nothing about that parameter and the prior decides.",
    "history.png": "The headline rates in every run of this case, oldest first, with the date "
    "of the latest evidence each used (replays with --as-of show how the estimate evolved).",
    "readings.png": "Rate after the expansion under each reading of the size ratio alone, and "
    "under the case's mixture of readings (50% and 95% intervals).",
}


@dataclass(frozen=True)
class Link:
    text: str
    url: str


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
        if len(summary.get("history", [])) >= 2:
            figures["history.png"] = plots.png(plots.history_chart(summary))
        for name, data in figures.items():
            (tmp / name).write_bytes(data)
        idata.to_netcdf(tmp / "posterior.nc", engine="h5netcdf")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        blocks = (programme_blocks if summary.get("programme") else report_blocks)(summary, idata)
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


# ---------------------------------------------------------------- content


def fmt(x: float) -> str:
    """Two significant figures for estimates: more would claim precision the data lack."""
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{round(x, -len(str(int(abs(x)))) + 2):,.0f}"
    return f"{x:.2g}" if abs(x) < 10 else f"{x:.0f}"


def interval(q: dict, p: str = "0.95") -> str:
    lo, hi = q["intervals"][p]
    return f"{fmt(lo)}–{fmt(hi)}"


def readme_table(summary: dict) -> str:
    """The README's table of the current estimate, from a run's summary (`make readme-table`
    prints it; a slow test checks that the README holds the table of a default run)."""
    q, unit = summary["quantities"], summary["unit"]
    year = next((n for n in q if n.startswith("production_2024")), None)
    rows = [
        ("exported flow before the expansion (what the evidence decides)", "exported_flow"),
        ("rate before the expansion", "rate_before"),
        ("rate at full capacity after it", "rate_after"),
        ("capacity multiplier", "capacity_multiplier"),
    ]
    lines = ["| quantity | median | 95% interval |", "|---|---|---|"]
    for words, name in rows:
        if name in q:
            u = q[name]["unit"].replace("ratio", "").strip()
            median = f"{fmt(q[name]['median'])} {u}".strip()
            lines.append(f"| {words} | {median} | {interval(q[name])} |")
    if year:
        lines.append(
            f"| production in 2024 | {fmt(q[year]['median'])} {unit} | {interval(q[year])} |"
        )
    lines.append(f"| P(capacity at least doubled) | {q['p_capacity_doubled']['value']:.0%} | |")
    return "\n".join(lines)


def _status(summary: dict) -> tuple:
    """The line at the top: FAILED if any check failed, with what failed; else PASSED."""
    checks = summary["checks"]
    failed = [c for c in checks if c["status"] == "fail"]
    warned = [c["name"] for c in checks if c["status"] == "warn"]
    if failed:
        what = "; ".join(f"{c['name']}: {c['finding']}" for c in failed)
        return ("status", False, f"{what}. Do not use these numbers until this is fixed.")
    text = "every check passed"
    if warned:
        text += f", with warnings from {', '.join(warned)} (see Health)"
    after = summary.get("evidence_effect", {}).get("rate_after")
    if after and after["decided_by"] != "evidence":
        assumed = ", ".join(map(label, after["assumptions"])) or "the priors"
        text += (
            f"; the rate after the expansion is decided mostly by assumptions ({assumed}), "
            "not by the evidence"
        )
    elif after:
        text += "; the rate after the expansion is decided by the evidence"
    return ("status", True, text + ".")


def report_blocks(summary: dict, idata: xr.DataTree) -> list[tuple]:
    q, d, unit = summary["quantities"], summary["diagnostics"], summary["unit"]
    prov = summary["provenance"]
    blocks: list[tuple] = [("h1", summary["case_title"]), _status(summary)]
    checks = summary["checks"]
    blocks += [
        ("h2", "Health"),
        (
            "table",
            ["check", "status", "finding", "rule"],
            [[c["name"], c["status"].upper(), c["finding"], c["rule"]] for c in checks],
        ),
        *_sensitivity_blocks(checks),
    ]
    completion = q["completion"]["dates"]
    blocks += [
        (
            "p",
            f"Run {summary['created']} · case `{summary['case_id']}` · window "
            f"{summary['window']} · {prov['chains']} chains × {prov['draws']} draws "
            f"({prov['sampler']}), seed {prov['seed']}.",
        ),
        ("h2", "Headline"),
        (
            "p",
            "Before the expansion the plant made about "
            f"**{fmt(q['rate_before']['median'])} {unit} a month** "
            f"(95% interval {interval(q['rate_before'])}). At full rate after it, about "
            f"**{fmt(q['rate_after']['median'])} a month** ({interval(q['rate_after'])}): "
            f"{fmt(q['capacity_multiplier']['median'])} times the old capacity "
            f"({interval(q['capacity_multiplier'])}). The probability that capacity at least "
            f"doubled is **{q['p_capacity_doubled']['value']:.0%}**.",
        ),
        (
            "p",
            f"The new building is modelled as complete around {completion['median']} "
            f"(80% interval {completion['0.8'][0]} to {completion['0.8'][1]}), reaching full rate "
            f"{fmt(q['ramp_months']['median'])} months later ({interval(q['ramp_months'])}). "
            "Intervals are equal-tailed posterior intervals.",
        ),
        ("p", _what_the_evidence_decided(summary)),
        *_diff_blocks(summary),
        ("h2", "Estimates"),
        (
            "table",
            [
                "quantity",
                "unit",
                "median",
                "50%",
                "80%",
                "95%",
                "prior median (95%)",
                "decided by (contraction, z)",
            ],
            [
                _quantity_row(
                    name,
                    v,
                    summary["prior_quantities"].get(name),
                    summary.get("evidence_effect", {}).get(name),
                )
                for name, v in q.items()
            ],
        ),
        ("img", "fan_chart.png", FIGURES["fan_chart.png"]),
        ("h2", "The size of the new building: estimate under each reading"),
        (
            "p",
            "The sources' wording of the floor-area change can be read in more than one way "
            "(the case file's [area_ratio] says why, and each reading's ledger rows give its "
            "range). The model carries every reading with the case's weights; the posterior "
            "probability says how far the evidence favours one. Each row's estimates assume "
            "that reading alone.",
        ),
        (
            "table",
            [
                "reading",
                "total area ratio",
                "prior weight",
                "posterior probability",
                f"rate after ({unit}/month, 95%)",
                "capacity multiplier (95%)",
                "P(doubled)",
            ],
            [_reading_row(r) for r in summary["readings"]],
        ),
        ("img", "readings.png", FIGURES["readings.png"]),
        *_stage_blocks(summary),
        *_scenario_blocks(summary),
        *_history_blocks(summary),
        ("h2", "Priors"),
        (
            "p",
            "Borrowed priors come from the reference class of other plants' expansions "
            "(data/reference-class/; each prior's derivation names the plants used): "
            + (", ".join(summary["borrowed_priors"]) or "none")
            + ". Assumptions are judgements; change them in data/priors.toml or the case file.",
        ),
        (
            "table",
            ["prior", "distribution", "unit", "source", "rationale"],
            [
                [
                    labelled(n),
                    s["description"],
                    s["unit"],
                    s["source"] + (" (borrowed)" if s["borrowed"] else ""),
                    s["rationale"]
                    + (f" Derivation: {s['derivation']}." if s["derivation"] else ""),
                ]
                for n, s in summary["priors"].items()
            ],
        ),
        ("img", "prior_posterior.png", FIGURES["prior_posterior.png"]),
        ("h2", "Diagnostics"),
        (
            "p",
            f"Thresholds: R-hat ≤ {d['thresholds']['max_rhat']}, bulk ESS ≥ "
            f"{d['thresholds']['min_ess_bulk']}, no divergences; every fit must pass.",
        ),
        (
            "table",
            ["fit", "status", "max R-hat", "min bulk ESS", "min tail ESS", "divergences"],
            [
                [
                    f["fit"],
                    "passed" if f["passed"] else "FAILED: " + "; ".join(f["failures"]),
                    f"{f['max_rhat']:.3f}",
                    f"{f['min_ess_bulk']:.0f}",
                    f"{f['min_ess_tail']:.0f}",
                    str(f["divergences"]),
                ]
                for f in d["fits"]
            ],
        ),
        ("h2", "Evidence ledger"),
        (
            "p",
            "Every row as recorded, with its source. Modelled rows show the posterior probability "
            "that the model treats the row as an outlier (wrong beyond its reliability grade); "
            "the leave-one-out predictive probability of the row given the others (LOO p: small "
            "values mark reports the rest cannot explain); and how far leaving the row out moves "
            f"the median of the {label('rate_after')}, in posterior standard deviations.",
        ),
        (
            "table",
            [
                "id",
                "kind",
                "period",
                "reported value",
                "grade",
                "P(outlier)",
                "LOO p",
                "rate after shift (sd)",
                "source",
                "quote",
            ],
            _ledger_rows(idata, summary),
        ),
        ("h2", "Provenance"),
        (
            "table",
            ["item", "value"],
            [
                ["input hash (sha256)", prov["input_hash"]],
                ["git commit", prov["git_commit"]],
                ["model version", prov["model_version"]],
                ["capest", prov["capest_version"]],
                ["sampler", f"{prov['sampler']} {json.dumps(prov['sampler_settings'])}"],
                ["packages", ", ".join(f"{k} {v}" for k, v in prov["packages"].items())],
                ["inputs", ", ".join(prov["input_files"])],
            ],
        ),
    ]
    return blocks


def _programme_model_text(summary: dict) -> str:
    if summary.get("programme_model") == "stacked":
        return (
            "Model: the plants stacked on one `plant` dimension (model/stacked.py), one graph "
            "for all plants."
        )
    reasons = "; ".join(summary.get("programme_model_reasons", [])) or "not recorded"
    return f"Model: one sub-graph per plant (model/programme.py), because {reasons}."


def programme_blocks(summary: dict, idata: xr.DataTree) -> list[tuple]:
    """The report of a programme (several plants, model/programme.py)."""
    q, unit, prov = summary["quantities"], summary["unit"], summary["provenance"]
    plants = summary["plants"]
    header = ["quantity", "unit", "median", "50%", "80%", "95%", "outside view: prior median (95%)"]
    header.append("decided by (contraction, z)")
    blocks: list[tuple] = [("h1", summary["case_title"]), _status(summary)]
    blocks += [
        ("h2", "Health"),
        (
            "table",
            ["check", "status", "finding", "rule"],
            [[c["name"], c["status"].upper(), c["finding"], c["rule"]] for c in summary["checks"]],
        ),
        (
            "p",
            "A programme is fitted once, with its plants' elasticities and ramp-up times pooled; "
            "the predictive, sensitivity and influence checks and the per-reading and scenario "
            "fits are those of each plant's own estimate (`capest estimate <plant folder>`).",
        ),
        (
            "p",
            f"Run {summary['created']} · programme `{summary['case_id']}` · {len(plants)} plants "
            f"· window {summary['window']} · {prov['chains']} chains × {prov['draws']} draws "
            f"({prov['sampler']}), seed {prov['seed']}.",
        ),
        ("h2", "Programme total"),
        (
            "p",
            f"Before the expansions the plants together made about "
            f"**{fmt(q['rate_before']['median'])} {unit} a month** (95% interval "
            f"{interval(q['rate_before'])}); at full rate after them about "
            f"**{fmt(q['rate_after']['median'])} a month** ({interval(q['rate_after'])}). "
            "Intervals are equal-tailed posterior intervals; years partly outside a plant's "
            "window count only its months inside it.",
        ),
        (
            "table",
            header,
            [
                _quantity_row(
                    n, v, summary["prior_quantities"].get(n), summary["evidence_effect"].get(n)
                )
                for n, v in q.items()
            ],
        ),
        (
            "img",
            "fan_chart.png",
            "Monthly production of the programme (the plants' sum): posterior median with 50%, "
            "80% and 95% equal-tailed intervals.",
        ),
        ("h2", "Plants"),
        (
            "p",
            "Each plant's estimate next to its outside view: the prior, built from the "
            "reference class of other plants' expansions (data/reference-class/) and the "
            "plant's own case file.",
        ),
        ("img", "plants.png", "Rate after the expansion per plant: outside view and posterior."),
    ]
    for plant in plants:
        pq, prior_q = plant["quantities"], plant["prior_quantities"]
        blocks += [
            ("h2", f"{plant['title']} (`{plant['plant']}`)"),
            ("p", f"Window {plant['window']}; {plant['evidence']['rows']} ledger rows."),
            (
                "table",
                header,
                [
                    _quantity_row(n, v, prior_q.get(n), plant["evidence_effect"].get(n))
                    for n, v in pq.items()
                ],
            ),
            *_stage_blocks({"stages": plant["stages"]}),
        ]
    pool = summary["pooling"]
    blocks += [
        ("h2", "Pooling across plants"),
        (
            "p",
            "The plants share the distribution of the floor-area elasticity and of the "
            "ramp-up time; how far they differ is estimated from all of them. Hyperpriors: "
            + ", ".join(f"{k} = {v:.3g}" for k, v in summary["hyperpriors"].items())
            + " (model/priors.py, pooled_hyperpriors: the single-plant priors, half of their "
            "log variance to the typical value and half to the plant-to-plant spread; an "
            "assumption).",
        ),
        ("p", _programme_model_text(summary)),
        (
            "table",
            ["quantity", "unit", "posterior median (95%)", "prior median (95%)", "meaning"],
            [
                [
                    label(name),
                    v["posterior"]["unit"],
                    f"{fmt(v['posterior']['median'])} ({interval(v['posterior'])})",
                    f"{fmt(v['prior']['median'])} ({interval(v['prior'])})",
                    v["posterior"]["description"],
                ]
                for name, v in pool.items()
            ],
        ),
        *_diff_blocks(summary),
        *_history_blocks(summary),
        ("h2", "Diagnostics"),
        (
            "table",
            ["part", "status", "max R-hat", "min bulk ESS", "min tail ESS"],
            [
                [
                    f["fit"],
                    "passed" if f["passed"] else "FAILED: " + "; ".join(f["failures"]),
                    f"{f['max_rhat']:.3f}",
                    f"{f['min_ess_bulk']:.0f}",
                    f"{f['min_ess_tail']:.0f}",
                ]
                for f in summary["diagnostics"]["fits"]
            ],
        ),
        ("p", f"Divergences in the fit: {summary['diagnostics']['divergences']}."),
        ("h2", "Provenance"),
        (
            "table",
            ["item", "value"],
            [
                ["input hash (sha256)", prov["input_hash"]],
                ["git commit", prov["git_commit"]],
                ["model version", prov["model_version"]],
                ["sampler", f"{prov['sampler']} {json.dumps(prov['sampler_settings'])}"],
                ["inputs", ", ".join(prov["input_files"])],
            ],
        ),
    ]
    return blocks


DECIDED_BY = {
    "evidence": "the evidence",
    "partly": "partly the evidence",
    "priors": "the priors",
}


def _what_the_evidence_decided(summary: dict) -> str:
    """The sentence that says what the evidence decided and what the assumptions decided, from
    contraction and z-scores (summary.evidence_effect), never from interval width alone."""
    effect, q = summary.get("evidence_effect", {}), summary["quantities"]
    if not effect:
        return "What the evidence decided is not computed for this fit."
    decided = [n for n, e in effect.items() if e["decided_by"] == "evidence"]
    priors = [n for n, e in effect.items() if e["decided_by"] == "priors"]
    text = "What the evidence decided: "
    if decided:
        text += ", ".join(
            f"{label(n)} ({fmt(q[n]['median'])} {q[n]['unit']}, 95% {interval(q[n])}; "
            f"contraction {effect[n]['contraction']:.0%})"
            if n in q and "median" in q[n]
            else label(n)
            for n in decided
        )
        text += ". "
    else:
        text += "no quantity (no posterior is at least half as variable as its prior). "
    if priors:
        text += f"Decided by the priors (listed under Priors): {', '.join(map(label, priors))}. "
    for name in select(RESTS_ON):
        e = effect.get(name)
        if e and e["decided_by"] != "evidence" and e["assumptions"]:
            text += (
                f"The {label(name)} rests on {', '.join(map(label, e['assumptions']))}, which "
                "the evidence does not "
                f"inform: its interval is only as good as those assumptions. "
            )
    return text + (
        f"Rule: decided by the evidence when the posterior variance is at most "
        f"{1 - DECIDED:.0%} of the prior's (contraction ≥ {DECIDED:.0%}); by the priors when "
        f"contraction < {INFORMED:.0%} and the median moved less than {MOVED:g} posterior sd "
        "(Betancourt's z-score); partly otherwise."
    )


def _diff_blocks(summary: dict) -> list[tuple]:
    """What changed since the previous run of the case (summary["diff"], set by the CLI)."""
    d = summary.get("diff")
    if not d:
        return [("h2", "What changed"), ("p", "This is the first run of this case.")]
    rows = []
    for name, q in d["quantities"].items():
        if "old" in q:
            rows.append([label(name), f"{q['old']:.0%}", f"{q['new']:.0%}", f"{q['change']:+.0%}"])
            continue
        old = {"intervals": q["old_intervals"]}
        new = {"intervals": q["new_intervals"]}
        shift = "" if q["shift_in_old_sd"] is None else f"{q['shift_in_old_sd']:+.2f} sd"
        rows.append(
            [
                label(name),
                f"{fmt(q['old_median'])} ({interval(old)})",
                f"{fmt(q['new_median'])} ({interval(new)})",
                shift,
            ]
        )
    # Older summaries have no "other_changes".
    changed = ", ".join(d.get("other_changes", []))
    if d["same_inputs"]:
        text = "The inputs are unchanged (same input files and the same evidence rows). " + (
            f"Changed since: {changed}. Any difference comes from these, the code or Monte "
            "Carlo error."
            if changed
            else "Model version, sampler settings and packages are too: any difference comes "
            "from the code or Monte Carlo error."
        )
    else:
        added = ", ".join(d["evidence_added"]) or "none"
        removed = ", ".join(d["evidence_removed"]) or "none"
        superseded = ", ".join(d.get("evidence_superseded", [])) or "none"
        text = f"Evidence rows added: {added}. Removed: {removed}. Newly superseded: {superseded}."
        if summary.get("provenance", {}).get("replay"):
            text = (
                f"This is a replay with the evidence reported by "
                f"{summary['provenance']['evidence_as_of']}, compared with the latest run. " + text
            )
        if d["added_rows_by_influence"]:
            moved = ", ".join(
                f"{r['id']} ({r['rate_after_shift_sd']:+.2f} sd)"
                for r in d["added_rows_by_influence"]
            )
            text += (
                f" Of the added rows, leaving each out would move the {label('rate_after')} "
                f"by: {moved}."
            )
        text += " Changes to priors or the case file also change the input hash."
        if changed:
            text += f" Also changed: {changed}."
    return [
        ("h2", "What changed"),
        (
            "p",
            f"Compared with the previous run {d['previous_run']} ({d['previous_created']}). "
            + text,
        ),
        ("table", ["quantity", "previous median (95%)", "now (95%)", "shift (previous sd)"], rows),
    ]


def _history_blocks(summary: dict) -> list[tuple]:
    runs = summary.get("history", [])
    if len(runs) < 2:
        return []
    rows = [
        [
            r["run"],
            r["evidence_as_of"],
            r["input_hash"][:8],
            *(
                f"{fmt(r['quantities'][n]['median'])} ({fmt(r['quantities'][n]['interval_95'][0])}"
                f"–{fmt(r['quantities'][n]['interval_95'][1])})"
                for n in select(HISTORY)
            ),
            f"{r['quantities']['p_capacity_doubled']['median']:.0%}",
            "passed" if r["passed"] else "FAILED",
        ]
        for r in runs
    ]
    head = ["run", "evidence by", "inputs", *(f"{label(n)} (95%)" for n in select(HISTORY))]
    head.append("P(doubled)")
    return [
        ("h2", "History"),
        ("table", [*head, "checks"], rows),
        ("img", "history.png", FIGURES["history.png"]),
    ]


def _sensitivity_blocks(checks: list[dict]) -> list[tuple]:
    """Power-scaling sensitivity of the headline quantities, by prior and evidence stream."""
    sens = next((c for c in checks if c["name"] == "prior sensitivity" and "priors" in c), None)
    if sens is None:
        return []
    quantities = list(next(iter(sens["likelihood"].values())))
    rows = [
        [f"prior: {labelled(n)}", *(f"{v[q]:.3f}" for q in quantities)]
        for n, v in sens["priors"].items()
    ]
    rows += [
        [f"prior: {labelled(n)}", *(["flat (not applicable)"] * len(quantities))]
        for n in sens["flat_priors"]
    ]
    rows += [
        [
            "all evidence" if n == "evidence" else f"evidence: {n}",
            *(f"{v[q]:.3f}" for q in quantities),
        ]
        for n, v in sens["likelihood"].items()
    ]
    head = ["sensitivity to (CJS distance; >= 0.05 is notable)", *map(label, quantities)]
    return [("table", head, rows)]


def _stage_blocks(summary: dict) -> list[tuple]:
    """Which declared stage limits capacity (only for cases that declare stages)."""
    rows = summary.get("stages", [])
    if not rows:
        return []
    return [
        ("h2", "Bottleneck: which stage limits capacity"),
        (
            "p",
            "The case declares production stages besides the assembly floor; capacity after "
            "the expansion is the (smooth) minimum of their growths, assuming every stage ran "
            "at capacity before it. A stage binds in a draw when its growth is the smallest.",
        ),
        (
            "table",
            ["stage", "growth (95%)", "prior growth (95%)", "P(binds)", "prior P(binds)"],
            [
                [
                    r["stage"],
                    f"{fmt(r['growth']['median'])} ({interval(r['growth'])})",
                    f"{fmt(r['prior_growth']['median'])} ({interval(r['prior_growth'])})",
                    f"{r['binding_probability']:.0%}",
                    f"{r['prior_binding_probability']:.0%}",
                ]
                for r in rows
            ],
        ),
    ]


def _scenario_blocks(summary: dict) -> list[tuple]:
    rows = summary.get("scenarios", [])
    if not rows:
        return []
    unit = summary["unit"]
    q = summary["quantities"]
    base = [
        "estimate (case settings)",
        "",
        fmt(q["rate_before"]["median"]) + f" ({interval(q['rate_before'])})",
        fmt(q["rate_after"]["median"]) + f" ({interval(q['rate_after'])})",
        fmt(q["capacity_multiplier"]["median"]) + f" ({interval(q['capacity_multiplier'])})",
        f"{q['p_capacity_doubled']['value']:.0%}",
    ]
    table = [base] + [
        [
            r["scenario"],
            r["description"],
            f"{fmt(r['rate_before']['median'])} ({interval(r['rate_before'])})",
            f"{fmt(r['rate_after']['median'])} ({interval(r['rate_after'])})",
            f"{fmt(r['capacity_multiplier']['median'])} ({interval(r['capacity_multiplier'])})",
            f"{r['p_capacity_doubled']:.0%}",
        ]
        for r in rows
    ]
    return [
        ("h2", "Scenarios"),
        (
            "p",
            "The headline quantities under the alternative choices set in the case file "
            "([scenarios] in case.toml): how much the answer depends on each assumption.",
        ),
        (
            "table",
            [
                "scenario",
                "what changes",
                f"rate before ({unit}/month, 95%)",
                f"rate after ({unit}/month, 95%)",
                "capacity multiplier (95%)",
                "P(doubled)",
            ],
            table,
        ),
    ]


def _quantity_row(name: str, q: dict, prior: dict | None, effect: dict | None) -> list[str]:
    name = q.get("label", label(name))  # older summaries have no label
    if q["unit"] == "probability":
        prior_text = f"{prior['value']:.0%}" if prior else ""
        value = f"{q['value']:.0%} (±{q['mcse']:.1%})"
        return [name, "probability", value, "", "", "", prior_text, ""]
    decided = (
        f"{DECIDED_BY[effect['decided_by']]} ({effect['contraction']:.0%}, "
        f"{effect['z_score']:+.1f})"
        if effect
        else ""
    )
    dates = q.get("dates")
    if dates:  # a time: show it as dates
        spans = [" to ".join(dates[p]) for p in ("0.5", "0.8", "0.95")]
        return [name, "date", dates["median"], *spans, "", decided]
    prior_text = f"{fmt(prior['median'])} ({interval(prior)})" if prior else ""
    spans = [interval(q, "0.5"), interval(q, "0.8"), interval(q)]
    return [name, q["unit"], fmt(q["median"]), *spans, prior_text, decided]


def _reading_row(r: dict) -> list[str]:
    cond = (
        [
            f"{fmt(r['rate_after']['median'])} ({interval(r['rate_after'])})",
            f"{fmt(r['capacity_multiplier']['median'])} ({interval(r['capacity_multiplier'])})",
            f"{r['p_capacity_doubled']:.0%}",
        ]
        if "rate_after" in r
        else ["not fitted"] * 3
    )
    return [
        r["reading"],
        f"{r['ratio_low']:g}–{r['ratio_high']:g}",
        f"{r['prior_weight']:.0%}",
        f"{r['posterior_probability']:.0%}",
        *cond,
    ]


def _ledger_rows(idata: xr.DataTree, summary: dict) -> list[list]:
    ev = idata["evidence"].to_dataset()
    outliers = summary["evidence"]["outlier_probability"]
    duplicates = summary["evidence"].get("serial_duplicates", {})
    checks = {c["name"]: c for c in summary.get("checks", [])}
    loo_p = checks.get("posterior predictive", {}).get("p", {})
    shift = checks.get("influence", {}).get("shifts", {}).get("rate_after", {})
    rows = []
    for i, row_id in enumerate(ev["row"].to_numpy()):
        r = {k: str(ev[k].to_numpy()[i]) for k in ev.data_vars}
        bound = {
            "exact": r["value"],
            "at_least": f"≥ {r['lower']}",
            "at_most": f"≤ {r['upper']}",
            "between": f"{r['lower']}–{r['upper']}",
        }.get(r["bound"], r["value"])
        value = f"{bound} {r['unit']}".strip()
        period = " to ".join(p for p in (r["period_start"], r["period_end"]) if p)
        if r["kind"] == "date_code":
            period = f"made {period}; used {r['used']}"
        if row_id in outliers:
            p_out = f"{outliers[row_id]:.0%}"
        elif r.get("superseded_by", ""):
            p_out = f"superseded by {r['superseded_by']}"
        elif r.get("counted_as", ""):
            p_out = f"counted as {r['counted_as']} (same figure)"
        elif row_id in duplicates:
            p_out = f"same item as {duplicates[row_id]}"
        else:
            p_out = "serial sighting" if r["kind"] == "serial" else "not modelled"
        fit_text = f"{loo_p[row_id]:.2f}" if row_id in loo_p else ""
        shift_text = f"{shift[row_id]:+.2f}" if row_id in shift else ""
        rows.append(
            [
                str(row_id),
                r["kind"],
                period,
                value,
                r["reliability"],
                p_out,
                fit_text,
                shift_text,
                Link(r["source"], r["url"]),
                r["quote"],
            ]
        )
    return rows


# ---------------------------------------------------------------- rendering

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`(.+?)`")
_SAFE_URL = re.compile(r"^https?://[^\s\"'<>]+$")


# Characters that Markdown (CommonMark and GitHub's tables) or the HTML it passes through
# would read as markup. Ledger text and titles come from sources and analysts: in report.md
# they must stay text (no raw <script>, no [link](javascript:...), no ![tracking image]).
_MD_SPECIAL = re.compile(
    r"[\\`*\[\]<>|~&]"  # always markup (links, images, raw HTML, code, emphasis, tables)
    r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"  # emphasis; inside a word (date_code) it is text
)


def md_text(text) -> str:
    """Input text as literal Markdown text on one line: every mark backslash-escaped."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), " ".join(str(text).splitlines()))


def _md_cell(cell) -> str:
    if isinstance(cell, Link):
        text = md_text(cell.text)
        if _SAFE_URL.match(cell.url):  # http(s) only; <...> so a ')' cannot end the address
            return f"[{text}](<{cell.url}>)"
        return f"{text} ({md_text(cell.url)})"
    return md_text(cell)


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *rest in blocks:
        if kind == "h1":  # the case's title: input
            out.append(f"# {md_text(rest[0])}")
        elif kind == "h2":
            out.append(f"## {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "status":
            out.append(f"> **{'PASSED' if rest[0] else 'FAILED'}**: {rest[1]}")
        elif kind == "img":
            out.append(f"![{rest[1]}]({rest[0]})\n\n*{rest[1]}*")
        elif kind == "table":
            header, rows = rest
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape first, then allow the two inline marks the report itself uses."""
    text = html.escape(text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    return _CODE.sub(r"<code>\1</code>", text)


def _html_cell(cell) -> str:
    if isinstance(cell, Link):
        if _SAFE_URL.match(cell.url):
            url = html.escape(cell.url, quote=True)
            return f'<a href="{url}" rel="noopener noreferrer">{html.escape(cell.text)}</a>'
        return f"{html.escape(cell.text)} ({html.escape(cell.url)})"
    return html.escape(str(cell))


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;font-size:.85em;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top;text-align:left}
th{background:#f3f3f3}.status{padding:.8em 1em;border-radius:4px;font-weight:600}
.passed{background:#e6f4ea;border:1px solid #34a853}.failed{background:#fce8e6;
border:1px solid #d93025;color:#a50e0e}img{max-width:100%}figcaption{font-size:.85em;color:#555}"""


def to_html(blocks: list[tuple], figures: dict[str, bytes], title: str) -> str:
    """One self-contained page: styles inline, figures as data URIs, no external requests."""
    body = []
    for kind, *rest in blocks:
        if kind == "h1":
            body.append(f"<h1>{html.escape(rest[0])}</h1>")
        elif kind == "h2":
            body.append(f"<h2>{html.escape(rest[0])}</h2>")
        elif kind == "p":
            body.append(f"<p>{_inline(rest[0])}</p>")
        elif kind == "status":
            cls = "passed" if rest[0] else "failed"
            body.append(f'<div class="status {cls}" id="status">{_inline(rest[1])}</div>')
        elif kind == "img":
            data = base64.b64encode(figures[rest[0]]).decode()
            body.append(
                f'<figure><img alt="{html.escape(rest[1], quote=True)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{html.escape(rest[1])}'
                "</figcaption></figure>"
            )
        elif kind == "table":
            header, rows = rest
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            cells = "".join(
                "<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
