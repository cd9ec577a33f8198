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
