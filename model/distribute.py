"""Independent named jobs (a case to estimate, a simulation to fit, a refit inside an estimate)

`run(jobs, client)` submits each job, reports progress on stderr as jobs finish, and returns
one `Result` per job in the jobs' order: a job that raises is reported by name with its error
and the others finish. A job's numbers depend only on its arguments, and a job that needs
randomness gets its seed from `job_seed(run seed, its index or name)`, never from the worker or
the order, so a run gives the same numbers on one process, two workers or a remote cluster.

`cluster(scheduler, workers, jobs)` gives the client: an existing scheduler's (`--scheduler`
or $CAPEST_SCHEDULER), else a LocalCluster of one process per core with one thread each (nutpie
and PyTensor run their own threads; more Dask threads per process would only fight them for
the cores), else None (one job or one worker): the jobs run one after another in this process,
as before Dask. A worker killed mid-job has its job rerun on another worker by the scheduler
(up to `distributed.scheduler.allowed-failures` times, 3 by default); what a killed job was
writing is never published (model/report.py writes a report atomically, and the next run of
the case clears the `.incomplete-*` folder).

`cached(key, make)` keeps one compiled model per process and key, so a worker compiles each
model once however many simulations it fits; the CACHE_SIZE most recently used are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("capest")

SCHEDULER_ENV = "CAPEST_SCHEDULER"


@dataclass(frozen=True)
class Job:
    name: str  # unique within a run: how progress and failures name it
    fn: Callable[..., Any]  # must be importable on the workers (a module-level function)
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    name: str
    value: Any = None
    error: str | None = None  # "<exception type>: <message>" when the job raised
    seconds: float = 0.0  # on the worker, from the job's start to its end

    @property
    def ok(self) -> bool:
        return self.error is None


def job_seed(run_seed: int, key: int | str) -> int:
    """The seed of one job: numpy's SeedSequence of the run's seed spawned at the job's index
    (or a stable number from its name), so independent of workers and order; below 2**32, as
    nutpie and PyMC take."""
    if isinstance(key, str):
        key = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    sequence = np.random.SeedSequence(run_seed, spawn_key=(int(key),))
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


# Compiled models kept per process, the least recently used dropped first: a long-lived worker
# that serves many cases would otherwise keep every model it ever compiled. Four hold what one
# job needs at once: a case's model, a scenario's of other prior families and the value-of-
# information refits' model, or the calibration's model and its two likelihood controls. Each
# February 11 model holds about 50 MB (resident memory of one process compiling three in turn:
# +178 MB with the first, numba's start-up included, then +49 and +47 MB; 2026-12-02).
CACHE_SIZE = 4
_CACHE: OrderedDict[str, Any] = OrderedDict()


def cached(key: str, make: Callable[[], Any]) -> Any:
    """`make()` once per process and key (a compiled model, by a hash of what it is built
    from); later jobs on the same worker reuse it, while it is among the CACHE_SIZE most
    recently used."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = _CACHE[key] = make()
    while len(_CACHE) > CACHE_SIZE:
        dropped, _ = _CACHE.popitem(last=False)
        log.info("dropped the least recently used compiled model (%s)", dropped[:12])
    return value


def structural_key(*parts: Any) -> str:
    """A key for `cached` from the reprs of what a model is built from."""
    return hashlib.sha256("\0".join(map(repr, parts)).encode()).hexdigest()


def inside_job() -> bool:
    """True in a job running on a Dask worker (a case of `report --all`): its own jobs then
    run in its process, since waiting on the same cluster's workers could wait forever."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def scheduler_address(option: str | None) -> str | None:
    """The scheduler to use: the option, else $CAPEST_SCHEDULER, else none (a local run)."""
    return option or os.environ.get(SCHEDULER_ENV) or None


@contextlib.contextmanager
def cluster(scheduler: str | None, workers: int | None, jobs: int) -> Iterator[Any]:
    """A Dask client for `jobs` jobs (see the module's docstring), closed on exit; None when
    they run in this process."""
    address = scheduler_address(scheduler)
    workers = min(workers or os.cpu_count() or 1, jobs)
    if address is None and workers <= 1:
        yield None
        return
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if address is None:
            local = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",  # any free port: two runs at once must not collide
            )
            address = stack.enter_context(local).scheduler_address
        client = stack.enter_context(Client(address))
        where = "a local cluster" if scheduler_address(scheduler) is None else address
        count = len(client.scheduler_info(n_workers=-1)["workers"])
        log.info("running %d job(s) on %s (%d worker(s) now)", jobs, where, count)
        dashboard = client.scheduler_info().get("services", {}).get("dashboard")
        if dashboard:  # only when bokeh is installed on the scheduler
            log.info("Dask dashboard: %s", client.dashboard_link)
        yield client


def _timed(fn: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - start


def _say(result: Result, done: int, total: int) -> None:
    if result.ok:
        log.info("[%d/%d] finished %s in %.0f s", done, total, result.name, result.seconds)
    else:
        log.error("[%d/%d] FAILED %s: %s", done, total, result.name, result.error)


def run(
    jobs: list[Job],
    client: Any = None,
    on_done: Callable[[Result, int, int], None] = _say,
) -> list[Result]:
    """Run every job (on `client`'s cluster, or here one after another when it is None);
    `on_done(result, done, total)` as each finishes (default: a progress line on stderr).
    Results come back in the jobs' order whatever order they finished in."""
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique: progress and failures name them")
    results: dict[str, Result] = {}

    def finished(result: Result) -> None:
        results[result.name] = result
        on_done(result, len(results), len(jobs))

    if client is None:
        for job in jobs:
            start = time.perf_counter()
            try:
                value, seconds = _timed(job.fn, job.args, job.kwargs)
            except Exception as exc:  # reported by name; the other jobs still run
                seconds = time.perf_counter() - start
                finished(Result(job.name, error=f"{type(exc).__name__}: {exc}", seconds=seconds))
            else:
                finished(Result(job.name, value, seconds=seconds))
        return [results[n] for n in names]

    from distributed import as_completed

    # pure=False: a job is run even if an identical one ran before on this cluster (a rerun
    # must rerun: the evidence on disk may have changed); no `retries`: a job that raised
    # raises again, while a worker that died is the scheduler's to recover (allowed-failures)
    futures = {}
    for job in jobs:
        key = f"{job.name}-{os.urandom(4).hex()}"  # unique on a cluster shared by several runs
        futures[client.submit(_timed, job.fn, job.args, job.kwargs, key=key, pure=False)] = job.name
    for future in as_completed(futures):
        name = futures[future]
        if future.status == "finished":
            value, seconds = future.result()
            finished(Result(name, value, seconds=seconds))
        else:  # raised on the worker, or its workers kept dying (KilledWorker)
            exc = future.exception()
            finished(Result(name, error=f"{type(exc).__name__}: {exc}"))
        future.release()
    return [results[n] for n in names]


def one_job(scheduler: str | None, job: Job) -> Any:
    """`job` as the one job on the cluster of `scheduler` (or $CAPEST_SCHEDULER), else here (no
    scheduler, or inside a job already); its value. A job that raised on the cluster raises
    RuntimeError naming it. `capest estimate <programme> --scheduler` fits the programme so."""
    address = None if inside_job() else scheduler_address(scheduler)
    if address is None:
        return job.fn(*job.args, **job.kwargs)
    with cluster(address, 1, 1) as client:
        (result,) = run([job], client)
    if not result.ok:
        raise RuntimeError(f"{job.name} failed on the cluster at {address}: {result.error}")
    return result.value
