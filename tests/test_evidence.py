"""Bad input gives one clear error naming file, line and column; good input loads."""

import pytest

from model.errors import InputError
from model.evidence import load_evidence, modelled
from tests.conftest import CASE, HEADER, row


def write(tmp_path, *lines, header=HEADER):
    path = tmp_path / "evidence.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def error_for(tmp_path, *lines, header=HEADER) -> InputError:
    path = write(tmp_path, *lines, header=header)
    with pytest.raises(InputError) as info:
        load_evidence(path)
    return info.value


def test_real_ledger_loads_with_types():
    ev = load_evidence(CASE / "evidence.csv")
    assert ev["id"].is_unique
    assert {"launches", "transfers", "use_lag", "area_ratio", "context"} <= set(ev["kind"])
    assert set(ev.loc[ev["kind"] == "area_ratio", "reading"]) >= {"larger", "size_of"}
    assert ev["period_end"].dtype.kind == "M"


def test_missing_column(tmp_path):
    err = error_for(tmp_path, "x", header=HEADER.replace(",quote", ""))
    assert len(err.problems) == 1
    p = err.problems[0]
    assert (p.row, p.column) == ("header", "quote")
    assert "evidence.csv" in str(err) and "missing" in str(err)


def test_malformed_date_names_line_and_column(tmp_path):
    err = error_for(tmp_path, row(), row(id="launches-y", period_end="2024-31-01"))
    assert [(p.row, p.column) for p in err.problems] == [("line 3 (id 'launches-y')", "period_end")]


def test_negative_count(tmp_path):
    err = error_for(tmp_path, row(value="-4"))
    assert [(p.column) for p in err.problems] == ["value"]
    assert ">= 0" in err.problems[0].message


def test_unknown_kind(tmp_path):
    err = error_for(tmp_path, row(kind="sightings"))
    assert [p.column for p in err.problems] == ["kind"]


def test_lower_above_upper(tmp_path):
    err = error_for(tmp_path, row(bound="between", value="", lower="50", upper="20"))
    assert [p.column for p in err.problems] == ["lower"]
    assert "above upper" in err.problems[0].message


def test_bound_needs_its_numbers(tmp_path):
    err = error_for(tmp_path, row(bound="at_least", value=""))
    assert [p.column for p in err.problems] == ["lower"]


def test_duplicate_id(tmp_path):
    err = error_for(tmp_path, row(), row())
    assert [p.column for p in err.problems] == ["id"]
    assert "also line 2" in err.problems[0].message


def test_only_http_addresses(tmp_path):
    err = error_for(tmp_path, row(url="javascript:alert(1)"))
    assert [p.column for p in err.problems] == ["url"]


def test_wrong_field_count(tmp_path):
    err = error_for(tmp_path, row() + ",extra")
    assert err.problems[0].row == "line 2"


def test_every_problem_is_reported_at_once(tmp_path):
    err = error_for(tmp_path, row(kind="nope", reliability="Z", quote=""))
    assert {p.column for p in err.problems} == {"kind", "reliability", "quote"}


def test_supersedes_keeps_the_old_row_and_marks_it(tmp_path):
    header = HEADER + ",supersedes"
    lines = [row() + ",", row(id="launches-fix", value="12") + ",launches-x"]
    ev = load_evidence(write(tmp_path, *lines, header=header))
    assert ev.loc["launches-x", "superseded_by"] == "launches-fix"
    assert ev.loc["launches-fix", "superseded_by"] == ""


def test_supersedes_must_name_an_existing_row(tmp_path):
    header = HEADER + ",supersedes"
    err = error_for(tmp_path, row() + ",launches-nope", header=header)
    assert [(p.row, p.column) for p in err.problems] == [("line 2", "supersedes")]
    assert "no row has this id" in err.problems[0].message


def test_every_csv_example_in_the_data_readme_validates(tmp_path):
    # data/README.md shows how to declare each kind; its examples must load as written.
    import re

    from tests.conftest import ROOT

    text = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```csv\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        path = tmp_path / f"example-{i}.csv"
        path.write_text(block, encoding="utf-8")
        assert len(load_evidence(path)) == block.count("\n") - 1


def test_rows_that_relay_one_figure_count_once_as_their_best_graded_row(tmp_path):
    path = write(
        tmp_path,
        row(id="launches-first", reliability="C", value="60", same_as=""),
        row(id="launches-copy", reliability="B", value="60", same_as="launches-first"),
        row(id="launches-copy-of-copy", reliability="B", same_as="launches-copy"),
        row(id="launches-other", reliability="A", same_as=""),
        header=HEADER + ",same_as",
    )
    ev = load_evidence(path)
    # one group of three: the first B row counts for all; the others stay in the ledger
    assert ev.loc["launches-first", "counted_as"] == "launches-copy"
    assert ev.loc["launches-copy-of-copy", "counted_as"] == "launches-copy"
    assert ev.loc["launches-copy", "counted_as"] == ""
    assert list(modelled(ev)["id"]) == ["launches-copy", "launches-other"]


@pytest.mark.parametrize(
    ("same_as", "message"),
    [
        ("launches-x", "cannot relay itself"),
        ("launches-nowhere", "no row has this id"),
        ("transfers-y", "a relay has its kind"),
    ],
)
def test_a_bad_same_as_names_line_id_and_column(tmp_path, same_as, message):
    err = error_for(
        tmp_path,
        row(id="transfers-y", kind="transfers", period_start="", same_as=""),
        row(id="launches-x", same_as=same_as),
        header=HEADER + ",same_as",
    )
    (p,) = err.problems
    assert (p.row, p.column) == ("line 3 (id 'launches-x')", "same_as")
    assert message in p.message


def test_rows_relaying_each_other_in_a_circle_are_refused(tmp_path):
    err = error_for(
        tmp_path,
        row(id="launches-a", same_as="launches-b"),
        row(id="launches-b", same_as="launches-a"),
        header=HEADER + ",same_as",
    )
    assert "circle" in str(err)
