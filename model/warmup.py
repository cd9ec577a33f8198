"""A cold run's side compiles in a forked child, on the core nutpie's compile leaves idle.

On a machine whose caches are empty, nutpie's compile of a model keeps one core busy for
80-90 s (numba, single-threaded, benchmarks/README.md) while the other waits; the compiles
that follow it in the same process (moment matching's density, the prior draws, the
scenarios' prior density: about a minute more) only fill PyTensor's and numba's disk
caches. `Beside` forks a child that makes them meanwhile, started at the first graph that
is not in the cache (a warm run starts none); when the parent gets to them it loads what the
child wrote, as a warm run does, so the numbers are a warm run's. The child writes nothing
else and says nothing (its output goes to /dev/null); whatever it did not finish, the parent
compiles as before. It is not started where a fork is unsafe (other Python threads: a
notebook's kernel, a Dask worker) or useless (one core).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a child gets when its parent dies


class Beside:
    """`work` run in a forked child once `start` is called (model/compiled.py `on_miss`: at
    the first graph a cold machine compiles); `wait` reaps the child, `stop` ends it first."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.work = work
        self.pid: int | None = None
        self.started = False

    def start(self) -> None:
        """Fork the child, once, where that is `usable`; the caller goes on."""
        if self.started:
            return
        self.started = True
        if usable():
            self.pid = _fork(self.work)
            log.debug("side compiles in child %d", self.pid)

    def busy(self) -> bool:
        """Whether the child is still working (one that has exited is reaped)."""
        if self.pid is None:
            return False
        pid, _ = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.pid = None
        return False

    def wait(self) -> None:
        """Block until the child has exited."""
        if self.pid is not None:
            os.waitpid(self.pid, 0)
            self.pid = None

    def stop(self) -> None:
        """End the child if it is still working (an error in the parent), and reap it."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait()


def usable() -> bool:
    """Whether forking here is safe and can gain: POSIX, two cores or more for this process,
    and no Python thread besides this one (a forked child keeps only the forking thread, and
    a lock another thread held stays locked in it)."""
    if not hasattr(os, "fork") or not hasattr(os, "sched_getaffinity"):
        return False
    return len(os.sched_getaffinity(0)) >= 2 and threading.active_count() == 1


def _fork(work: Callable[[], None]) -> int:
    """The child's pid; the child runs `work()` with its output discarded and its errors
    ignored (it only fills caches, which the parent would otherwise fill), then exits."""
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
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - until os._exit
        logging.disable(logging.CRITICAL)  # handlers may hold the parent's streams
        work()
        code = 0
    except BaseException:  # noqa: BLE001, S110 - the parent compiles what the child did not
        pass
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
