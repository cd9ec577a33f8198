"""What capest writes for users' programs is strict JSON (model/strict_json.py): no NaN or
Infinity, which Python's json accepts and JavaScript, jq and schedulers reject; and what reads
such a file back takes null where a number was not finite."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from model import strict_json, voi

from .conftest import ROOT


def strict_loads(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as strict parsers do."""

    def refuse(name: str):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_numbers_that_are_not_finite_become_null_at_any_depth():
    value = {
        "k": float("nan"),
        "rows": [{"pareto_k": np.float64("inf")}, (1.5, -math.inf)],
        "kept": [0.7, 3, "NaN", None, True],
    }
    text = strict_json.dumps(value)
    assert strict_loads(text) == {
        "k": None,
        "rows": [{"pareto_k": None}, [1.5, None]],
        "kept": [0.7, 3, "NaN", None, True],
    }
    with pytest.raises(ValueError, match="not strict JSON"):
        strict_loads(json.dumps(value["rows"][0]))  # what Python's json writes by default


def test_every_json_file_model_writes_goes_through_strict_json():
    """summary.json (publish.py), calibration.json (calibration.py) and --timings (cli.py):
    a writer that calls json.dump(s) straight into a file can write NaN again."""
    direct = re.compile(r"write_text\(json\.dumps|json\.dump\(")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "model").glob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if direct.search(line)
    ]
    assert offenders == []


def test_an_infinite_pareto_k_stays_flagged():
    # psis_weights gives k = inf where the tail fit failed; the 90th percentile between two
    # of them was NaN, which compared false with the threshold and unflagged the candidate.
    k = np.array([0.1] * 8 + [math.inf] * 2)
    assert voi.k_quantile(k) == math.inf and voi.k_quantile(k) > voi.PARETO_K_MAX
    assert voi.k_quantile(np.array([0.1] * 9 + [0.9])) == pytest.approx(0.18)


def ranking_summary(pareto_k: float, mcse: float) -> dict:
    """A saved summary's "what to measure next" part: one candidate, one input."""
    return {
        "case_title": "A plant",
        "created": "2026-12-02T00:00:00Z",
        "unit": "missiles",
        "voi_target": {"quantity": "rate_after", "named": None},
        "voi_refits": {},
        "what_to_measure_next": [
            {
                "candidate": "launches-next",
                "description": "a launch count",
                "quantity": "rate_after",
                "current_interval_80": [10.0, 40.0],
                "typical_interval_80": [14.0, 30.0],
                "current_sd_log": 0.5,
                "expected_sd_log": 0.4,
                "mcse_sd_log": mcse,
                "narrowing": 0.2,
                "expected_interval_80_width": 16.0,
                "pareto_k": pareto_k,
                "pareto_k_flag": bool(not pareto_k <= voi.PARETO_K_MAX),
                "refitted": 0,
                "method": "reweighted",
            }
        ],
        "value_of_learning": [
            {
                "input": "export_share",
                "label": "the export share",
                "quantity": "rate_after",
                "current_sd_log": 0.5,
                "expected_sd_log": 0.3,
                "mcse_sd_log": mcse,
                "narrowing": 0.4,
                "expected_interval_80_width": 12.0,
            }
        ],
    }


def test_capest_next_reads_null_where_the_fit_had_no_finite_number():
    saved = strict_loads(strict_json.dumps(ranking_summary(math.inf, math.nan)))
    row = saved["what_to_measure_next"][0]
    assert row["pareto_k"] is None and row["mcse_sd_log"] is None and row["pareto_k_flag"]
    printed = voi.print_ranking(saved)
    assert "Pareto k not estimable > 0.7" in printed and "(±undefined)" in printed
    # the same words as from the fit's own numbers, before they were written
    assert printed == voi.print_ranking(ranking_summary(math.inf, math.nan))
    finite = voi.print_ranking(ranking_summary(0.9, 0.01))
    assert "Pareto k 0.90 > 0.7" in finite and "(±0.010)" in finite
