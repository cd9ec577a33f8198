import pytest

from model import InputError, load_case
from model.priors import resolve_priors
from tests.conftest import CASE


def test_real_case_loads():
    case = load_case(CASE)
    assert case.id == "february-11-plant"
    assert sum(case.reading_weights.values()) == pytest.approx(1.0)
    assert case.window.start.year == 2023


def test_unknown_key_names_file_line_and_key(case_copy):
    path = case_copy / "case.toml"
    text = path.read_text().replace('start = "2023-09"', 'start = "2023-09"\nstrat = "2023-10"')
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_case(case_copy)
    (p,) = info.value.problems
    assert p.column == "exports.strat"
    assert p.file.endswith("case.toml")
    line = text.splitlines().index('strat = "2023-10"') + 1
    assert p.row == f"line {line}"


def test_reading_without_weight(case_copy):
    path = case_copy / "case.toml"
    path.write_text(path.read_text().replace("twice = 0.05\n", ""))
    with pytest.raises(InputError, match="reading 'twice' but no weight"):
        load_case(case_copy)


def test_unknown_prior_and_bad_parameter(case_copy):
    path = case_copy / "case.toml"
    base = path.read_text()
    path.write_text(base + '\n[priors.rate_aftr]\ndist = "LogNormal"\n')
    with pytest.raises(InputError, match="unknown prior"):
        resolve_priors(load_case(case_copy))
    path.write_text(base + '\n[priors.use_lag]\ndist = "LogNormal"\nmedian = 3\nsd = 1\n')
    with pytest.raises(InputError, match="not a parameter of LogNormal"):
        resolve_priors(load_case(case_copy))


def test_as_of_keeps_only_rows_reported_by_then():
    case = load_case(CASE, as_of="2024-12-01")
    assert (case.evidence["date_reported"] <= "2024-12-01").all()
    assert "transfers-hur-unsc-2024-11-25" in case.evidence.index  # reported 27 Nov
    assert "transfers-joongang-2024-12-03" not in case.evidence.index  # reported 3 Dec


def test_unknown_key_in_a_scenario(case_copy):
    path = case_copy / "case.toml"
    path.write_text(path.read_text() + '\n[scenarios.x]\ndescription = "d"\nprior = "typo"\n')
    with pytest.raises(InputError) as info:
        load_case(case_copy)
    (p,) = info.value.problems
    assert (
        p.column == "scenarios.x.prior"
        and "allowed here: description, priors, weights" in p.message
    )


def test_tables_below_the_top_level_are_typed(case_copy):
    """Scenarios, stages, [measurement] and serial blocks as dataclasses, read from case.toml
    (what priors.py, fit.py and serials.py use instead of the parsed dict)."""
    toml = case_copy / "case.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8")
        + '\n[scenarios.only-larger]\ndescription = "Only the larger reading."\n'
        + "[scenarios.only-larger.weights]\nlarger = 2.0\n"
        + '\n[stages.motor_casting]\ndescription = "Casting pits."\n'
        + '\n[measurement]\nbias_sd = 0.25\nrationale = "Tighter source bias."\n',
        encoding="utf-8",
    )
    case = load_case(case_copy)
    scenario = case.scenarios["only-larger"]
    assert scenario.description == "Only the larger reading." and scenario.priors == {}
    weights = scenario.reading_weights(case.reading_weights)
    assert weights["larger"] == 1.0 and sum(weights.values()) == 1.0
    export = case.scenarios["no-case-knowledge-of-exports"]
    assert export.weights is None and export.priors["export_share"]["alpha"] == 2.0
    assert export.reading_weights(case.reading_weights) == case.reading_weights
    assert case.stages == ["motor_casting"]
    assert case.declared_stages["motor_casting"].description == "Casting pits."
    assert (case.measurement.bias_sd, case.measurement.noise) == (0.25, None)
    priors = resolve_priors(case)
    # the case's value over data/priors.toml's, the defaults' where the case sets none
    assert priors.bias_sd == 0.25 and priors.noise_rationale == "Tighter source bias."
    assert priors.noise == resolve_priors(load_case(CASE)).noise
