"""Progress lines: each stage of a long run says on stderr (logger capest.progress) which
stage starts, how far the run is and the time so far."""

import logging

import pytest

from model.timing import Stopwatch


def test_a_stage_line_names_the_stage_how_far_and_the_time_so_far(caplog):
    watch = Stopwatch("fit")
    with caplog.at_level(logging.INFO, logger="capest.progress"):
        watch.begin("scenario 'fast-ramp'", 2, 4)
        watch.begin("prior predictive draws")
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith("fit: scenario 'fast-ramp' (2/4), ") and first.endswith(" s so far")
    assert second.startswith("fit: prior predictive draws, ")


@pytest.mark.parametrize("name", ["nutpie", "pymc"])
def test_a_fit_that_samples_says_how_many_of_its_draws_are_done(caplog, monkeypatch, name):
    """nutpie's progress, and PyMC's NUTS's (the fallback), as lines: a scheduler's log
    shows a fit of minutes moving (the synthetic programme's main fit sampled 7.5 minutes
    without a line)."""
    import re

    import pymc as pm

    from model import timing
    from model.sampler import Sampler, SamplerSettings

    monkeypatch.setattr(timing, "SAMPLING_EVERY", 0.0)  # a line at every callback
    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=2)
    settings = SamplerSettings(draws=3000, tune=300, chains=2, prior_draws=10, sampler=name)
    sampler = Sampler(model, settings, Stopwatch("fit"))
    with caplog.at_level(logging.INFO, logger="capest.progress"):
        sampler.sample(None, 1, stage="sampling (main fit)")
    lines = [r.getMessage() for r in caplog.records if "draws (" in r.getMessage()]
    assert lines, [r.getMessage() for r in caplog.records]
    pattern = (
        r"fit: sampling \(main fit\): (tuning|sampling), (\d+) divergences, draws \((\d+)/(\d+)\), "
    )
    for line in lines:
        found = re.match(pattern, line)
        assert found and int(found[3]) <= int(found[4]) == 2 * 3300, line
