"""A cold run's side compiles in a forked child (model/warmup.py): the child does its work
beside the caller, silently, is never started where a fork is unsafe, and ends with the
caller's error; what it compiles is what the fit then calls (the same numba versions), so
the fit loads it instead of compiling it again."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np

from model import warmup
from tests.conftest import ROOT


def _touch(path):
    return lambda: path.write_text("done")


def _fresh(code: str) -> subprocess.CompletedProcess:
    """`code` run in a fresh interpreter (the test process may have other threads by now: a
    Dask cluster's, the browser's, where `Beside` rightly forks nothing), which must exit 0."""
    out = subprocess.run(
        [sys.executable, "-c", "from model import warmup\n" + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out


def test_the_child_does_the_work_beside_the_caller(tmp_path):
    flag = tmp_path / "flag"
    said = _fresh(
        f"""
        import pathlib
        side = warmup.Beside(lambda: pathlib.Path({str(flag)!r}).write_text("done"))
        side.start()
        print(side.pid is not None)
        side.start()  # once: a second miss starts no second child
        side.wait()
        print(side.busy(), side.exit_code)
        """
    ).stdout
    assert said.split() == ["True", "False", "0"]
    assert flag.read_text() == "done"


def test_a_wait_for_the_child_is_a_stage_of_its_own_and_none_once_it_is_done():
    """What the caller waits for is said and timed apart (its progress line, the stopwatch's
    "side compiles (waited for)"); a child already done, or none, adds no stage."""
    out = _fresh(
        """
        import logging, time
        from model.timing import Stopwatch
        logging.basicConfig(level=logging.INFO)
        watch = Stopwatch("fit")
        side = warmup.Beside(lambda: time.sleep(1.0))
        side.start()
        side.wait_timed(watch)
        print(side.busy(), round(watch.seconds["side compiles (waited for)"], 1) >= 0.5)
        again = Stopwatch("fit")
        side.wait_timed(again)  # done: nothing to wait for
        warmup.Beside(lambda: None).wait_timed(again)  # never started
        print(sorted(again.seconds))
        """
    )
    assert out.stdout.split("\n")[:2] == ["False True", "[]"]
    assert "fit: waiting for the compiles made beside nutpie's" in out.stderr


def test_the_childs_output_and_errors_stay_in_the_child():
    """The child's prints and logs go nowhere; its error is its exit code, which the parent
    logs (it then compiles what the child did not) and goes on."""
    out = _fresh(
        """
        import logging
        logging.basicConfig(level=logging.INFO)
        def noisy():
            print("printed by the child")
            logging.getLogger("x").warning("logged by the child")
            raise RuntimeError("the child's own error")
        side = warmup.Beside(noisy)
        side.start()
        assert side.pid is not None
        side.wait()  # no exception here
        print("the parent goes on", side.exit_code)
        """
    )
    assert out.stdout == "the parent goes on 1\n"
    assert "by the child" not in out.stderr and "own error" not in out.stderr
    assert "the child's compiles failed (exit 1)" in out.stderr


def test_a_fork_that_fails_leaves_the_work_to_the_caller():
    out = _fresh(
        """
        import logging, os
        logging.basicConfig(level=logging.INFO)
        def no_process():
            raise BlockingIOError(11, "Resource temporarily unavailable")
        os.fork = no_process
        side = warmup.Beside(lambda: None)
        side.start()
        print(side.pid, side.busy())
        """
    )
    assert out.stdout.split() == ["None", "False"]
    assert "the later compiles stay in this process (no child" in out.stderr


def test_no_child_beside_another_python_thread(tmp_path):
    """A forked child keeps only the forking thread (a notebook's kernel, a Dask worker have
    others): no fork there, the work left to the caller."""
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        side = warmup.Beside(_touch(tmp_path / "flag"))
        side.start()
        assert side.pid is None and not side.busy()
        side.wait()
    finally:
        release.set()
        other.join()
    assert not (tmp_path / "flag").exists()


def test_stop_ends_a_child_still_working_and_a_stuck_one_is_not_waited_for_forever():
    said = _fresh(
        """
        import time
        side = warmup.Beside(lambda: time.sleep(600))
        side.start()
        print(side.busy())
        side.stop()
        print(side.pid is None, side.busy(), side.exit_code)
        stuck = warmup.Beside(lambda: time.sleep(600))
        stuck.start()
        stuck.wait(limit=0.5)
        print(stuck.busy(), stuck.exit_code)
        failing = warmup.Beside(lambda: 1 / 0)
        failing.start()
        failing.wait()
        failing.stop()  # after it exited: nothing to end
        print(failing.exit_code, failing.ended)
        """
    ).stdout
    assert said.split() == ["True", "True", "False", "-9", "False", "-9", "1", "False"]


def test_the_log_tells_a_child_ended_from_one_that_failed(caplog):
    """An ended child (the fit's error, or past the wait limit) is said as ended, not as a
    failure of its own; a child whose work raised is a failure, with its exit code."""
    import logging
    import signal

    side = warmup.Beside(lambda: None)
    with caplog.at_level(logging.INFO, logger="model.warmup"):
        for ended, code in ((True, -signal.SIGKILL), (False, 1)):
            side.ended, side.pid = ended, 12345
            status = code if code > 0 else 0
            status = (status << 8) if code > 0 else -code  # waitpid's encoding
            with _waitpid_returning(12345, status):
                assert side._reap(0)
    assert "were ended: this process compiles what it needs" in caplog.records[0].message
    assert caplog.records[0].levelname == "INFO"
    assert "failed (exit 1)" in caplog.records[1].message
    assert caplog.records[1].levelname == "WARNING"


def _waitpid_returning(pid: int, status: int):
    from unittest import mock

    return mock.patch.object(warmup.os, "waitpid", lambda *_: (pid, status))


def test_the_side_compiles_are_the_versions_the_fit_calls(small_fit):
    """numba compiles one version of a function per argument type (dtype, rank, layout,
    read-only or not). The child calls moment matching's density and the prior density at
    the initial point; the fit then calls them at its draws and under other pm.Data values,
    and must find no version missing (else it compiles for a minute what the child made
    in vain). A read-only array, as NetCDF and nutpie hand them out, would be one: the
    check sees it."""
    from model import load_case
    from model.build import build_model
    from model.moment_match import Density
    from model.priors import resolve_priors
    from model.reweight import PriorDensity
    from model.sampler import stored_names
    from tests.conftest import CASE

    case = load_case(CASE)
    model = build_model(case, resolve_priors(case))
    density, prior = Density(model, stored_names(model)), PriorDensity(model)
    defaults = {d.name: d.get_value() for d in model.data_vars}
    point = density.warm(model)  # what model/fit.py's _side_compiles calls
    prior(point, defaults)
    functions = [density._logp, density._outputs, density._forward, prior.fn]

    def versions():
        return [list(f.vm.jit_fn.signatures) for f in functions]

    made = versions()
    assert all(len(v) == 1 for v in made)
    # as the fit calls them: the saved draws, a row left out, a scenario's prior parameters
    post = small_fit["posterior"].to_dataset()
    shape = (post.sizes["chain"], post.sizes["draw"])
    upars = density.unconstrained(post)
    weight = np.ones(post.sizes["obs"])
    weight[0] = 0.0
    density.logp(upars, {"row_weight": weight})
    density.draws(upars, shape, {"row_weight": weight}, post)
    prior(post, {n: np.array(v) for n, v in defaults.items()})  # a scenario's own arrays
    assert versions() == made
    # the negative control: read-only blocks are another version
    blocks = density._blocks(upars)
    for b in blocks:
        b.flags.writeable = False
    density._logp(*blocks, *density._data(None))
    assert versions() != made
