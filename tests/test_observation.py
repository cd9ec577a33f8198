"""Each likelihood piece against scipy."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from model.evidence import load_evidence
from model.observation import UNBOUNDED, observations, robust_logp, row_logp
from model.timeline import Window
from tests.conftest import HEADER, row

MU, SD = 2.0, 0.3


def logp(value, lower, upper, exact, sigma=SD):
    return row_logp(value, MU, sigma, lower, upper, exact).eval()


def test_exact_is_normal_density():
    assert logp(2.4, 1.4, 3.4, 1.0) == pytest.approx(stats.norm.logpdf(2.4, MU, SD))


def test_at_least_is_upper_tail():
    assert logp(0.0, 2.5, UNBOUNDED, 0.0) == pytest.approx(stats.norm.logsf(2.5, MU, SD))


def test_at_most_is_lower_tail():
    assert logp(0.0, -UNBOUNDED, 1.2, 0.0) == pytest.approx(stats.norm.logcdf(1.2, MU, SD))


def test_between_is_interval_probability():
    expected = np.log(stats.norm.cdf(2.2, MU, SD) - stats.norm.cdf(1.9, MU, SD))
    assert logp(0.0, 1.9, 2.2, 0.0) == pytest.approx(expected)


def test_far_tail_stays_finite():
    # a bound 20 sd away: the naive log(1 - cdf) would be -inf
    assert np.isfinite(logp(0.0, MU + 20 * SD, UNBOUNDED, 0.0))


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_robust_mixture_is_the_weighted_sum_of_two_normals(share):
    """To double precision: Python floats that float32 holds exactly (0.5, and the wide sd
    1.5) once became float32 constants, and their log an error of 1e-8."""
    wide = 1.5
    got = robust_logp(2.9, MU, SD, 1.9, 3.9, 1.0, share, wide).eval()
    expected = np.log(
        (1 - share) * stats.norm.pdf(2.9, MU, SD) + share * stats.norm.pdf(2.9, MU, wide)
    )
    assert got == pytest.approx(expected, rel=1e-13)


def test_rows_become_log1p_bounds_and_weights(tmp_path):
    lines = [
        row(id="a", value="24"),
        row(id="b", bound="at_least", value="", lower="24", period_start="2024-01-17"),
        row(
            id="c",
            kind="transfers",
            bound="at_most",
            value="",
            upper="49",
            period_start="2023-09-01",
            period_end="2024-01-31",
        ),
        row(id="d", bound="between", value="", lower="40", upper="50", reliability="D"),
    ]
    path = tmp_path / "e.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    ev = load_evidence(path)
    w = Window(pd.Period("2023-12", "M"), pd.Period("2024-02", "M"))
    obs = observations(ev, w, {"A": 0.1, "B": 0.2, "C": 0.35, "D": 0.7})
    assert obs.ids == ["a", "b", "c", "d"]
    np.testing.assert_allclose(obs.observed[0], np.log(25))
    np.testing.assert_allclose([obs.lower[1], obs.upper[1]], [np.log(25), UNBOUNDED])
    np.testing.assert_allclose([obs.lower[2], obs.upper[2]], [-UNBOUNDED, np.log(50)])
    np.testing.assert_allclose([obs.lower[3], obs.upper[3]], [np.log(41), np.log(51)])
    np.testing.assert_allclose(obs.exact, [1, 0, 0, 0])
    np.testing.assert_allclose(obs.sigma, [0.2, 0.2, 0.2, 0.7])
    np.testing.assert_allclose(obs.weights["use"][1], [0, 15 / 31, 0])  # 17..31 January
    np.testing.assert_allclose(obs.weights["exported"][2], [1, 1, 0])  # all made by 31 January


def test_superseded_rows_are_not_modelled(tmp_path):
    lines = [row(id="a") + ",", row(id="b", value="12") + ",a"]
    path = tmp_path / "e.csv"
    path.write_text("\n".join([HEADER + ",supersedes", *lines]) + "\n")
    w = Window(pd.Period("2024-01", "M"), pd.Period("2024-02", "M"))
    obs = observations(load_evidence(path), w, {"A": 0.1, "B": 0.2, "C": 0.35, "D": 0.7})
    assert obs.ids == ["b"]


def test_production_and_capacity_rows_weigh_the_production_path(tmp_path):
    lines = [
        row(id="made", kind="production", period_start="2024-01-01", period_end="2024-02-14") + ",",
        row(id="can", kind="capacity", period_start="", period_end="2024-02-10") + ",hur",
        row(id="used") + ",hur",
    ]
    path = tmp_path / "e.csv"
    path.write_text("\n".join([HEADER + ",bias_group", *lines]) + "\n")
    w = Window(pd.Period("2023-12", "M"), pd.Period("2024-02", "M"))
    obs = observations(load_evidence(path), w, {"A": 0.1, "B": 0.2, "C": 0.35, "D": 0.7})
    np.testing.assert_allclose(obs.weights["production"][0], [0, 1, 14 / 29])  # Jan + 14 Feb days
    np.testing.assert_allclose(obs.weights["production"][1], [0, 0, 12])  # a year at Feb's rate
    np.testing.assert_allclose(obs.weights["production"][2], [0, 0, 0])
    assert obs.bias_groups == ["hur"]
    assert obs.bias_index.tolist() == [1, 0, 0]  # 1 = no group


def test_a_bias_group_on_an_unmodelled_row_is_refused(tmp_path):
    from model import InputError

    line = row(id="ctx", kind="context", bound="", unit="") + ",hur"
    path = tmp_path / "e.csv"
    path.write_text("\n".join([HEADER + ",bias_group", line]) + "\n")
    with pytest.raises(InputError, match="bias_group"):
        load_evidence(path)


def date_code_row(**cells) -> str:
    """A date_code line: the mark says made in 2024, the item was used on 18 Aug 2024."""
    base = dict(
        id="mark",
        kind="date_code",
        period_start="2024-01-01",
        period_end="2024-12-31",
        value="",
        bound="",
        unit="months",
    )
    used = cells.pop("used", "2024-08-18")
    return row(**{**base, **cells}) + f",{used}"


def test_a_date_code_becomes_a_censored_lag_measurement(tmp_path):
    lines = [
        date_code_row(),  # used before the mark's window ends: lag at most 230 days
        date_code_row(id="old", period_start="2023", period_end="2023", used="2025-03-01"),
    ]
    path = tmp_path / "e.csv"
    path.write_text("\n".join([HEADER + ",used", *lines]) + "\n")
    ev = load_evidence(path)
    days = 365.25 / 12
    # 1 Jan to 18 Aug 2024 is 230 days; 31 Dec 2023 to 1 Mar 2025 is 426, 1 Jan 2023 to it 790
    assert ev.loc["mark", "bound"] == "at_most"
    assert ev.loc["mark", "upper"] == pytest.approx(230 / days, abs=0.005)
    assert ev.loc["old", "bound"] == "between"
    assert ev.loc["old", "lower"] == pytest.approx(426 / days, abs=0.005)
    assert ev.loc["old", "upper"] == pytest.approx(790 / days, abs=0.005)
    w = Window(pd.Period("2023-01", "M"), pd.Period("2025-03", "M"))
    obs = observations(ev, w, {"A": 0.1, "B": 0.2, "C": 0.35, "D": 0.7})
    assert obs.weights["age"].sum(axis=1).tolist() == [1.0, 1.0]
    np.testing.assert_allclose(obs.upper, np.log1p([230 / days, 790 / days]), atol=1e-3)
    assert obs.lower[0] == -UNBOUNDED
    assert obs.lower[1] == pytest.approx(np.log1p(426 / days), abs=1e-3)


@pytest.mark.parametrize(
    ("cells", "column", "message"),
    [
        ({"used": ""}, "used", "needs the date"),
        ({"used": "2023-06-01"}, "used", "before its mark allows"),
        ({"upper": "7"}, "upper", "capest computes"),
        ({"unit": "year"}, "unit", "'months'"),
    ],
)
def test_a_bad_date_code_names_its_column(tmp_path, cells, message, column):
    from model import InputError

    path = tmp_path / "e.csv"
    path.write_text("\n".join([HEADER + ",used", date_code_row(**cells)]) + "\n")
    with pytest.raises(InputError) as info:
        load_evidence(path)
    assert [(p.row, p.column) for p in info.value.problems] == [("line 2 (id 'mark')", column)]
    assert message in info.value.problems[0].message


def test_only_date_code_rows_take_a_used_date(tmp_path):
    from model import InputError

    path = tmp_path / "e.csv"
    path.write_text("\n".join([HEADER + ",used", row() + ",2024-08-18"]) + "\n")
    with pytest.raises(InputError, match="only date_code rows"):
        load_evidence(path)
