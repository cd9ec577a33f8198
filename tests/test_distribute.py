"""Distribution on Dask (model/distribute.py): a real `dask scheduler` and two `dask worker`
processes, started here on 127.0.0.1 at free ports and stopped at the end, run the jobs; the
numbers equal those of a run in one process, failing jobs are named, and a worker killed
mid-run loses nothing. Default tier: the plumbing with small jobs (seconds each). Slow tier:
`report --all` on two cases and a small calibration, against their local runs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from model.distribute import SCHEDULER_ENV, Job, cached, job_seed, run
from tests.conftest import CASE, ROOT

DASK = Path(sys.executable).parent / "dask"


class Cluster:
    """`dask scheduler` and `n` single-thread `dask worker` processes on 127.0.0.1."""

    def __init__(self, folder: Path, workers: int = 2):
        self.file = folder / "scheduler.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the workers import model/ and tests/
        # each in its own session (stopped as a group), and gone with this process even if it
        # is killed before the fixture's teardown (Linux: the parent-death signal)
        common = {"env": env, "cwd": folder, "start_new_session": True, "preexec_fn": _die_with_us}
        common |= {"stdout": subprocess.DEVNULL, "stderr": open(folder / "dask.log", "ab")}
        self.processes = [
            subprocess.Popen(
                [
                    DASK,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    self.file,
                ],
                **common,
            )  # fmt: skip
        ]
        deadline = time.monotonic() + 60
        while not self.file.exists():
            assert time.monotonic() < deadline, (folder / "dask.log").read_text()
            time.sleep(0.2)
        self.address = json.loads(self.file.read_text())["address"]
        for _ in range(workers):
            self.processes.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        self.address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                    ],
                    **common,
                )  # fmt: skip
            )
        from distributed import Client

        self.client = Client(self.address, timeout=60)
        self.client.wait_for_workers(workers, timeout=120)

    def close(self) -> None:
        self.client.close()
        for p in self.processes:  # each in its own session: its nanny and worker with it
            with _gone():
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with _gone():
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _die_with_us() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _gone():
    import contextlib

    return contextlib.suppress(ProcessLookupError)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for the module; a test that kills a worker leaves two (the nanny restarts
    it), which the next test waits for."""
    c = Cluster(tmp_path_factory.mktemp("dask"))
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _two_workers(request):
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").client.wait_for_workers(2, timeout=120)


# Jobs (module-level, so the workers import them by name)
def draws(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=3).tolist()


def broken(text: str) -> None:
    raise ValueError(text)


def compiled_models() -> int:
    from model import distribute

    return len(distribute._CACHE)


def where(tag: str) -> tuple[str, int]:
    return tag, os.getpid()


def test_one_job_runs_on_the_scheduler_or_here(cluster, monkeypatch):
    # a programme's fit with --scheduler (model/pipeline.py): the one job on the cluster
    from model.distribute import one_job

    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    tag, pid = one_job(cluster.address, Job("programme p", where, ("p",)))
    assert tag == "p" and pid != os.getpid()
    assert one_job(None, Job("programme p", where, ("p",))) == ("p", os.getpid())
    with pytest.raises(RuntimeError, match="programme q failed on the cluster at .*no such"):
        one_job(cluster.address, Job("programme q", broken, ("no such plant",)))


def slow_draws(seed: int, pause: float) -> list[float]:
    time.sleep(pause)
    return draws(seed)


def test_job_seeds_depend_on_the_run_seed_and_the_job_only():
    seeds = [job_seed(7, i) for i in range(50)]
    assert seeds == [job_seed(7, i) for i in range(50)]  # any order, any process: the same
    assert len(set(seeds)) == 50 and all(0 <= s < 2**32 for s in seeds)
    assert job_seed(8, 0) != job_seed(7, 0) and job_seed(7, "a") == job_seed(7, "a")
    assert job_seed(7, "a") != job_seed(7, "b")


def test_the_cache_builds_once_per_key():
    built = []
    for _ in range(3):
        cached("test-key", lambda: built.append(1) or len(built))
    assert cached("test-key", lambda: 99) == 1 and built == [1]


def test_the_cache_keeps_the_most_recently_used_models_only(monkeypatch):
    # a long-lived worker serving many cases must not keep every model it compiled
    from model import distribute

    monkeypatch.setattr(distribute, "CACHE_SIZE", 2)
    monkeypatch.setattr(distribute, "_CACHE", type(distribute._CACHE)())
    built = []

    def make(name):
        return lambda: built.append(name) or name

    for key in ("a", "b", "a", "c"):  # "a" used again after "b": "b" is the one dropped
        assert cached(key, make(key)) == key
    assert list(distribute._CACHE) == ["a", "c"] and built == ["a", "b", "c"]
    assert cached("b", make("b")) == "b" and built == ["a", "b", "c", "b"]  # compiled again
    assert list(distribute._CACHE) == ["c", "b"]


def test_jobs_on_two_workers_give_the_local_numbers_and_a_failing_job_is_named(cluster, caplog):
    caplog.set_level(logging.INFO, logger="capest")
    jobs = [Job(f"job {i}", draws, (job_seed(11, i),)) for i in range(6)]
    jobs.insert(2, Job("bad one", broken, ("no such plant",)))
    here = run(jobs, None)
    there = run(jobs, cluster.client)
    assert [r.name for r in there] == [j.name for j in jobs]
    assert [r.value for r in there] == [r.value for r in here]
    ok = [r for r in there if r.ok]
    assert len(ok) == 6 and all(len(r.value) == 3 for r in ok)
    assert there[2].error == "ValueError: no such plant" == here[2].error
    assert "FAILED bad one: ValueError: no such plant" in caplog.text
    assert "[7/7] finished" in caplog.text or "[7/7] FAILED" in caplog.text
    # both workers took jobs (the numbers above do not depend on which)
    assert len(cluster.client.scheduler_info(n_workers=-1)["workers"]) == 2


def test_a_worker_killed_mid_run_loses_no_job(cluster):
    jobs = [Job(f"job {i}", slow_draws, (job_seed(5, i), 2.0)) for i in range(6)]
    expected = [draws(job_seed(5, i)) for i in range(6)]
    pids = cluster.client.run(os.getpid)  # worker address -> its process
    import threading

    def kill_one_when_busy() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [w for w, tasks in cluster.client.processing().items() if tasks]
            if busy:
                time.sleep(0.5)  # mid-job
                os.kill(pids[busy[0]], signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_when_busy)
    killer.start()
    results = run(jobs, cluster.client)
    killer.join()
    assert [r.error for r in results] == [None] * 6
    assert [r.value for r in results] == expected
    assert set(cluster.client.run(os.getpid).values()) != set(pids.values())  # one was killed


def test_report_all_on_a_scheduler_names_each_case_and_exits_with_the_worst(
    cluster, tmp_path, capsys, monkeypatch
):
    """Bad input in both cases (found in seconds, before any sampling): each case's error
    comes back from its worker, the index lists both, nothing is written, exit 2. The
    scheduler comes from CAPEST_SCHEDULER, as a cron job would set it."""
    from model.cli import main

    cases, reports = tmp_path / "cases", tmp_path / "reports"
    for name in ("plant-a", "plant-b"):
        shutil.copytree(CASE, cases / name)
        toml = cases / name / "case.toml"
        toml.write_text(toml.read_text().replace('"february-11-plant"', f'"{name}"', 1))
        ledger = cases / name / "evidence.csv"
        ledger.write_text(ledger.read_text().replace(",between,", ",sometimes,", 1))
    monkeypatch.setenv(SCHEDULER_ENV, cluster.address)
    code = main(["report", "--all", "--cases-dir", str(cases), "--reports-dir", str(reports)])
    err = capsys.readouterr().err
    assert code == 2
    for name in ("plant-a", "plant-b"):
        assert f"--- {name} (exit 2):" in err
        assert not list((reports / name).glob("2*"))  # no report folder
    assert err.count("column 'bound'") >= 2
    assert "input error (nothing written)" in (reports / "index.html").read_text()


def quantities(reports: Path, case: str) -> dict:
    summary = json.loads((reports / case / "latest" / "summary.json").read_text())
    return summary["quantities"]


@pytest.mark.slow(minutes=2.1)
def test_report_all_on_two_workers_equals_the_local_run_even_when_a_worker_dies(cluster, tmp_path):
    """Two real cases at small sampler settings, on the cluster (one worker killed while it
    estimates) and in this process: the same reports, numbers for numbers."""
    from model.cli import main

    cases = tmp_path / "cases"
    for name in ("february-11-plant", "synthetic-plant"):
        shutil.copytree(ROOT / "data" / "cases" / name, cases / name)
    tiny = ["--draws", "50", "--tune", "100", "--chains", "2", "--seed", "3"]
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert main(["report", "--all", "--cases-dir", str(cases), "--reports-dir", str(local),
                 "--jobs", "1", *tiny]) == 1  # fmt: skip  # 100 draws cannot pass ESS 400
    pids = cluster.client.run(os.getpid)
    import threading

    def kill_one_mid_estimate() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            busy = [w for w, tasks in cluster.client.processing().items() if tasks]
            if busy:
                time.sleep(10)  # compiling or sampling by now
                os.kill(pids[busy[0]], signal.SIGKILL)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_mid_estimate)
    killer.start()
    code = main(["report", "--all", "--cases-dir", str(cases), "--reports-dir", str(remote),
                 "--scheduler", cluster.address, *tiny])  # fmt: skip
    killer.join()
    assert code == 1
    assert set(cluster.client.run(os.getpid).values()) != set(pids.values())
    for name in ("february-11-plant", "synthetic-plant"):
        assert quantities(remote, name) == quantities(local, name)
        runs = [p.name for p in (remote / name).iterdir() if p.is_dir() and p.name != "latest"]
        assert len(runs) == 1 and not runs[0].startswith(".")  # nothing half-written left


@pytest.mark.slow(minutes=0.9)
def test_a_20_simulation_calibration_on_two_workers_equals_the_local_run(cluster):
    """Issue #18's test: 20 simulations (few draws each: the numbers, not the calibration,
    are compared) in this process and on the two workers give the same ranks, coverage,
    z-scores, contractions, rank tests and sampler figures."""
    from model import load_case
    from model.calibration import calibrate
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings

    case = load_case(CASE)
    priors = resolve_priors(case)
    settings = SamplerSettings(draws=40, tune=60, chains=2, seed=4)
    compiled = cluster.client.run(compiled_models)
    here = calibrate(case, priors, sims=20, seed=4, settings=settings)
    there = calibrate(case, priors, sims=20, seed=4, settings=settings, client=cluster.client)
    for key in ("ranks", "z_score", "contraction", "coverage", "sampler", "rank_tests"):
        assert there[key] == here[key], key
    assert len(there["ranks"]["rate_before"]) == 20
    # each worker that fitted compiled the model once, not once per simulation
    added = {w: n - compiled[w] for w, n in cluster.client.run(compiled_models).items()}
    assert set(added.values()) <= {0, 1} and sum(added.values()) >= 1


def where_am_i() -> bool:
    from model.distribute import inside_job

    return inside_job()


def test_a_job_knows_it_runs_on_a_worker_so_an_estimate_there_refits_in_its_process(cluster):
    """`report --all` on a cluster runs each case's estimate as a job; its refits must not
    wait on the same cluster's workers (model/fit.py's run_refits)."""
    from model.distribute import inside_job

    assert not inside_job()
    assert cluster.client.submit(where_am_i, pure=False).result() is True


def test_each_refit_has_its_own_seed_from_the_run_seed_and_its_name():
    """Scenarios once all shared seed + 1000, so their retries were indistinguishable."""
    nodes = ["scenarios/fast-ramp", "scenarios/readings-by-copies", "conditional/larger",
             "influence_refits/launches-a", "source_refits/outlet"]  # fmt: skip
    seeds = [job_seed(20241125, n) for n in nodes]
    assert len(set(seeds)) == len(nodes)
    assert seeds == [job_seed(20241125, n) for n in nodes]
    assert job_seed(1, nodes[0]) != seeds[0]


def summary_numbers(idata) -> dict:
    """What a summary says that the inputs and seed decide: everything but when, how long
    and on which machine."""
    from model.summary import summarize

    summary = summarize(idata)
    for key in ("created", "provenance", "timings"):
        summary.pop(key, None)
    # as summary.json holds them (NaN where a figure does not exist, equal to itself there)
    return {k: json.dumps(v, sort_keys=True, default=str) for k, v in summary.items()}


@pytest.mark.slow(minutes=1.2)
def test_an_estimate_with_a_scheduler_refits_there_and_gives_the_local_numbers(cluster, caplog):
    """Every reading and scenario refitted (reweighting off) and the left-out rows PSIS
    cannot drop: here one after another through the main fit's compiled model, then as jobs on
    the two workers (each compiles its own): the same summary, number for number."""
    from model import load_case
    from model.fit import fit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings

    caplog.set_level(logging.INFO)
    case = load_case(CASE)
    priors = resolve_priors(case)
    settings = SamplerSettings(draws=60, tune=100, chains=2, seed=5, prior_draws=100)
    compiled = cluster.client.run(compiled_models)
    here = fit(case, priors, settings, reweight=False)
    assert "on the cluster" not in caplog.text
    there = fit(case, priors, settings, reweight=False, scheduler=cluster.address)
    refits = [
        f"{group}/{name}"
        for group in ("conditional", "scenarios", "influence_refits", "source_refits")
        if group in there.children
        for name in there[group].children
    ]
    assert len(refits) >= len(case.scenarios) + 2
    assert f"{len(refits)} refit(s) on the cluster at {cluster.address}" in caplog.text
    assert f"[{len(refits)}/{len(refits)}] refitted" in caplog.text
    assert all(
        there[n].attrs["method"] == "refit"
        for n in refits
        if n.startswith(("conditional/", "scenarios/"))
    )
    assert [n for n in refits if not here[n].to_dataset().equals(there[n].to_dataset())] == []
    a, b = summary_numbers(here), summary_numbers(there)
    assert [k for k in a if a[k] != b.get(k)] == []
    # the workers compiled the case's model once each (and a scenario's model of other prior
    # families, if any, once), however many refits each was given
    own = sum(family_changes(case, priors))
    added = {w: n - compiled[w] for w, n in cluster.client.run(compiled_models).items()}
    assert sum(added.values()) >= 1 and max(added.values()) <= 1 + own


def family_changes(case, priors) -> list[bool]:
    from model.build import prior_families
    from model.fit import scenario_priors

    return [
        prior_families(scenario_priors(case, priors, name)[0]) != prior_families(priors)
        for name in case.scenarios
    ]
