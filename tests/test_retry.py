"""A fit that fails the sampler diagnostics is sampled once more, more carefully; only a fit
that still fails fails the report."""

import json

import numpy as np
import xarray as xr

from model.diagnostics import RETRY_TARGET_ACCEPT, diagnose, sample_with_retry
from model.report import report_blocks, to_markdown
from model.sampler import Sampler, SamplerSettings
from model.summary import summarize
from model.timing import Stopwatch


def fake_fit(divergences: int, seed: int = 0) -> xr.DataTree:
    """A well-mixed fit of two free variables with `divergences` divergent transitions: what a
    sampler returns when a few steps near a funnel's neck diverge (the realistic failure)."""
    rng = np.random.default_rng(seed)
    draws = {
        n: (("chain", "draw"), rng.lognormal(2, 0.3, (4, 500))) for n in ("rate_before", "use_lag")
    }
    diverging = np.zeros((4, 500), dtype=bool)
    diverging.flat[:divergences] = True
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(draws),
            "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), diverging)}),
        }
    )


def test_a_passing_fit_is_not_sampled_again():
    calls = []

    def sample(**over):
        calls.append(over)
        return fake_fit(0)

    fit, record = sample_with_retry(sample, "main", 0.9, 1000)
    assert calls == [{}] and record is None


def test_two_divergences_are_retried_with_more_care_and_the_retry_kept():
    calls = []

    def sample(**over):
        calls.append(over)
        return fake_fit(2 if not over else 0, seed=len(calls))

    fit, record = sample_with_retry(sample, "without row x", 0.9, 1000)
    assert calls == [{}, {"target_accept": RETRY_TARGET_ACCEPT, "tune": 2000}]
    assert int(fit["sample_stats"]["diverging"].sum()) == 0  # the retry is what is kept
    assert record["fit"] == "without row x" and record["passed"]
    assert record["failures"] == ["2 divergent transition(s)"] and record["retry_failures"] == []


def test_a_fit_that_fails_again_is_recorded_as_failed_and_fails_the_diagnostics():
    fit, record = sample_with_retry(lambda **over: fake_fit(3), "main", 0.9, 1000)
    assert not record["passed"] and record["retry_failures"] == ["3 divergent transition(s)"]
    assert not diagnose(fit)["passed"]


def test_the_sampler_retries_through_its_hook_and_keeps_the_record():
    """sampler.Sampler.sample is the hook: every fit of a case (main, reading, scenario, refit)
    goes through it, and fit() saves sampler.retries in the fit's attrs (summary `retries`)."""
    sampler = Sampler.__new__(Sampler)  # no model: _sample is replaced below
    sampler.settings, sampler.watch, sampler.retries = SamplerSettings(), Stopwatch(), []
    sampler.retry = True  # as fit() sets it
    seen = []

    def _sample(weights, seed, data, progress=None, stage=None, **over):  # not settings
        seen.append(over)
        return fake_fit(0 if over else 2)

    sampler._sample = _sample
    sampler.sample(None, 7, stage="sampling (main fit)")
    assert seen[1] == {"target_accept": RETRY_TARGET_ACCEPT, "tune": 2000}
    assert [r["fit"] for r in sampler.retries] == ["sampling (main fit), seed 7"]
    assert sampler.retries[0]["passed"]


def test_quick_runs_and_calibration_samplers_are_not_retried():
    """A run of fewer draws than twice the ESS threshold (the tests' small fits) cannot reach the
    ESS rule: it is not retried. A Sampler is retried only when its caller asks (fit does)."""
    for settings, retry in (
        (SamplerSettings(draws=200, chains=2), True),
        (SamplerSettings(), False),
    ):
        sampler = Sampler.__new__(Sampler)
        sampler.settings, sampler.watch, sampler.retries = settings, Stopwatch(), []
        sampler.retry = retry
        calls = []

        def _sample(weights, seed, data, calls=calls, progress=None, stage=None, **over):
            calls.append(over)
            return fake_fit(2)

        sampler._sample = _sample
        sampler.sample(None, 7)
        assert calls == [{}] and sampler.retries == []


def test_the_summary_and_report_list_each_retry(small_fit):
    record = {
        "fit": "sampling, seed 20241225",
        "failures": ["2 divergent transition(s)"],
        "settings": {"target_accept": 0.9, "tune": 1000},
        "retry_settings": {"target_accept": RETRY_TARGET_ACCEPT, "tune": 2000},
        "retry_failures": [],
        "passed": True,
    }
    tree = small_fit.copy()
    tree.attrs["retries"] = json.dumps([record])
    summary = summarize(tree)
    assert summary["retries"] == [record]
    page = to_markdown(report_blocks(summary, tree))
    assert "1 fit(s) failed the diagnostics and were sampled once more" in page
    assert "| sampling, seed 20241225 | 2 divergent transition(s) |" in page
    assert f"target acceptance {RETRY_TARGET_ACCEPT}, 2000 tuning steps | passed |" in page
