"""Hostile and malformed input: whatever the ledger or case file holds, loading either
succeeds or raises the project's own InputError naming file, row and column; never a
traceback from deep inside pandas, tomllib or numpy."""

import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import InputError, load_case
from model.evidence import COLUMNS, load_evidence
from model.priors import resolve_priors
from tests.conftest import CASE

REAL = (CASE / "evidence.csv").read_text().splitlines()
CASE_TEXT = (CASE / "case.toml").read_text().splitlines()
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
cells = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "-1",
            "1e400",
            "nan",
            "2024-13-01",
            "2024",
            "exact",
            "between",
            "A",
            "launches",
            "https://x.org",
            "javascript:x",
            '"',
            ",",
            "\n",
            "<script>",
        ]
    ),
)


def assert_loads_or_explains(call):
    try:
        call()
    except InputError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.file and p.row and p.column and p.message


@FUZZ
@given(
    header=st.permutations(COLUMNS),
    rows=st.lists(st.lists(cells, min_size=0, max_size=18), max_size=5),
)
def test_random_ledgers(tmp_path_factory, header, rows):
    path = tmp_path_factory.mktemp("fuzz") / "evidence.csv"
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    assert_loads_or_explains(lambda: load_evidence(path))


@FUZZ
@given(line=st.integers(1, len(REAL) - 1), column=st.integers(0, len(COLUMNS) - 1), value=cells)
def test_one_cell_of_the_real_ledger_changed(tmp_path_factory, line, column, value):
    import csv
    import io

    rows = list(csv.reader(io.StringIO("\n".join(REAL))))
    if column < len(rows[line]):
        rows[line][column] = value
    path = tmp_path_factory.mktemp("fuzz") / "evidence.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    assert_loads_or_explains(lambda: load_evidence(path))


@FUZZ
@given(
    line=st.integers(0, len(CASE_TEXT) - 1),
    edit=st.one_of(
        st.just(None),
        st.sampled_from(
            [
                "x = 1",
                "[window]",
                "start = 5",
                'lower = "2030-01"',
                "weights = 3",
                'dist = "Normal"',
                "= =",
                "size_of = -1",
                'median = "soon"',
                "sigma = 0",
            ]
        ),
        st.text(max_size=20),
    ),
)
def test_one_line_of_the_case_file_changed(tmp_path_factory, line, edit):
    case = tmp_path_factory.mktemp("fuzz") / "case"
    shutil.copytree(CASE, case)
    lines = list(CASE_TEXT)
    if edit is None:
        del lines[line]
    else:
        lines[line] = edit
    (case / "case.toml").write_text("\n".join(lines) + "\n")
    assert_loads_or_explains(lambda: resolve_priors(load_case(case)))


TOML_VALUES = st.sampled_from(
    ["5", '"x"', "[1]", "true", "nan", "inf", "-1", "{}", '"../../etc/passwd"', '"2024-13"']
)


@FUZZ
@given(
    key=st.sampled_from(
        ["priors", "measurement", "scenarios", "stages", "serials", "title", "id", "evidence"]
    ),
    value=TOML_VALUES,
    table=st.sampled_from(
        [
            "",
            "[measurement]",
            "[measurement.noise]",
            "[scenarios.s]",
            "[scenarios.s.weights]",
            "[serials.main]",
            "[stages.casting]",
            "[priors.rate_before]",
            "[area_ratio.weights]",
        ]
    ),  # fmt: skip
)
def test_a_key_of_any_type_in_any_table_of_the_case_file(tmp_path_factory, key, value, table):
    """A value of the wrong type anywhere in case.toml is an InputError naming it, found
    before the lock (load_case, the priors of the case and of each scenario, serial blocks:
    what `capest estimate` checks before it locks), never a crash (priors = 5 was one)."""
    from model.serials import serial_rows

    case = tmp_path_factory.mktemp("fuzz") / "case"
    shutil.copytree(CASE, case)
    text = (case / "case.toml").read_text()
    if table:  # a new table at the end (TOML refuses a table defined twice: also an error)
        text += f"\n{table}\n{key} = {value}\n"
    else:  # a top-level key goes before the first table
        text = f"{key} = {value}\n" + text

    def everything():
        loaded = load_case(case)
        resolve_priors(loaded)
        for name, t in loaded.settings.get("scenarios", {}).items():
            if "priors" in t:
                resolve_priors(loaded, scenario=name)
        serial_rows(loaded)

    (case / "case.toml").write_text(text)
    assert_loads_or_explains(everything)


@FUZZ
@given(text=st.one_of(st.text(max_size=12), st.integers(-(2**40), 2**40).map(str)))
def test_command_line_values_are_in_bounds_or_refused(text):
    import argparse

    from model.cli import _bounded, _date

    for low, high in ((1, 100_000), (0, 100_000), (1, 64), (0, 2**32 - 1)):
        try:
            assert low <= _bounded(low, high)(text) <= high
        except argparse.ArgumentTypeError as exc:
            assert str(exc).startswith("expected")
    try:
        _date(text)
    except argparse.ArgumentTypeError as exc:
        assert str(exc).startswith(("expected", "not a calendar date"))
