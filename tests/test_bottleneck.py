"""Bottleneck: capacity as the smooth minimum over declared stages (invented numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from model import InputError, load_case
from model.production import BOTTLENECK_SHARPNESS, smooth_min
from tests.conftest import HEADER
from tests.test_indicators import TRUE_RATE, _half_year_production_rows, _new_case, _row

MOTOR = 1.2  # the motor-casting stage grew 20%; the floor area would allow about 55%
AREA_GROWTH = 1.9**0.683  # floor area x1.8-2.0 at the default elasticity median


@pytest.mark.parametrize(
    "logs", [[0.0, 0.0], [0.4, 0.1], [0.1, 0.4, 2.0], [-0.3, 0.5, 0.5, 0.2], [1.0]]
)
def test_smooth_min_is_within_ln_n_over_k_below_the_minimum(logs):
    # Closed form: min - ln(n)/k <= -logsumexp(-k x)/k <= min, equal to min - ln(n)/k when
    # all n values tie.
    value = float(smooth_min(np.array(logs)).eval())
    slack = np.log(len(logs)) / BOTTLENECK_SHARPNESS
    assert min(logs) - slack - 1e-12 <= value <= min(logs) + 1e-12
    if len(set(logs)) == 1:
        assert value == pytest.approx(min(logs) - slack)


def _stage_case(tmp_path, rng, stage_rows=True, extra=""):
    """Synthetic plant: 10 a month; the expansion (complete in month 12) enlarged the floor
    area 1.8-2.0x, but the motor-casting stage grew only 1.2x, so it binds."""
    from model.production import production_rate

    toml = '[priors.ramp_months]\ndist = "LogNormal"\nmedian = 12.0\nsigma = 0.2\n'
    toml += 'source = "case"\nrationale = "Synthetic."\n'
    toml += '[stages.motor_casting]\ndescription = "Solid-motor casting pits (synthetic)"\n'
    case = _new_case(
        tmp_path, "bottleneck-plant", "Synthetic plant with a motor-casting bottleneck",
        ("2022-01", "2025-12"), "2022-01", ("2022-11", "2023-02"), toml + extra,
    )  # fmt: skip
    truth = float(np.exp(smooth_min(np.log([AREA_GROWTH, MOTOR])).eval()))
    made = production_rate(np.arange(48) + 0.5, TRUE_RATE, truth, 12.0, 12.0).eval()
    header = [*HEADER.split(","), "stage"]
    lines = [",".join(header)]
    lines.append(
        _row(
            header,
            id="area",
            kind="area_ratio",
            period_end="2022-06-01",
            lower="1.8",
            upper="2.0",
            bound="between",
            unit="ratio",
            reading="only",
            date_reported="2022-07-01",
        )  # fmt: skip
    )
    lines += _half_year_production_rows(header, made, rng)
    for i, grade in enumerate("AB" if stage_rows else ""):  # two counts of casting pits
        ratio = np.expm1(np.log1p(MOTOR) + rng.normal(0, {"A": 0.1, "B": 0.2}[grade]))
        lines.append(
            _row(
                header,
                id=f"pits-{i}",
                kind="stage_ratio",
                period_end="2023-03-01",
                value=f"{ratio:.2f}",
                unit="ratio",
                reliability=grade,
                date_reported="2023-04-01",
                stage="motor_casting",
            )  # fmt: skip
        )
    (case / "evidence.csv").write_text("\n".join(lines) + "\n")
    return case, truth


def test_stages_bring_their_priors_and_their_rows_must_name_a_declared_stage(tmp_path):
    from model.priors import resolve_priors

    case, _ = _stage_case(tmp_path, np.random.default_rng(0))
    loaded = load_case(case)
    assert loaded.stages == ["motor_casting"]
    spec = resolve_priors(loaded)["stage_growth__motor_casting"]
    assert (spec.dist, spec.params, spec.source) == (
        "LogNormal",
        {"median": 1.0, "sigma": 0.5},
        "assumption",
    )
    ledger = case / "evidence.csv"
    ledger.write_text(ledger.read_text().replace(",motor_casting\n", ",mixers\n", 1))
    with pytest.raises(InputError) as info:
        load_case(case)
    (problem,) = info.value.problems
    assert (problem.row, problem.column) == ("line 11 (id 'pits-0')", "stage")
    assert "[stages.mixers]" in problem.message


def test_a_prior_for_an_undeclared_stage_is_refused(tmp_path):
    from model.priors import resolve_priors

    extra = '[priors.stage_growth__mixers]\ndist = "LogNormal"\nmedian = 2.0\nsigma = 0.3\n'
    case, _ = _stage_case(tmp_path, np.random.default_rng(0), extra=extra)
    with pytest.raises(InputError, match="stage_growth__motor_casting"):
        resolve_priors(load_case(case))


def test_the_assembly_floor_is_not_a_declarable_stage(tmp_path):
    case, _ = _stage_case(tmp_path, np.random.default_rng(0), extra="[stages.assembly_floor]\n")
    with pytest.raises(InputError, match="stages.assembly_floor"):
        load_case(case)


@pytest.mark.slow(minutes=0.4)
def test_a_plant_limited_by_one_stage_recovers_its_multiplier_and_the_binding_stage(tmp_path):
    """Production before and after says capacity grew 1.2x; two pit counts say motor casting
    grew about 1.2x; the floor area alone would allow 1.55x. The analyst's prior expected the
    casting pits to double (so in the prior the floor area binds more often). The capacity
    multiplier must cover the truth at 95%, and the evidence must make motor casting bind."""
    from model.fit import fit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings
    from model.summary import stages_table

    doubled = '[priors.stage_growth__motor_casting]\ndist = "LogNormal"\nmedian = 2.0\n'
    doubled += 'sigma = 0.5\nrationale = "Synthetic: the analyst expected the pits to double."\n'
    case, truth = _stage_case(tmp_path, np.random.default_rng(7), extra=doubled)
    loaded = load_case(case)
    tree = fit(loaded, resolve_priors(loaded), SamplerSettings(), conditional=False, checks=False)
    post = tree["posterior"]
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    for name, value in (("capacity_multiplier", truth), ("rate_before", TRUE_RATE)):
        lo, hi = np.quantile(post[name], [0.025, 0.975])
        assert lo < value < hi, name
    stages = {r["stage"]: r for r in stages_table(post.to_dataset(), tree["prior"].to_dataset())}
    # Prior: P(casting binds) = P(N(ln 2 - 0.68 ln 1.9, ~0.55) < 0), about 0.3. Posterior: the
    # floor area grows as little as 1.2x only if the elasticity is below 0.28 (about 4% of its
    # prior), so casting should bind in about 0.9 of draws. The Monte Carlo error of such a
    # probability is about 0.02 at an effective sample size of 300; 0.75 and 0.5 leave more
    # than 5 of them.
    assert stages["motor_casting"]["prior_binding_probability"] < 0.5
    assert stages["motor_casting"]["binding_probability"] > 0.75
