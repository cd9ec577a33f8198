"""Official and analyst figures (`production`, `capacity`) and a source's shared bias
(`bias_group`): a synthetic plant with known truth (invented numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from model import load_case
from tests.conftest import HEADER

TRUE_RATE, TRUE_BIAS = 10.0, np.log(2.0)  # units a month; the biased source doubles


def _row(header, **cells):
    base = dict.fromkeys(header, "") | {
        "bound": "exact", "unit": "units", "source": "Synthetic", "url": "https://example.org/s",
        "reliability": "A", "quote": "synthetic",
    }  # fmt: skip
    return ",".join((base | cells)[c] for c in header)


@pytest.mark.slow
def test_a_source_that_doubles_its_figures_is_recovered_as_biased(tmp_path):
    """Honest half-year production figures (grade A) and a second source (grade B, one
    bias_group) that reports twice the truth for the same periods, plus its capacity claim
    (also doubled). The fit must put the true rate and the source's true bias (log 2) inside
    their 95% intervals, and the honest rows must not be called outliers."""
    from model.fit import SamplerSettings, fit
    from model.priors import resolve_priors

    rng = np.random.default_rng(3)
    case = tmp_path / "biased-source"
    case.mkdir()
    (case / "case.toml").write_text(
        '# SYNTHETIC test case: invented numbers.\nid = "biased-source"\n'
        'title = "Synthetic plant with a biased source"\nunit = "units"\n'
        'evidence = "evidence.csv"\n[window]\nstart = "2023-01"\nend = "2024-12"\n'
        '[exports]\nstart = "2023-02"\n[area_ratio]\nrationale = "Synthetic."\n'
        '[area_ratio.weights]\nonly = 1.0\n[priors.completion]\ndist = "Uniform"\n'
        'lower = "2023-10"\nupper = "2024-02"\nsource = "case"\nrationale = "Synthetic."\n'
    )
    header = HEADER.split(",") + ["bias_group"]
    lines = [",".join(header)]
    lines.append(_row(header, id="area", kind="area_ratio", period_end="2023-06-01",
                      lower="1.01", upper="1.03", bound="between", unit="ratio", reading="only",
                      date_reported="2023-07-01"))  # fmt: skip
    halves = [("2023-01-01", "2023-06-30"), ("2023-07-01", "2023-12-31"),
              ("2024-01-01", "2024-06-30"), ("2024-07-01", "2024-12-31")]  # fmt: skip
    for i, (a, b) in enumerate(halves):
        made = 6 * TRUE_RATE
        honest = np.expm1(np.log1p(made) + rng.normal(0, 0.1))
        lines.append(_row(header, id=f"made-honest-{i}", kind="production", period_start=a,
                          period_end=b, value=f"{honest:.1f}", date_reported=b))  # fmt: skip
        inflated = np.expm1(np.log1p(2 * made) + rng.normal(0, 0.2))
        lines.append(_row(header, id=f"made-inflating-{i}", kind="production", period_start=a,
                          period_end=b, value=f"{inflated:.1f}", date_reported=b,
                          reliability="B", bias_group="inflating"))  # fmt: skip
    lines.append(_row(header, id="can-inflating", kind="capacity", period_end="2024-06-30",
                      value=f"{2 * 12 * TRUE_RATE:.0f}", date_reported="2024-07-01",
                      reliability="B", bias_group="inflating"))  # fmt: skip
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
