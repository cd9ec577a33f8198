"""Progress lines: each stage of a long run says on stderr (logger capest.progress) which
stage starts, how far the run is and the time so far."""

import logging

from model.timing import Stopwatch


def test_a_stage_line_names_the_stage_how_far_and_the_time_so_far(caplog):
    watch = Stopwatch("fit")
    with caplog.at_level(logging.INFO, logger="capest.progress"):
        watch.begin("scenario 'fast-ramp'", 2, 4)
        watch.begin("prior predictive draws")
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith("fit: scenario 'fast-ramp' (2/4), ") and first.endswith(" s so far")
    assert second.startswith("fit: prior predictive draws, ")
