"""capest add-evidence: validates before it writes, refuses duplicates, loses nothing."""

from model.cli import main
from model.evidence import load_evidence

ROW = [
    "--id",
    "launches-new-2025-03",
    "--kind",
    "launches",
    "--period-start",
    "2025-03-01",
    "--period-end",
    "2025-03-31",
    "--value",
    "30",
    "--bound",
    "exact",
    "--unit",
    "missiles",
    "--source",
    "Outlet",
    "--url",
    "https://example.org/x",
    "--date-reported",
    "2025-04-02",
    "--reliability",
    "B",
    "--quote",
    "thirty were fired",
]


def test_adds_a_valid_row(case_copy):
    before = (case_copy / "evidence.csv").read_text()
    assert main(["add-evidence", str(case_copy), *ROW]) == 0
    after = (case_copy / "evidence.csv").read_text()
    assert after.startswith(before)  # nothing rewritten, one row appended
    ev = load_evidence(case_copy / "evidence.csv")
    assert ev.loc["launches-new-2025-03", "value"] == 30.0


def test_refuses_a_duplicate_and_a_bad_row_and_writes_nothing(case_copy, caplog):
    ledger = case_copy / "evidence.csv"
    before = ledger.read_bytes()
    duplicate = [*ROW]
    duplicate[1] = "launches-kostin-2024-02-07"
    assert main(["add-evidence", str(case_copy), *duplicate]) == 2
    assert "duplicate id 'launches-kostin-2024-02-07'" in caplog.text
    bad = [*ROW]
    bad[bad.index("2025-03-31")] = "2025-31-03"
    assert main(["add-evidence", str(case_copy), *bad]) == 2
    assert "new row, column 'period_end'" in caplog.text
    assert ledger.read_bytes() == before
    assert sorted(p.name for p in case_copy.iterdir()) == ["case.toml", "evidence.csv"]


def test_a_correction_supersedes_without_editing_history(case_copy):
    ledger = case_copy / "evidence.csv"
    before = ledger.read_text()
    fix = [*ROW, "--supersedes", "launches-yomiuri-2024-h1"]
    assert main(["add-evidence", str(case_copy), *fix]) == 0
    assert ledger.read_text().startswith(before)
    ev = load_evidence(ledger)
    assert ev.loc["launches-yomiuri-2024-h1", "superseded_by"] == "launches-new-2025-03"


def test_refuses_a_row_the_case_file_rules_out_and_writes_nothing(case_copy, caplog):
    """The ledger's own rules are not enough: a count must be in the case's unit and inside
    its window (case.toml), or the next estimate would stop on the ledger add-evidence wrote."""
    ledger = case_copy / "evidence.csv"
    before = ledger.read_bytes()
    wrong_unit = [*ROW]
    wrong_unit[wrong_unit.index("missiles")] = "launchers"
    assert main(["add-evidence", str(case_copy), *wrong_unit]) == 2
    assert f"{ledger}, new row, column 'unit'" in caplog.text
    late = [*ROW]
    late[late.index("2025-03-01")] = "2026-03-01"
    late[late.index("2025-03-31")] = "2026-03-31"
    late[late.index("2025-04-02")] = "2026-04-02"
    assert main(["add-evidence", str(case_copy), *late]) == 2
    assert f"{ledger}, new row, column 'period_end'" in caplog.text
    assert "widen [window] in the case file" in caplog.text
    assert ledger.read_bytes() == before
    assert sorted(p.name for p in case_copy.iterdir()) == ["case.toml", "evidence.csv"]
