"""A cold run's side compiles in a forked child, on the core nutpie's compile leaves idle.

On a machine whose caches are empty, nutpie's compile of a model keeps one core busy for
80-90 s (numba, single-threaded, benchmarks/README.md) while the other waits; the compiles
that follow it in the same process (moment matching's density, the prior draws, the
scenarios' prior density: about a minute more) only fill PyTensor's and numba's disk
caches. `Beside` forks a child that makes them meanwhile, started at the first graph that
is not in the cache (a warm run starts none); when the parent gets to them it loads what the
child wrote, as a warm run does, so the numbers are a warm run's. The child writes nothing
else and says nothing (its output goes to /dev/null); the parent logs that it started and how
it ended, and compiles whatever it did not finish, as before. It is not started where a fork
is unsafe (other Python threads: a notebook's kernel, a Dask worker) or useless (one core).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a child gets when its parent dies


# How long the fit waits for a child still compiling before it ends it and compiles the
# rest itself: the February 11 child needs about 75 s on this machine (benchmarks/README.md),
# so a child past this is stuck, not slow.
WAIT_LIMIT = 600.0  # seconds


class Beside:
    """`work` run in a forked child once `start` is called (model/compiled.py `on_miss`: at
    the first graph a cold machine compiles); `wait` reaps the child, `stop` ends it first.
    What happened is logged: the child started, finished, failed or was ended (its exit
    status in `exit_code`)."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.work = work
        self.pid: int | None = None
        self.started = False
        self.exit_code: int | None = None  # the child's, once reaped
        self.ended = False  # ended by `stop`, not by its own error

    def start(self) -> None:
        """Fork the child, once, where that is `usable`; the caller goes on."""
        if self.started:
            return
        self.started = True
        if not usable():
            return
        try:
            self.pid = _fork(self.work)
        except OSError as e:  # no process to spare: the caller compiles everything, as before
            log.warning("the later compiles stay in this process (no child: %s)", e)
            return
        log.info(
            "compile caches cold: the compiles after nutpie's (the draws' expansion, prior "
            "draws, moment matching) go to a child process beside this one's"
        )

    def busy(self) -> bool:
        """Whether the child is still working (one that has exited is reaped)."""
        return self.pid is not None and not self._reap(os.WNOHANG)

    def wait(self, limit: float = WAIT_LIMIT) -> None:
        """Block until the child has exited, or end it after `limit` seconds."""
        deadline = time.monotonic() + limit
        while self.busy():
            if time.monotonic() > deadline:
                log.warning("the child's compiles took over %.0f s: ended", limit)
                self.stop()
                return
            time.sleep(0.1)

    def wait_timed(self, watch) -> None:
        """`wait` if the child is still working, said and timed as a stage of `watch` (a
        model/timing.py `Stopwatch`): what the caller loads next is what it compiles last."""
        if self.busy():
            watch.begin("waiting for the compiles made beside nutpie's")
            watch.mark("other")
            self.wait()
            watch.mark("side compiles (waited for)")

    def stop(self) -> None:
        """End the child if it is still working (an error in the parent), and reap it."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
                self.ended = True
            self._reap(0)

    def _reap(self, options: int) -> bool:
        """waitpid; whether the child has exited (and is reaped: its status logged)."""
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): nothing to wait for
            self.pid = None
            return True
        if pid == 0:
            return False
        self.pid = None
        self.exit_code = os.waitstatus_to_exitcode(status)
        if self.exit_code == 0:
            log.info("the child's compiles are done: this process loads them")
        elif self.ended and self.exit_code == -signal.SIGKILL:  # not the child's failure
            log.info("the child's compiles were ended: this process compiles what it needs")
        else:
            log.warning(
                "the child's compiles failed (exit %d): this process compiles what it needs",
                self.exit_code,
            )
        return True


def usable() -> bool:
    """Whether forking here is safe and can gain: POSIX, two cores or more for this process,
    and no Python thread besides this one (a forked child keeps only the forking thread, and
    a lock another thread held stays locked in it)."""
    if not hasattr(os, "fork") or not hasattr(os, "sched_getaffinity"):
        return False
    return len(os.sched_getaffinity(0)) >= 2 and threading.active_count() == 1


def _fork(work: Callable[[], None]) -> int:
    """The child's pid; the child runs `work()` with its output discarded (it only fills
    caches, which the parent would otherwise fill) and exits 0, or 1 on any error."""
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    with warnings.catch_warnings():
        # Python warns of any other OS thread; those here are native pools (OpenBLAS,
        # jemalloc's background thread) that re-arm in the child through their own fork
        # handlers, as for multiprocessing's fork start method.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        with contextlib.suppress(Exception):  # a child outliving a killed parent holds its lock
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was asked for
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - until os._exit
        logging.disable(logging.CRITICAL)  # handlers may hold the parent's streams
        work()
        code = 0
    except BaseException:  # noqa: BLE001, S110 - the exit code tells the parent
        pass
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
