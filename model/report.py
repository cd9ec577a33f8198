"""What a run's report says: its blocks (model/render.py renders them), from the saved fit
and summary only. `report_blocks` is the one list of a single plant's sections, in order;
`programme_blocks` a programme's. Publishing the folder is model/publish.py; its names and
the renderers' are importable from here too.
"""

from __future__ import annotations

import json
import re

import xarray as xr

from model import footprints_report, plots, variables, voi  # noqa: F401  (plots: tests patch model.report.plots.png)
from model.model_comparison import model_comparison_blocks
from model.publish import monthly_csv, remove_incomplete, write_report  # noqa: F401
from model.render import Link, md_text, to_html, to_markdown  # noqa: F401
from model.reweight import how_obtained
from model.summary import ASSUMED_SHARE, DECIDED, INFORMED, MOVED

FIGURES = {
    "fan_chart.png": "Monthly production: posterior median with 50%, 80% and 95% equal-tailed "
    "intervals; the units used (orange, median and 80%) and exported (purple, median) that the "
    "model predicts, against the launch rows (black) and transfer rows (purple) as the monthly "
    "values they imply: the stated value or range over the months each covers (a triangle: "
    "at least or at most; rows under two weeks are not drawn, a day's salvo is not a monthly "
    "rate; superseded and relayed rows are left out). The red bar: the 80% interval of the "
    "new building's completion, its median marked; a dashed line at the right edge: the full "
    "rate, when it is reached after the window.",
    "prior_posterior.png": "Prior (grey) against posterior (blue) for the key parameters. Where "
    "the two coincide, the evidence says nothing about that parameter and the prior decides.",
    "history.png": "The headline rates in every run of this case, oldest first, with the date "
    "of the latest evidence each used (replays with --as-of show how the estimate evolved).",
    "readings.png": "Rate after the expansion under each reading of the size ratio alone, and "
    "under the case's mixture of readings (50% and 95% intervals).",
}


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
    for label, name in rows:
        if name in q:
            u = q[name]["unit"].replace("ratio", "").strip()
            median = f"{fmt(q[name]['median'])} {u}".strip()
            lines.append(f"| {label} | {median} | {interval(q[name])} |")
    if year:
        lines.append(
            f"| production in 2024 | {fmt(q[year]['median'])} {unit} | {interval(q[year])} |"
        )
    lines.append(f"| P(capacity at least doubled) | {q['p_capacity_doubled']['value']:.0%} | |")
    return "\n".join(lines)


def _first_parts(finding: str, keep: int = 3) -> str:
    """A long finding (one part per failed fit) cut to its first parts, so the status stays on
    the first screen; the Health table in the appendix has it in full."""
    parts = finding.split("; ")
    if len(parts) <= keep:
        return finding
    return "; ".join(parts[:keep]) + f"; and {len(parts) - keep} more (Appendix: Health)"


def _status(summary: dict) -> tuple:
    """The line at the top: FAILED if any check failed, with what failed; else PASSED."""
    checks = summary["checks"]
    failed = [c for c in checks if c["status"] == "fail"]
    warned = [c["name"] for c in checks if c["status"] == "warn"]
    if failed:
        what = "; ".join(
            f"{c['name']}: {_first_parts(humanize(summary, c['finding']))}" for c in failed
        )
        return ("status", False, f"{what}. Do not use these numbers until this is fixed.")
    text = "every check passed"
    if warned:
        text += f", with warnings from {', '.join(warned)} (see Health)"
    after = summary.get("evidence_effect", {}).get("rate_after")
    if after and after["decided_by"] != "evidence":
        assumed = ", ".join(label(summary, a) for a in after["assumptions"]) or "the priors"
        text += (
            f"; the rate after the expansion is decided mostly by assumptions ({assumed}), "
            "not by the evidence"
        )
    elif after:
        text += "; the rate after the expansion is decided by the evidence"
    return ("status", True, text + ".")


def label(summary: dict, name: str) -> str:
    """What an analyst reads for a variable: its label from the variables registry (a
    `label` in summary["quantities"] or summary["priors"]) when the summary has one, else
    the quantity's description, else the name. Partial years say which months they cover."""
    q = summary.get("quantities", {}).get(name) or {}
    prior = summary.get("priors", {}).get(name) or {}
    text = q.get("label") or prior.get("label") or variables.label(name)
    span = q.get("span")  # a year partly outside the window: "Mar-Dec, 10 months"
    if span and span not in text:
        text += f" ({span})"
    return text


_IDENTIFIER = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")


def humanize(summary: dict, text: str) -> str:
    """Variable names in text the code wrote (check findings and rules) as their labels.
    Only names the summary knows are replaced; evidence ids and other words stay as they are."""
    known = set(summary.get("quantities", {})) | set(summary.get("priors", {}))
    known |= set(variables.REGISTRY)

    def swap(m: re.Match) -> str:
        return label(summary, m.group(0)) if m.group(0) in known else m.group(0)

    return _IDENTIFIER.sub(swap, text)


# Estimative words for a probability: the US Intelligence Community's scale (ICD 203,
# "Analytic Standards", 2015), so a reader can map the words back to a range.
ICD_203 = (
    (0.05, "almost no chance", "1-5%"),
    (0.20, "very unlikely", "5-20%"),
    (0.45, "unlikely", "20-45%"),
    (0.55, "roughly even chance", "45-55%"),
    (0.80, "likely", "55-80%"),
    (0.95, "very likely", "80-95%"),
    (1.01, "almost certain", "95-99%"),
)


def estimative(p: float) -> tuple[str, str]:
    """(words, the band's range) on the ICD 203 scale. Band edges go to the higher band."""
    return next((words, band) for upper, words, band in ICD_203 if p < upper)


# Quantities the key judgments lead with: the one the evidence identifies, then the rates
# and their ratio (any the summary lacks are left out).
# what the key judgments show: the quantity the evidence identifies, then the headline ones
KEY_QUANTITIES = ("exported_flow", *variables.select(variables.HEADLINE))


def key_judgments_block(summary: dict) -> tuple:
    """The box an analyst reads first (the first screen of the page): status in words, the
    headline quantities with 80% and 95% intervals, P(doubled) in estimative words, what
    decides it, and the spread across the case's scenarios."""
    q = summary["quantities"]
    rows = [
        [
            label(summary, n),
            f"{fmt(q[n]['median'])} {q[n]['unit'].replace('ratio', '×')}".strip(),
            interval(q[n], "0.8"),
            interval(q[n], "0.95"),
        ]
        for n in KEY_QUANTITIES
        if n in q
    ]
    p = q["p_capacity_doubled"]["value"]
    words, band = estimative(p)
    judgments = [
        f"It is **{words}** that capacity at least doubled: probability **{p:.0%}** "
        f"(words on the US ICD 203 scale, where “{words}” means {band}).",
        _what_decides(summary),
        *_spread_sentence(summary),
    ]
    return (
        "box",
        "key-judgments",
        "Key judgments",
        [
            _status(summary),
            ("table", ["quantity", "median", "80% interval", "95% interval"], rows),
            ("list", [j for j in judgments if j]),
        ],
    )


def _what_decides(summary: dict) -> str:
    """One sentence: which inputs decide the capacity estimate, from the posterior
    contraction (summary.evidence_effect) and the prior-sensitivity figures (CJS)."""
    effect = summary.get("evidence_effect", {})
    decided = [n for n, e in effect.items() if e["decided_by"] == "evidence"]
    sens = next((c for c in summary["checks"] if c["name"] == "prior sensitivity"), {})
    target = "capacity_multiplier"
    # Only priors an analyst sets (the case's and data/priors.toml's, and the mixture of
    # readings): latent noise terms have priors too, but nobody can change them.
    named = set(summary.get("priors", {})) | {*variables.select(variables.PRIOR), "log_gain_log"}
    drivers = sorted(
        ((v[target], n) for n, v in sens.get("priors", {}).items() if n in named and target in v),
        reverse=True,
    )
    drivers = [(v, n) for v, n in drivers if v >= 0.05][:3]
    parts = []
    if decided:
        parts.append(
            "the evidence decides "
            + ", ".join(
                f"the {label(summary, n)} (contraction {effect[n]['contraction']:.0%})"
                for n in decided
            )
        )
    if drivers:
        named = []
        for v, n in drivers:
            c = effect.get(n, {}).get("contraction")
            known = f", evidence contraction {c:.0%}" if c is not None else ""
            named.append(f"the {label(summary, n)} (sensitivity {v:.2f}{known})")
        parts.append("the capacity multiplier moves most with the priors on " + ", ".join(named))
    elif sens.get("priors"):
        parts.append("no prior drives the capacity multiplier (every sensitivity < 0.05)")
    if not parts:
        return ""
    return "What decides it: " + "; ".join(parts) + "."


def _spread_sentence(summary: dict) -> list[str]:
    """The lowest and highest median across the case's scenarios (and its estimate)."""
    rows = summary.get("scenarios", [])
    if not rows:
        return []
    q = summary["quantities"]
    unit = summary["unit"]
    medians = [("the estimate", q["rate_after"]["median"], q["p_capacity_doubled"]["value"])]
    medians += [
        (f"“{r['scenario']}”", r["rate_after"]["median"], r["p_capacity_doubled"]) for r in rows
    ]
    low, high = min(medians, key=lambda m: m[1]), max(medians, key=lambda m: m[1])
    ps = [m[2] for m in medians]
    return [
        f"Across the case's {len(rows)} scenarios and the estimate, the median rate at full "
        f"capacity after the expansion runs from **{fmt(low[1])}** {unit} a month ({low[0]}) "
        f"to **{fmt(high[1])}** ({high[0]}); P(doubled) from {min(ps):.0%} to {max(ps):.0%}."
    ]


def report_blocks(summary: dict, idata: xr.DataTree) -> list[tuple]:
    """The report in the order an analyst's brief reads: key judgments first, then what they
    rest on (scenarios, readings, the monthly path), and the machinery as an appendix."""
    blocks: list[tuple] = [
        ("h1", summary["case_title"]),
        key_judgments_block(summary),
        ("toc",),
        *_headline_blocks(summary),
        *_scenario_blocks(summary),
        *_readings_blocks(summary),
        *footprints_report.report_blocks(summary),
        *_estimates_blocks(summary),
        *voi.report_blocks(summary),
        *_stage_blocks(summary),
        *_diff_blocks(summary),
        *_history_blocks(summary),
        ("h2", "Appendix"),
        *_health_blocks(summary),
        *_diagnostics_blocks(summary),
        *model_comparison_blocks(summary),
        *_priors_blocks(summary),
        *_ledger_blocks(summary, idata),
        *_provenance_blocks(summary),
    ]
    return blocks


def _headline_blocks(summary: dict) -> list[tuple]:
    q, unit, prov = summary["quantities"], summary["unit"], summary["provenance"]
    completion = q["completion"]["dates"]
    return [
        ("h2", "Headline"),
        (
            "p",
            "Before the expansion the plant made about "
            f"**{fmt(q['rate_before']['median'])} {unit} a month** "
            f"(95% interval {interval(q['rate_before'])}). At full rate after it, about "
            f"**{fmt(q['rate_after']['median'])} a month** ({interval(q['rate_after'])}): "
            f"{fmt(q['capacity_multiplier']['median'])} times the old capacity "
            f"({interval(q['capacity_multiplier'])}). The probability that capacity at least "
            f"doubled is **{q['p_capacity_doubled']['value']:.0%}** (Monte Carlo standard "
            f"error ±{q['p_capacity_doubled']['mcse']:.1%}).",
        ),
        (
            "p",
            f"The new building is modelled as complete around {completion['median']} "
            f"(80% interval {completion['0.8'][0]} to {completion['0.8'][1]}), reaching full rate "
            f"{fmt(q['ramp_months']['median'])} months later ({interval(q['ramp_months'])}). "
            "Intervals are equal-tailed posterior intervals.",
        ),
        ("p", _what_the_evidence_decided(summary)),
        (
            "p",
            f"Run {summary['created']} · case `{summary['case_id']}` · window "
            f"{summary['window']} · {prov['chains']} chains × {prov['draws']} draws "
            f"({prov['sampler']}), seed {prov['seed']}.",
        ),
        (
            "p",
            "(±x): the Monte Carlo standard error of the number before it (of each end of an "
            "interval, in order), from the draws' effective sample size (arviz-stats `mcse`): "
            "how far rerunning the sampler with another seed would typically move it.",
        ),
    ]


def _paragraph(text: str) -> list[tuple]:
    return [("p", text)] if text else []


def _readings_blocks(summary: dict) -> list[tuple]:
    return [
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
                f"rate after ({summary['unit']}/month, 95%)",
                "capacity multiplier (95%)",
                "P(doubled)",
            ],
            [_reading_row(r) for r in summary["readings"]],
        ),
        *_paragraph(how_obtained(summary["readings"], "reading")),
        ("img", "readings.png", FIGURES["readings.png"]),
    ]


def _estimates_blocks(summary: dict) -> list[tuple]:
    q = summary["quantities"]
    return [
        ("h2", "Monthly production and every estimate"),
        ("img", "fan_chart.png", FIGURES["fan_chart.png"]),
        (
            "p",
            "Monthly production in numbers (median and 50/80/95% intervals per month) is in "
            "monthly_production.csv beside this report and under monthly_production in "
            "summary.json.",
        ),
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
                    label(summary, name),
                )
                for name, v in q.items()
            ],
        ),
    ]


def _health_blocks(summary: dict) -> list[tuple]:
    checks = summary["checks"]
    return [
        ("h3", "Health"),
        (
            "table",
            ["check", "status", "finding", "rule"],
            [
                [
                    c["name"],
                    c["status"].upper(),
                    humanize(summary, c["finding"]),
                    humanize(summary, c["rule"]),
                ]
                for c in checks
            ],
        ),
        *_sensitivity_blocks(checks, summary),
    ]


def _retry_blocks(summary: dict) -> list[tuple]:
    """Fits that failed the diagnostics and were sampled once more (the table shows the retry)."""
    retries = summary.get("retries", [])
    if not retries:
        return [("p", "No fit needed a retry.")]
    rows = [
        [
            r["fit"],
            "; ".join(r["failures"]),
            f"target acceptance {r['retry_settings']['target_accept']}, "
            f"{r['retry_settings']['tune']} tuning steps",
            "passed" if r["passed"] else "FAILED: " + "; ".join(r["retry_failures"]),
        ]
        for r in retries
    ]
    return [
        ("p", f"{len(retries)} fit(s) failed the diagnostics and were sampled once more:"),
        ("table", ["fit", "first attempt", "retry with", "retry"], rows),
    ]


def _obtained(fit: dict) -> str:
    """Where a part's draws come from: sampled in this run, or weighted draws (the main fit's,
    moved by moment matching, or the previous run's refit, model/reuse.py, named by its run)."""
    method = fit.get("method", "sampled")
    return f"{method} (run {fit['reused_from']})" if "reused_from" in fit else method


def _diagnostics_blocks(summary: dict) -> list[tuple]:
    d = summary["diagnostics"]
    return [
        ("h3", "Diagnostics"),
        (
            "p",
            f"Thresholds: R-hat ≤ {d['thresholds']['max_rhat']}, bulk ESS ≥ "
            f"{d['thresholds']['min_ess_bulk']}, tail ESS ≥ {d['thresholds']['min_ess_tail']}, "
            "no divergences; every fit must pass.",
        ),
        *_retry_blocks(summary),
        (
            "table",
            ["fit", "draws", "status", "max R-hat", "min bulk ESS", "min tail ESS", "divergences"],
            [
                [
                    f["fit"],
                    _obtained(f),
                    "passed" if f["passed"] else "FAILED: " + "; ".join(f["failures"]),
                    f"{f['max_rhat']:.3f}",
                    f"{f['min_ess_bulk']:.0f}",
                    f"{f['min_ess_tail']:.0f}",
                    str(f["divergences"]),
                ]
                for f in d["fits"]
            ],
        ),
    ]


def _priors_blocks(summary: dict) -> list[tuple]:
    return [
        ("h3", "Priors"),
        (
            "p",
            "Borrowed priors come from the reference class of other plants' expansions "
            "(data/reference-class/; each prior's derivation names the plants used): "
            + (", ".join(label(summary, n) for n in summary["borrowed_priors"]) or "none")
            + ". Assumptions are judgements; change them in data/priors.toml or the case file.",
        ),
        (
            "table",
            ["prior", "distribution", "unit", "source", "rationale"],
            [
                [
                    label(summary, n),
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
    ]


def _ledger_blocks(summary: dict, idata: xr.DataTree) -> list[tuple]:
    rows = _ledger_rows(idata, summary)
    return [
        ("h3", "Evidence ledger"),
        (
            "details",
            f"{len(rows)} rows, each as recorded with its source (click to open)",
            [
                (
                    "p",
                    "Modelled rows show the posterior probability that the model treats the "
                    "row as an outlier (wrong beyond its reliability grade); the leave-one-out "
                    "predictive probability of the row given the others (LOO p: small values "
                    "mark reports the rest cannot explain); and how far leaving the row out "
                    "moves the median of the rate after the expansion, in posterior standard "
                    "deviations.",
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
                        "shift of rate after (sd)",
                        "source",
                        "quote",
                    ],
                    rows,
                ),
            ],
        ),
    ]


def _provenance_blocks(summary: dict) -> list[tuple]:
    return [("h3", "Provenance"), provenance_table(summary["provenance"])]


def provenance_table(prov: dict) -> tuple:
    """Where a run came from: one table for a plant's report and a programme's."""
    return (
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
    )


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
            "A programme is fitted once, with its plants' elasticities and ramp-up times pooled. "
            "Each plant's rows get a single plant's predictive and sensitivity checks "
            "(`<plant>: <check>` above), judged against the programme's joint posterior; the "
            "influence checks and the per-reading and scenario fits are those of each plant's "
            "own estimate (`capest estimate <plant folder>`).",
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
                    n,
                    v,
                    summary["prior_quantities"].get(n),
                    summary["evidence_effect"].get(n),
                    label(summary, n),
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
            ("h2", f"{plant['title']} ({plant['plant']})"),
            ("p", f"Window {plant['window']}; {plant['evidence']['rows']} ledger rows."),
            (
                "table",
                header,
                [
                    _quantity_row(
                        n, v, prior_q.get(n), plant["evidence_effect"].get(n), label(plant, n)
                    )
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
                    name,
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
        *model_comparison_blocks(summary, "h2"),
        ("h2", "Provenance"),
        provenance_table(prov),
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
            f"{label(summary, n)} ({fmt(q[n]['median'])} {q[n]['unit']}, 95% {interval(q[n])}; "
            "contraction "
            f"{effect[n]['contraction']:.0%})"
            if n in q and "median" in q[n]
            else n
            for n in decided
        )
        text += ". "
    else:
        text += "no quantity (no posterior is at least half as variable as its prior). "
    if priors:
        named = ", ".join(label(summary, n) for n in priors)
        text += f"Decided by the priors (listed under Priors): {named}. "
    for name in variables.select(variables.RESTS_ON):
        e = effect.get(name)
        if e and e.get("assumptions"):
            assumed = ", ".join(label(summary, a) for a in e["assumptions"])
            text += (
                f"{e['assumed_share']:.0%} of the posterior variance of the "
                f"{label(summary, name)} comes from {assumed}, which the evidence does not "
                "inform. "
            )
    return text + (
        f"Rule: decided by the evidence when the posterior variance is at most "
        f"{1 - DECIDED:.0%} of the prior's (contraction ≥ {DECIDED:.0%}); by the priors when "
        f"contraction < {INFORMED:.0%} and the median moved less than {MOVED:g} posterior sd "
        "(Betancourt's z-score), or when inputs the priors decide explain at least "
        f"{ASSUMED_SHARE:.0%} of a derived quantity's posterior variance; partly otherwise."
    )


def _diff_blocks(summary: dict) -> list[tuple]:
    """What changed since the previous run of the case (summary["diff"], set by the CLI)."""
    d = summary.get("diff")
    if not d:
        return [("h2", "What changed"), ("p", "This is the first run of this case.")]
    rows = []
    for name, q in d["quantities"].items():
        if "old" in q:
            rows.append([name, f"{q['old']:.0%}", f"{q['new']:.0%}", f"{q['change']:+.0%}"])
            continue
        old = {"intervals": q["old_intervals"]}
        new = {"intervals": q["new_intervals"]}
        shift = "" if q["shift_in_old_sd"] is None else f"{q['shift_in_old_sd']:+.2f} sd"
        rows.append(
            [
                name,
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
                " Of the added rows, leaving each out would move the rate after the expansion "
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
                for n in variables.select(variables.HISTORY)
                if n != "p_capacity_doubled"
            ),
            f"{r['quantities']['p_capacity_doubled']['median']:.0%}",
            "passed" if r["passed"] else "FAILED",
        ]
        for r in runs
    ]
    head = ["run", "evidence by", "inputs", "rate before (95%)", "rate after (95%)", "P(doubled)"]
    return [
        ("h2", "History"),
        ("table", [*head, "checks"], rows),
        ("img", "history.png", FIGURES["history.png"]),
    ]


def _sensitivity_blocks(checks: list[dict], summary: dict | None = None) -> list[tuple]:
    """Power-scaling sensitivity of the headline quantities, by prior and evidence stream."""
    summary = summary or {}
    sens = next((c for c in checks if c["name"] == "prior sensitivity" and "priors" in c), None)
    if sens is None:
        return []
    quantities = list(next(iter(sens["likelihood"].values())))
    rows = [
        [f"prior: {label(summary, n)}", *(f"{v[q]:.3f}" for q in quantities)]
        for n, v in sens["priors"].items()
    ]
    rows += [
        [f"prior: {label(summary, n)}", *(["flat (not applicable)"] * len(quantities))]
        for n in sens["flat_priors"]
    ]
    rows += [
        [
            "all evidence" if n == "evidence" else f"evidence: {n}",
            *(f"{v[q]:.3f}" for q in quantities),
        ]
        for n, v in sens["likelihood"].items()
    ]
    head = ["sensitivity to (CJS distance; >= 0.05 is notable)"]
    return [("table", [*head, *(label(summary, q) for q in quantities)], rows)]


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
        *_paragraph(how_obtained(rows, "scenario")),
    ]


def _quantity_row(
    name: str, q: dict, prior: dict | None, effect: dict | None, shown: str | None = None
) -> list[str]:
    name = shown or name  # the human label when the caller has one
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
    median = fmt(q["median"])
    if "mcse" in q:  # each number's Monte Carlo standard error beside it (summary.MCSE_QUANTILES)
        e = {p: fmt(v) for p, v in q["mcse"].items()}
        median += f" (±{e['0.5']})"
        spans[1] += f" (±{e['0.1']}, ±{e['0.9']})"
        spans[2] += f" (±{e['0.025']}, ±{e['0.975']})"
    return [name, q["unit"], median, *spans, prior_text, decided]


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


def blocks(summary: dict, idata: xr.DataTree) -> list[tuple]:
    """The report's blocks: a programme's or a single plant's."""
    return (programme_blocks if summary.get("programme") else report_blocks)(summary, idata)
