"""The benchmark's synthetic cases are valid cases of the requested size (benchmarks/)."""

import sys

import pytest

from model import load_case
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from synthetic import write_case, write_programme  # noqa: E402


@pytest.mark.parametrize(("months", "rows"), [(24, 10), (240, 100), (60, 1000)])
def test_synthetic_cases_load_with_the_requested_size(tmp_path, months, rows):
    case = load_case(write_case(tmp_path / f"c-{months}-{rows}", months=months, rows=rows))
    assert case.window.n_months == months
    assert len(case.evidence) == rows
    assert (case.evidence["kind"] == "launches").sum() == rows - 1


def test_synthetic_programmes_load_with_the_requested_plants(tmp_path):
    from model.programme import load_programme

    programme = load_programme(write_programme(tmp_path / "p", plants=5, months=120, rows=12))
    assert [p.id for p in programme.plants] == [f"plant-{i:02d}" for i in range(5)]
    assert {p.window.n_months for p in programme.plants} == {120}
    assert {len(p.evidence) for p in programme.plants} == {12}
