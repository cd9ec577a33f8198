"""The slow tier's expected critical path on CI's two workers, from measured test durations.

    python benchmarks/slow_tier.py DURATIONS_LOG [--order FILE]

DURATIONS_LOG is the output of `make test-slow` (its `--durations=40` lines: setup, call and
teardown seconds per test). The tests are the log's, in the order `--order FILE` lists them (one
node id a line, e.g. from `pytest -m slow --collect-only -q`), else the log's own order. The
script replays pytest-xdist's `--dist loadfile` on two workers: a file's tests go to one worker;
a worker is given the next file whenever it has two or fewer tests pending (xdist 3.8's
LoadScopeScheduling), the files in the listed order (`--no-loadscope-reorder`) or sorted by
number of tests (xdist's default). It prints when each worker would finish under three orders:
xdist's default, the listed one, and longest file first; then each test's measured minutes
beside its `@pytest.mark.slow(minutes=...)`, so that stale figures can be updated.

It is a model: each test takes its measured time whatever runs beside it. In CI a test running
alone is faster (nutpie samples its chains on both cores), so the gain from balancing is at
most what it prints.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKERS = 2
PREFETCH = 2  # xdist gives a worker more work when it has this many tests pending or fewer


def durations(log: str) -> dict[str, float]:
    """Seconds per test node id (setup + call + teardown) from pytest's --durations lines."""
    out: dict[str, float] = defaultdict(float)
    for line in log.splitlines():
        m = re.match(r"\s*([\d.]+)s (?:setup|call|teardown)\s+(\S+::\S+)", line)
        if m:
            out[m.group(2)] += float(m.group(1))
    return dict(out)


def schedule(files: list[list[str]], seconds: dict[str, float]) -> list[list[tuple[str, float]]]:
    """Each worker's tests with their end times, files handed out in the given order."""
    queue = list(files)
    pending: list[list[str]] = [[] for _ in range(WORKERS)]
    clock = [0.0] * WORKERS
    done: list[list[tuple[str, float]]] = [[] for _ in range(WORKERS)]
    for w in range(WORKERS):  # one file each, then a second while two or fewer are pending
        if queue:
            pending[w] += queue.pop(0)
    for w in range(WORKERS):
        if queue and len(pending[w]) <= PREFETCH:
            pending[w] += queue.pop(0)
    while any(pending):
        w = min(
            (w for w in range(WORKERS) if pending[w]),
            key=lambda w: clock[w] + seconds.get(pending[w][0], 0.0),
        )
        test = pending[w].pop(0)
        clock[w] += seconds.get(test, 0.0)
        done[w].append((test, clock[w]))
        if queue and len(pending[w]) <= PREFETCH:
            pending[w] += queue.pop(0)
    return done


def stated_minutes(tests: Path = ROOT / "tests") -> dict[str, float]:
    """Each slow test's `slow(minutes=...)`, by "tests/<file>::<function>" (a parametrized
    test's figure is each case's)."""
    out = {}
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            for dec in getattr(node, "decorator_list", []):
                if isinstance(dec, ast.Call) and ast.unparse(dec.func) == "pytest.mark.slow":
                    minutes = {k.arg: ast.literal_eval(k.value) for k in dec.keywords}
                    out[f"tests/{path.name}::{node.name}"] = float(minutes.get("minutes", 0))
    return out


def by_file(order: list[str]) -> list[list[str]]:
    files: dict[str, list[str]] = {}
    for test in order:
        files.setdefault(test.split("::")[0], []).append(test)
    return list(files.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", help="output of make test-slow (with --durations)")
    parser.add_argument("--order", help="node ids in collection order, one a line")
    args = parser.parse_args(argv)
    seconds = durations(open(args.log).read())
    order = list(seconds)
    if args.order:
        order = [line.strip() for line in open(args.order) if "::" in line]
    files = by_file(order)
    total = sum(seconds.get(t, 0.0) for t in order)
    print(
        f"{len(order)} tests, {len(files)} files, {total:.0f} s in all ({total / 2:.0f} a worker)"
    )
    orders = {
        # pytest collects the files by name; xdist then sorts them by number of tests (stable)
        "xdist's default": sorted(sorted(files), key=lambda f: -len(f)),
        "as listed": files,
        "longest file first": sorted(files, key=lambda f: -sum(seconds.get(t, 0) for t in f)),
    }
    for name, files_in_order in orders.items():
        done = schedule(files_in_order, seconds)
        ends = [d[-1][1] if d else 0.0 for d in done]
        print(f"\n{name}: workers end at {', '.join(f'{e:.0f} s' for e in ends)}")
        for w, tests in enumerate(done):
            names = [
                f"{t.split('::')[0].removeprefix('tests/')[:-3]} {seconds.get(t, 0):.0f}"
                for t, _ in tests
            ]
            print(f"  gw{w}: " + ", ".join(names))
    stated = stated_minutes()
    print("\nmeasured minutes against slow(minutes=...)")
    for test in order:
        measured = seconds.get(test, 0.0) / 60
        mark = stated.get(test.split("[")[0])
        flag = "" if mark is not None and abs(mark - measured) < 0.25 else "  <- update"
        print(f"  {measured:5.1f}  {'-' if mark is None else f'{mark:4.1f}'}  {test}{flag}")


if __name__ == "__main__":
    main()
