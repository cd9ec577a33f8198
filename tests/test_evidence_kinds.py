"""The evidence-kind registry (model/evidence.py EVIDENCE_KINDS): every kind is documented in
data/README.md 3.2 with the unit and period its declaration enforces, and the lists other
modules keep are derived from it."""

from __future__ import annotations

import re

import pytest

from model.errors import InputError
from model.evidence import CASE_UNIT, DATE, EVIDENCE_KINDS, KINDS, MODELLED_KINDS, SPAN

from .conftest import HEADER, ROOT, row


def _table_3_2() -> dict[str, dict[str, str]]:
    text = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    section = text.split("### 3.2 ", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([a-z_]+)` \| (.*?) \| .* \| (.*?) \|$", line)
        if m:
            rows[m.group(1)] = {"unit": m.group(2), "needs": m.group(3)}
    return rows


def test_every_kind_has_its_row_in_data_readme_and_no_row_lacks_a_kind():
    documented = _table_3_2()
    assert list(documented) == [k.name for k in EVIDENCE_KINDS]


@pytest.mark.parametrize("kind", EVIDENCE_KINDS, ids=lambda k: k.name)
def test_the_documented_unit_and_period_are_the_declared_ones(kind):
    doc = _table_3_2()[kind.name]
    expected = {CASE_UNIT: "the case's `unit`", None: "any"}.get(kind.unit, f"`{kind.unit}`")
    assert doc["unit"] == expected
    if kind.period == SPAN:
        assert doc["needs"].startswith("both period dates")
    elif kind.period == DATE:
        assert doc["needs"].startswith("`period_end`")


def test_derived_lists():
    from model.priors import CONDITIONAL
    from model.stacked import STACKING_KINDS

    assert list(KINDS) == [k.name for k in EVIDENCE_KINDS]
    assert "area_ratio" not in MODELLED_KINDS and "launches" in MODELLED_KINDS
    assert "shipments" not in STACKING_KINDS and "launches" in STACKING_KINDS
    assert CONDITIONAL["shipment_share"] == "shipments"


@pytest.mark.parametrize(
    ("kind", "unit", "missing", "column"),
    [
        ("production", "missiles", {"period_start": ""}, "period_start"),
        ("capacity", "missiles", {"period_end": ""}, "period_end"),
        ("shipments", "shipments", {"period_end": ""}, "period_end"),
    ],
)
def test_the_declared_period_rule_refuses_a_row_without_it(tmp_path, kind, unit, missing, column):
    from model.evidence import load_evidence

    path = tmp_path / "evidence.csv"
    path.write_text(HEADER + "\n" + row(kind=kind, unit=unit, **missing) + "\n")
    with pytest.raises(InputError) as err:
        load_evidence(path)
    assert any(p.column == column for p in err.value.problems), str(err.value)
