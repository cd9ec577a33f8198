"""Official and analyst figures (`production`, `capacity`) and a source's shared bias
(`bias_group`): a synthetic plant with known truth (invented numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from model import load_case
from tests.conftest import HEADER, ROOT

TRUE_RATE, TRUE_BIAS = 10.0, np.log(2.0)  # units a month; the biased source doubles


def _new_case(tmp_path, case_id, title, window, exports, completion, extra=""):
    """A SYNTHETIC case folder with one reading of the area ratio; the test writes the ledger."""
    case = tmp_path / case_id
    case.mkdir()
    (case / "case.toml").write_text(
        f'# SYNTHETIC test case: invented numbers.\nid = "{case_id}"\ntitle = "{title}"\n'
        f'unit = "units"\nevidence = "evidence.csv"\n[window]\nstart = "{window[0]}"\n'
        f'end = "{window[1]}"\n[exports]\nstart = "{exports}"\n[area_ratio]\n'
        'rationale = "Synthetic."\n[area_ratio.weights]\nonly = 1.0\n[priors.completion]\n'
        f'dist = "Uniform"\nlower = "{completion[0]}"\nupper = "{completion[1]}"\n'
        'source = "case"\nrationale = "Synthetic."\n' + extra
    )
    return case


def _area_row(header, year: str) -> str:
    """The case's one floor-area reading: 1.01-1.03, i.e. almost no new floor area."""
    return _row(header, id="area", kind="area_ratio", period_end=f"{year}-06-01",
                lower="1.01", upper="1.03", bound="between", unit="ratio", reading="only",
                date_reported=f"{year}-07-01")  # fmt: skip


def _row(header, **cells):
    base = dict.fromkeys(header, "") | {
        "bound": "exact",
        "unit": "units",
        "source": "Synthetic",
        "url": "https://example.org/s",
        "reliability": "A",
        "quote": "synthetic",
    }
    return ",".join((base | cells)[c] for c in header)


@pytest.mark.slow(minutes=0.5)
def test_a_source_that_doubles_its_figures_is_recovered_as_biased(tmp_path):
    """Honest half-year production figures (grade A) and a second source (grade B, one
    bias_group) that reports twice the truth for the same periods, plus its capacity claim
    (also doubled). The fit must put the true rate and the source's true bias (log 2) inside
    their 95% intervals, and the honest rows must not be called outliers."""
    from model.fit import fit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings

    rng = np.random.default_rng(3)
    case = _new_case(
        tmp_path, "biased-source", "Synthetic plant with a biased source",
        ("2023-01", "2024-12"), "2023-02", ("2023-10", "2024-02"),
    )  # fmt: skip
    header = HEADER.split(",") + ["bias_group"]
    lines = [",".join(header)]
    lines.append(_area_row(header, "2023"))
    halves = [
        ("2023-01-01", "2023-06-30"),
        ("2023-07-01", "2023-12-31"),
        ("2024-01-01", "2024-06-30"),
        ("2024-07-01", "2024-12-31"),
    ]
    for i, (a, b) in enumerate(halves):
        made = 6 * TRUE_RATE
        honest = np.expm1(np.log1p(made) + rng.normal(0, 0.1))
        lines.append(
            _row(
                header,
                id=f"made-honest-{i}",
                kind="production",
                period_start=a,
                period_end=b,
                value=f"{honest:.1f}",
                date_reported=b,
            )
        )
        inflated = np.expm1(np.log1p(2 * made) + rng.normal(0, 0.2))
        lines.append(
            _row(
                header,
                id=f"made-inflating-{i}",
                kind="production",
                period_start=a,
                period_end=b,
                value=f"{inflated:.1f}",
                date_reported=b,
                reliability="B",
                bias_group="inflating",
            )
        )
    lines.append(
        _row(
            header,
            id="can-inflating",
            kind="capacity",
            period_end="2024-06-30",
            value=f"{2 * 12 * TRUE_RATE:.0f}",
            date_reported="2024-07-01",
            reliability="B",
            bias_group="inflating",
        )
    )
    (case / "evidence.csv").write_text("\n".join(lines) + "\n")

    loaded = load_case(case)
    tree = fit(loaded, resolve_priors(loaded), SamplerSettings(), conditional=False, checks=False)
    post = tree["posterior"]
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    lo, hi = np.quantile(post["rate_before"], [0.025, 0.975])
    assert lo < TRUE_RATE < hi
    bias = post["source_bias"].sel(bias_group="inflating")
    lo, hi = np.quantile(bias, [0.025, 0.975])
    assert lo < TRUE_BIAS < hi and lo > 0  # biased, and upward
    outliers = post["outlier_probability"].mean(("chain", "draw"))
    honest = [f"made-honest-{i}" for i in range(4)]
    assert float(outliers.sel(obs=honest).max()) < 0.2  # the prior share is 0.1


def _shipment_case(tmp_path, priors: str, rng) -> tuple:
    """Synthetic plant (invented numbers): 10 a month, 70% exported; quarterly counts of rail
    cars leaving, each carrying 4 units, half of them carrying the product. The counts are
    drawn with the model's own noise for grade B (sd 0.2 on log(1 + count)), so that the test
    checks the indicator, not the noise model."""
    case = _new_case(
        tmp_path, "shipping-plant", "Synthetic plant with shipments",
        ("2023-01", "2024-12"), "2023-01", ("2023-10", "2024-02"), priors,
    )  # fmt: skip
    header = HEADER.split(",")
    lines = [",".join(header)]
    lines.append(_area_row(header, "2023"))
    quarters = [
        (f"{y}-{m:02d}-01", f"{y}-{m + 2:02d}-{30 if m in (4, 7) else 31}")
        for y in (2023, 2024)
        for m in (1, 4, 7, 10)
    ]
    expected = 3 * TRUE_RATE * 0.7 / (4 * 0.5)  # cars a quarter
    for i, (a, b) in enumerate(quarters):
        cars = np.expm1(np.log1p(expected) + rng.normal(0, 0.2))
        lines.append(
            _row(
                header,
                id=f"cars-{i}",
                kind="shipments",
                period_start=a,
                period_end=b,
                value=f"{cars:.1f}",
                unit="shipments",
                reliability="B",
                date_reported=b,
            )
        )
    (case / "evidence.csv").write_text("\n".join(lines) + "\n")
    return case, quarters


def test_shipments_need_their_case_priors(tmp_path):
    from model import InputError
    from model.priors import resolve_priors

    case, _ = _shipment_case(tmp_path, "", np.random.default_rng(0))
    with pytest.raises(InputError, match="units_per_shipment.*'shipments' rows"):
        resolve_priors(load_case(case))


SHIPMENT_PRIORS = """[priors.units_per_shipment]
dist = "LogNormal"
median = 4.0
sigma = 0.05
source = "case"
rationale = "Synthetic: 4 units a car."
[priors.shipment_share]
dist = "Beta"
alpha = 100.0
beta = 100.0
source = "case"
rationale = "Synthetic: about half the cars carry the product."
[priors.export_share]
dist = "Beta"
alpha = 140.0
beta = 60.0
source = "case"
rationale = "Synthetic: 70% exported."
"""


@pytest.mark.slow(minutes=0.4)
def test_shipment_counts_recover_the_rate(tmp_path):
    """With the carrying capacity, the carrying share and the export share known to a few
    percent, eight quarterly car counts must put the true rate in the 95% interval and narrow
    it well inside its prior."""
    from model.fit import fit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings

    case, _ = _shipment_case(tmp_path, SHIPMENT_PRIORS, np.random.default_rng(4))
    loaded = load_case(case)
    tree = fit(loaded, resolve_priors(loaded), SamplerSettings(), conditional=False, checks=False)
    post, prior = tree["posterior"], tree["prior"]
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    lo, hi = np.quantile(post["rate_before"], [0.025, 0.975])
    assert lo < TRUE_RATE < hi
    width = np.subtract(*np.quantile(post["rate_before"], [0.9, 0.1]))
    prior_width = np.subtract(*np.quantile(prior["rate_before"], [0.9, 0.1]))
    assert width < 0.25 * prior_width


def _half_year_production_rows(header, made, rng) -> list[str]:
    """Grade-A `production` rows for each half year of 2022-2025: the made units with their
    grade's noise (sd 0.1 on log(1 + value))."""
    lines = []
    for i, start in enumerate(range(0, 48, 6)):
        y, m = 2022 + start // 12, start % 12 + 1
        value = np.expm1(np.log1p(made[start : start + 6].sum()) + rng.normal(0, 0.1))
        end = f"{y}-{m + 5:02d}-{30 if m + 5 == 6 else 31}"
        lines.append(
            _row(
                header,
                id=f"made-{i}",
                kind="production",
                period_start=f"{y}-{m:02d}-01",
                period_end=end,
                value=f"{value:.1f}",
                date_reported=end,
            )
        )
    return lines


def _workforce_case(tmp_path, rng) -> tuple:
    """Synthetic plant (invented numbers): 10 a month; the expansion (complete in month 12)
    added almost no floor area (ratio 1.01-1.03) but doubled the workforce. Capacity after is
    area^a x workers^b with b the default prior's median, the truth the test recovers."""
    from model.production import production_rate

    ramp = '[priors.ramp_months]\ndist = "LogNormal"\nmedian = 12.0\nsigma = 0.2\n'
    ramp += 'source = "case"\nrationale = "Synthetic."\n'
    case = _new_case(
        tmp_path, "staffing-plant", "Synthetic plant that added workers",
        ("2022-01", "2025-12"), "2022-01", ("2022-11", "2023-02"), ramp,
    )  # fmt: skip
    area, labour = 1.02**0.683, 2.0**0.317
    months = np.arange(48) + 0.5
    made = production_rate(months, TRUE_RATE, area * labour, 12.0, 12.0).eval()
    header = HEADER.split(",")
    lines = [",".join(header)]
    lines.append(_area_row(header, "2022"))
    lines += _half_year_production_rows(header, made, rng)
    for i, grade in enumerate("BC"):  # two housing counts, after / before
        ratio = np.expm1(np.log1p(2.0) + rng.normal(0, {"B": 0.2, "C": 0.35}[grade]))
        lines.append(
            _row(
                header,
                id=f"housing-{i}",
                kind="workforce_ratio",
                period_end="2023-03-01",
                value=f"{ratio:.2f}",
                unit="ratio",
                reliability=grade,
                date_reported="2023-04-01",
            )
        )
    (case / "evidence.csv").write_text("\n".join(lines) + "\n")
    return case, area * labour


def test_workforce_rows_bring_their_priors_with_a_derived_labour_elasticity(tmp_path):
    from model.priors import resolve_priors

    case, _ = _workforce_case(tmp_path, np.random.default_rng(0))
    priors = resolve_priors(load_case(case))
    floor = priors["elasticity"].params["median"]
    assert priors["labour_elasticity"].params["median"] == pytest.approx(1 - floor, abs=1e-3)
    assert "constant returns" in priors["labour_elasticity"].derivation
    assert "workforce_ratio" in priors.specs
    feb11 = resolve_priors(load_case(ROOT / "data" / "cases" / "february-11-plant"))
    assert "workforce_ratio" not in feb11.specs  # no such rows there: no such prior


@pytest.mark.slow(minutes=0.3)
def test_a_plant_that_added_workers_recovers_its_capacity_multiplier(tmp_path):
    """Production figures before and after, and two housing counts saying the workforce
    doubled: the capacity multiplier (mostly from workers, not floor area) and the workforce
    ratio must both fall inside their 95% intervals."""
    from model.fit import fit
    from model.priors import resolve_priors
    from model.sampler import SamplerSettings

    case, multiplier = _workforce_case(tmp_path, np.random.default_rng(6))
    loaded = load_case(case)
    tree = fit(loaded, resolve_priors(loaded), SamplerSettings(), conditional=False, checks=False)
    post = tree["posterior"]
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    for name, truth in (
        ("capacity_multiplier", multiplier),
        ("workforce_ratio", 2.0),
        ("rate_before", TRUE_RATE),
    ):
        lo, hi = np.quantile(post[name], [0.025, 0.975])
        assert lo < truth < hi, name
