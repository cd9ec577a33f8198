"""The prior predictive draws of a fit, made beside nutpie's compile instead of after it.

`pm.sample_prior_predictive` spends its time compiling the forward graph (the C backend's
FAST_RUN rewrites, in every process), not drawing (about 1 ms a draw: benchmarks/README.md).
nutpie's compile of the same model, which the fit does next, is single-threaded too, so on a
machine with a second core the draws are made in a forked child process while the parent
compiles and samples (`start`), and collected when the fit needs them (`Pending.result`).
The child runs the same function on the same model with the same seed, so the numbers are
the ones an in-process call gives (tests/test_prior_draws.py).

The draws are made in-process, when the fit asks for them (after the main fit, as before),
when fork is missing (not POSIX), with one core, or
when the process runs other threads (a Dask worker, a test runner): a child forked from a
threaded process could wait forever on a lock one of those threads held. A child that fails
for any reason (killed, out of memory, an error) is not an answer: the parent then makes the
draws itself, and an error they raise is raised as before.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
import warnings

import pymc as pm
import xarray as xr

log = logging.getLogger(__name__)


def draw(model: pm.Model, names: list[str], draws: int, seed: int) -> xr.DataTree:
    """The prior and prior predictive draws (what fit.py used to call in line)."""
    with model, warnings.catch_warnings():
        # The evidence's random draw is plain numpy (measurement_draw), so numba runs it in
        # object mode and says so; that is expected and costs nothing measurable here.
        warnings.filterwarnings("ignore", message="Numba will use object mode")
        # Serial sightings enter as a Potential, which prior draws cannot honour: the prior
        # predictive is of the measured evidence only (the report's prior columns say so).
        warnings.filterwarnings("ignore", message=".*Potential.*")
        # The C backend (FAST_RUN) compiles this forward pass in seconds, numba in ~20 s.
        return pm.sample_prior_predictive(
            draws=draws,
            var_names=names,
            random_seed=seed,
            compile_kwargs={"mode": "FAST_RUN"},
        )


def can_fork() -> bool:
    """Forking pays (a second core) and is safe (no other thread in this process)."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) > 1 and threading.active_count() == 1


class Pending:
    """Prior draws being made in a child process, or to be made here (`pid` None)."""

    def __init__(self, args: tuple, pid: int | None = None, fd: int | None = None, done=None):
        self.args, self.pid, self.fd, self.done = args, pid, fd, done
        self.seconds: float | None = None  # the child's own time, when it answered

    def result(self) -> xr.DataTree:
        """The draws: the child's answer, or made here if the child gave none."""
        if self.done is None and self.pid is not None:
            answer = self._collect()
            if answer is not None and answer[0] == "ok":
                self.done, self.seconds = answer[1], answer[2]
            else:
                why = answer[1] if answer is not None else "no answer (killed?)"
                log.warning("prior draws in a child process failed, made here: %s", why)
        if self.done is None:  # in-process: the same call, and any error it raises
            self.done = draw(*self.args)
        return self.done

    def _collect(self) -> tuple | None:
        with os.fdopen(self.fd, "rb") as pipe:  # read all before waiting: the child blocks
            data = pipe.read()  # on a full pipe until this end reads
        self.fd = None
        os.waitpid(self.pid, 0)
        self.pid = None
        try:
            return pickle.loads(data) if data else None
        except Exception as error:  # noqa: BLE001 - a truncated answer is no answer
            return ("error", f"unreadable answer: {error!r}")

    def close(self) -> None:
        """Stop a child whose answer is no longer wanted (the fit failed before it)."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:  # pragma: no cover - it had already exited
                pass
            os.waitpid(self.pid, 0)
            self.pid = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Pending:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start(
    model: pm.Model, names: list[str], draws: int, seed: int, fork: bool | None = None
) -> Pending:
    """Begin the prior draws: in a forked child when `fork` (by default when `can_fork`),
    else here when `result` asks for them (after the main fit, as before: what a process
    compiles first can change the numbers of what it compiles next). Use as a context
    manager, so that a fit that fails stops the child."""
    args = (model, names, draws, seed)
    if not (can_fork() if fork is None else fork):
        return Pending(args)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: draw, answer, and leave without running the parent's exit code
        code = 0
        try:
            os.close(read)
            began = time.perf_counter()
            try:
                answer = ("ok", draw(*args), time.perf_counter() - began)
            except BaseException as error:  # noqa: BLE001 - the parent decides what to do
                answer = ("error", repr(error))
            with os.fdopen(write, "wb") as pipe:
                pickle.dump(answer, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # noqa: BLE001 - no answer: the parent draws in-process
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    return Pending(args, pid=pid, fd=read)
