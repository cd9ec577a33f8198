"""The slow tier's order on CI's two workers (tests/conftest.py, benchmarks/slow_tier.py): every
slow test states its measured minutes, and the files whose tests take longest are handed out
first, so a long file does not start last and set the end of the run."""

import ast
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT, pytest_collection_modifyitems

sys.path.insert(0, str(ROOT / "benchmarks"))
from slow_tier import by_file, durations, schedule, stated_minutes  # noqa: E402


def slow_marks(path: Path) -> list[tuple[str, ast.expr]]:
    """(test name, decorator) for each `pytest.mark.slow` decorator in a test file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if ast.unparse(target) == "pytest.mark.slow":
                    out.append((node.name, dec))
    return out


def test_every_slow_test_states_its_minutes_in_ci():
    marks = [
        (p.name, *m) for p in sorted((ROOT / "tests").glob("test_*.py")) for m in slow_marks(p)
    ]
    assert len(marks) >= 20
    missing = [
        f"{file}::{name}"
        for file, name, dec in marks
        if not (isinstance(dec, ast.Call) and [k.arg for k in dec.keywords] == ["minutes"])
    ]
    assert missing == []


def test_the_replay_reads_every_slow_tests_stated_minutes(tmp_path):
    stated = stated_minutes()
    marks = {
        f"tests/{p.name}::{name}"
        for p in (ROOT / "tests").glob("test_*.py")
        for name, _ in slow_marks(p)
    }
    assert set(stated) == marks
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n@pytest.mark.slow(minutes=2.5)\n@pytest.mark.parametrize('a', [1])\n"
        "def test_one(a):\n    pass\n\ndef test_fast():\n    pass\n"
    )
    assert stated_minutes(tmp_path) == {"tests/test_x.py::test_one": 2.5}


def item(path: str, minutes: float | None):
    mark = None if minutes is None else SimpleNamespace(kwargs={"minutes": minutes})
    return SimpleNamespace(
        path=Path(path), name=f"{path}:{minutes}", get_closest_marker=lambda _: mark
    )


def test_files_are_ordered_by_their_tests_minutes_and_keep_their_tests_order():
    items = [
        item("a.py", 1.0),
        item("a.py", 1.5),  # a.py: 2.5 minutes in all
        item("b.py", 2.0),
        item("c.py", None),  # a default-tier test: no minutes
        item("d.py", 0.5),
        item("d.py", 3.0),  # d.py: 3.5
    ]
    pytest_collection_modifyitems(items)
    assert [i.name for i in items] == [
        "d.py:0.5", "d.py:3.0", "a.py:1.0", "a.py:1.5", "b.py:2.0", "c.py:None"
    ]  # fmt: skip


def test_a_default_tier_without_minutes_keeps_its_order():
    items = [item(f"{name}.py", None) for name in "zyx"]
    pytest_collection_modifyitems(items)
    assert [i.path.name for i in items] == ["z.py", "y.py", "x.py"]


LOG = """
============================= slowest 40 durations =============================
900.00s call     tests/test_long.py::test_long
149.00s setup    tests/test_a.py::test_a
150.00s call     tests/test_b.py::test_b
150.00s call     tests/test_c.py::test_c
150.00s call     tests/test_d.py::test_d
1.00s teardown tests/test_a.py::test_a
"""


def test_the_schedule_replay_shows_that_a_long_file_handed_out_last_sets_the_end():
    seconds = durations(LOG)
    assert seconds["tests/test_a.py::test_a"] == pytest.approx(150.0)
    by_name = by_file(sorted(seconds))  # a, b, c, d, long: the long one last
    last = schedule(by_name, seconds)
    first = schedule(sorted(by_name, key=lambda f: -sum(seconds[t] for t in f)), seconds)
    # long last: it starts at 150 s behind test_b; first: test_b waits behind it (a worker
    # holds up to two pending tests), still 150 s sooner
    assert [max(d[-1][1] for d in done) for done in (last, first)] == [1200.0, 1050.0]
    assert sorted(t for d in first for t, _ in d) == sorted(seconds)  # each test runs once
