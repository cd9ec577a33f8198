"""What changed between two runs, from their summaries."""

import copy

import pytest

from model.compare import diff, headline_names


def summary(median=10.0, ids=("a", "b"), input_hash="h1", shifts=None):
    q = {"unit": "missiles/month", "median": median,
         "intervals": {"0.5": [median - 1, median + 1], "0.8": [median - 2.5632, median + 2.5632],
                       "0.95": [median - 4, median + 4]}}  # fmt: skip
    return {
        "created": "2026-01-01T00:00:00Z",
        "provenance": {"input_hash": input_hash},
        "quantities": {
            "rate_before": q,
            "rate_after": copy.deepcopy(q),
            "capacity_multiplier": copy.deepcopy(q),
            "production_2024": copy.deepcopy(q),
            "p_capacity_doubled": {"unit": "probability", "value": 0.25},
        },
        "evidence": {"ids": list(ids)},
        "checks": [{"name": "influence", "shifts": {"rate_after": shifts or {}}}],
    }


def test_shift_is_measured_in_the_old_posterior_sd():
    # old 80% interval +-2.5632 around 10 is a normal sd of 2.5632 / 1.2816 = 2
    d = diff(summary(10.0), summary(13.0, input_hash="h2"), "run-1")
    assert d["quantities"]["rate_before"]["shift_in_old_sd"] == pytest.approx(1.5, rel=1e-3)
    assert d["quantities"]["p_capacity_doubled"]["change"] == 0.0
    assert list(d["quantities"]) == headline_names(summary())
    assert not d["same_inputs"] and d["previous_run"] == "run-1"


def test_added_and_removed_rows_ranked_by_influence():
    old = summary(ids=("a", "b", "c"))
    new = summary(ids=("a", "b", "x", "y"), input_hash="h2", shifts={"x": 0.1, "y": -0.7, "a": 2})
    d = diff(old, new)
    assert d["evidence_added"] == ["x", "y"] and d["evidence_removed"] == ["c"]
    assert [r["id"] for r in d["added_rows_by_influence"]] == ["y", "x"]


def test_changes_besides_the_inputs_are_named_and_reported():
    from model.report import _diff_blocks, to_markdown

    old, new = summary(), summary()
    # a run saved before the adaptation setting existed, then one after an upgrade
    old["provenance"] |= {"model_version": "5", "sampler_settings": {"draws": 1000},
                          "packages": {"pymc": "6.4.0", "numpy": "2.3.0"}}  # fmt: skip
    new["provenance"] |= {"model_version": "5",
                          "sampler_settings": {"draws": 1000, "adaptation": "draw_diag"},
                          "packages": {"pymc": "6.4.1", "numpy": "2.3.0"}}  # fmt: skip
    d = diff(old, new, "run-1")
    assert d["same_inputs"]
    assert d["other_changes"] == ["adaptation - -> draw_diag", "pymc 6.4.0 -> 6.4.1"]
    md = to_markdown(_diff_blocks({"diff": d}))
    assert "Changed since: adaptation - -> draw_diag, pymc 6.4.0 -> 6.4.1." in md

    # the provenance records the sampler at the top and among the settings: named once
    fallback = copy.deepcopy(new)
    fallback["provenance"]["sampler"] = "pymc"
    fallback["provenance"]["sampler_settings"]["sampler"] = "pymc"
    new["provenance"]["sampler"] = new["provenance"]["sampler_settings"]["sampler"] = "nutpie"
    assert diff(new, fallback)["other_changes"] == ["sampler nutpie -> pymc"]

    assert diff(new, new)["other_changes"] == []
    md = to_markdown(_diff_blocks({"diff": diff(new, new)}))
    assert "Model version, sampler settings and packages are too" in md


def test_a_replay_with_fewer_rows_is_not_called_unchanged():
    """--as-of leaves rows out of the same files: the input hash is the same, the evidence
    is not, and the diff says which rows it did not use."""
    from model.report import _diff_blocks, to_markdown

    latest = summary(ids=("a", "b", "c"))
    latest["provenance"]["evidence_as_of"] = "2025-04-30"
    replay = summary(ids=("a",))
    replay["provenance"] |= {"evidence_as_of": "2024-06-30", "replay": True}
    d = diff(latest, replay, "run-1")
    assert not d["same_inputs"] and d["evidence_removed"] == ["b", "c"]
    md = to_markdown(_diff_blocks({"diff": d, "provenance": replay["provenance"]}))
    assert "unchanged" not in md
    assert "a replay with the evidence reported by 2024-06-30" in md


def test_history_is_ordered_by_the_evidence_each_run_used(tmp_path):
    import json

    from model.compare import history

    runs = {  # folder (when it ran) -> the evidence cut-off it used
        "20260101T000000Z": "2025-04-30",  # a normal run
        "20260102T000000Z": "2024-02-28",  # replays made later, of older evidence
        "20260103T000000Z": "2024-12-31",
    }
    for run, as_of in runs.items():
        s = summary()
        s["created"] = run
        s["provenance"]["evidence_as_of"] = as_of
        s["diagnostics"] = {"passed": True}
        (tmp_path / "case" / run).mkdir(parents=True)
        (tmp_path / "case" / run / "summary.json").write_text(json.dumps(s))
    got = [r["evidence_as_of"] for r in history(tmp_path, "case")]
    assert got == ["2024-02-28", "2024-12-31", "2025-04-30"]
