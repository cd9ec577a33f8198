"""The prior predictive draws made in a forked child (model/prior_draws.py): the numbers are
those of the in-process call; a child that fails or is no longer wanted costs nothing but
time."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pymc as pm
import pytest

from model import prior_draws
from tests.conftest import CASE

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")


def _model() -> pm.Model:
    """The February 11 model, the one the fit draws from. Not a toy model: compiling another
    model's prior predictive first changes the next fit's numbers in this process (measured:
    the small fit's median rate_before 15.43 -> 15.92), which would break test_numbers when
    both run in one worker."""
    from model import load_case
    from model.build import build_model
    from model.priors import resolve_priors

    case = load_case(CASE)
    return build_model(case, resolve_priors(case))


def _same(a, b) -> None:
    for group in ("prior", "prior_predictive"):
        left, right = a[group].to_dataset(), b[group].to_dataset()
        assert sorted(left.data_vars) == sorted(right.data_vars)
        for name in left.data_vars:
            np.testing.assert_array_equal(left[name].to_numpy(), right[name].to_numpy())


def test_forked_draws_are_the_in_process_draws():
    model = _model()
    names = ["rate_before", "export_share"]
    here = prior_draws.start(model, names, 100, 7, fork=False).result()
    with prior_draws.start(model, names, 100, 7, fork=True) as pending:
        assert pending.pid is not None  # it did fork
        there = pending.result()
    assert pending.seconds is not None  # answered by the child
    _same(here, there)
    other = prior_draws.start(model, names, 100, 8, fork=False).result()
    assert not np.array_equal(  # the comparison can fail: another seed, other numbers
        other["prior"]["rate_before"].to_numpy(), here["prior"]["rate_before"].to_numpy()
    )


def test_a_child_that_dies_is_replaced_by_in_process_draws(monkeypatch, caplog):
    parent, real = os.getpid(), prior_draws.draw

    def dies_in_the_child(*args):
        if os.getpid() != parent:
            os._exit(9)  # killed, out of memory: no answer at all
        return real(*args)

    monkeypatch.setattr(prior_draws, "draw", dies_in_the_child)
    model = _model()
    with caplog.at_level(logging.WARNING, logger="model.prior_draws"):
        with prior_draws.start(model, ["rate_before"], 100, 3, fork=True) as pending:
            got = pending.result()
    assert pending.seconds is None and "failed, made here" in caplog.text
    _same(got, real(model, ["rate_before"], 100, 3))


def test_an_error_in_the_draws_is_raised_as_in_process(monkeypatch):
    def fails(*args):
        raise ValueError("a prior with a negative sd")

    monkeypatch.setattr(prior_draws, "draw", fails)
    with prior_draws.start(_model(), ["rate_before"], 100, 3, fork=True) as pending:
        with pytest.raises(ValueError, match="negative sd"):
            pending.result()


def test_a_child_no_longer_wanted_is_stopped(monkeypatch):
    def forever(*args):
        time.sleep(600)

    monkeypatch.setattr(prior_draws, "draw", forever)
    began = time.perf_counter()
    with prior_draws.start(_model(), ["rate_before"], 100, 3, fork=True) as pending:
        pid = pending.pid
    assert pending.pid is None and time.perf_counter() - began < 30
    with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
        os.waitpid(pid, os.WNOHANG)


def test_threads_or_one_core_draw_in_process(monkeypatch):
    monkeypatch.setattr(prior_draws.threading, "active_count", lambda: 3)
    assert not prior_draws.can_fork()
    monkeypatch.setattr(prior_draws.threading, "active_count", lambda: 1)
    monkeypatch.setattr(prior_draws.os, "cpu_count", lambda: 1)
    assert not prior_draws.can_fork()
    pending = prior_draws.start(_model(), ["rate_before"], 50, 1)
    assert pending.pid is None and pending.done is None  # drawn when asked, as before
    assert pending.result()["prior"]["rate_before"].shape == (1, 50)
