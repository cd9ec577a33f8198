"""The evidence-kind registry (model/evidence.py EVIDENCE_KINDS): every kind is documented in
data/README.md 3.2 with the unit and period its declaration enforces, the lists other
modules keep are derived from it, and a new kind is one declaration, its function in
model/likelihood.py and its row in data/README.md (a test-only kind shows it)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from model import evidence
from model.errors import InputError
from model.evidence import CASE_UNIT, DATE, EVIDENCE_KINDS, KIND, SPAN, Kind, modelled_kinds
from model.likelihood import OnPath, OnVariable

from .conftest import HEADER, ROOT, row

README = (ROOT / "data" / "README.md").read_text(encoding="utf-8")


def _table_3_2(text: str = README) -> dict[str, dict[str, str]]:
    section = text.split("### 3.2 ", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([a-z_]+)` \| (.*?) \| .* \| (.*?) \|$", line)
        if m:
            rows[m.group(1)] = {"unit": m.group(2), "needs": m.group(3)}
    return rows


def undocumented(text: str = README) -> list[str]:
    """Kinds of the registry without their row in data/README.md 3.2."""
    return [name for name in KIND if name not in _table_3_2(text)]


def test_every_kind_has_its_row_in_data_readme_and_no_row_lacks_a_kind():
    assert undocumented() == []
    assert list(_table_3_2()) == [k.name for k in EVIDENCE_KINDS]


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

    assert list(KIND) == [k.name for k in EVIDENCE_KINDS]
    assert "area_ratio" not in modelled_kinds() and "launches" in modelled_kinds()
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


def made_to_date(row, window) -> OnPath:
    """The test-only kind's function: units made from the window's start to period_end."""
    return OnPath("production", window.cumulative(row["period_end"]))


def share_exported(row, window) -> OnVariable:
    """A second test-only kind's function: the row measures the export share itself."""
    return OnVariable("export_share")


MADE_TO_DATE = Kind("made_to_date", CASE_UNIT, DATE, likelihood=made_to_date, stacks=False)
SHARE = Kind("share_exported", "share", "", likelihood=share_exported, stacks=False)
DOC_ROW = (
    "| `made_to_date` | the case's `unit` | Units made from the window's start to the end of"
    " `period_end`. | `period_end`; bound and value/lower/upper |\n"
)


def test_a_new_kind_is_one_declaration_its_function_and_its_documentation(monkeypatch, case_copy):
    """Registering the test-only kind is the whole change: the ledger takes its rows, the
    model predicts them from its function, and the documentation check names it until
    data/README.md 3.2 has its row."""
    import pymc as pm

    from model import load_case
    from model.build import build
    from model.priors import resolve_priors

    monkeypatch.setitem(evidence.KIND, MADE_TO_DATE.name, MADE_TO_DATE)
    monkeypatch.setitem(evidence.KIND, SHARE.name, SHARE)
    assert undocumented() == ["made_to_date", "share_exported"]  # fails without documentation
    table_end = README.index("| `context` |")
    assert undocumented(README[:table_end] + DOC_ROW + README[table_end:]) == ["share_exported"]

    ledger = case_copy / "evidence.csv"
    new = row(id="made-x-2024-01", kind="made_to_date", period_start="")  # 10 made by 31 Jan
    share = row(id="share-x", kind="share_exported", period_start="", value="0.6", unit="share")
    extra = ",,,,"  # the real ledger's optional columns: supersedes, used, same_as, bias_group
    text = ledger.read_text(encoding="utf-8") + new + extra + "\n" + share + extra + "\n"
    ledger.write_text(text, encoding="utf-8")
    case = load_case(case_copy)
    model, _, obs = build(case, resolve_priors(case))
    i = obs.ids.index("made-x-2024-01")
    cumulative = case.window.cumulative(case.evidence.loc["made-x-2024-01", "period_end"])
    np.testing.assert_array_equal(obs.weights["production"][i], cumulative)
    wanted = [model["predicted"], model["production"], model["export_share"]]
    predicted, production, export_share = pm.draw(wanted, random_seed=1)
    assert predicted[i] == pytest.approx(cumulative @ production, rel=1e-12)
    assert predicted[i] > 0
    assert predicted[obs.ids.index("share-x")] == export_share


def test_a_row_of_an_unregistered_kind_is_refused(tmp_path):
    path = tmp_path / "evidence.csv"
    path.write_text(HEADER + "\n" + row(kind="made_to_date", period_start="") + "\n")
    with pytest.raises(InputError) as err:
        evidence.load_evidence(path)
    assert any(p.column == "kind" for p in err.value.problems), str(err.value)
