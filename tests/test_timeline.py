import numpy as np
import pandas as pd
import pytest

from model.timeline import Window, parse_date


def test_parse_date_precision_and_end():
    assert parse_date("2024-02-14") == pd.Timestamp("2024-02-14")
    assert parse_date("2024-02") == pd.Timestamp("2024-02-01")
    assert parse_date("2024-02", end=True) == pd.Timestamp("2024-02-29")  # leap year
    assert parse_date("2025", end=True) == pd.Timestamp("2025-12-31")


@pytest.mark.parametrize("text", ["14/02/2024", "2024-13-01", "2024-02-30", "Feb 2024", ""])
def test_parse_date_rejects(text):
    with pytest.raises(ValueError):
        parse_date(text)


def test_overlap_counts_days_of_each_month():
    w = Window(pd.Period("2024-01", "M"), pd.Period("2024-04", "M"))
    # 17 Jan .. 10 Mar: 15 of 31 January days, all of February, 10 of 31 March days
    frac = w.overlap(pd.Timestamp("2024-01-17"), pd.Timestamp("2024-03-10"))
    np.testing.assert_allclose(frac, [15 / 31, 1.0, 10 / 31, 0.0])


def test_cumulative_weights_up_to_end_of_day():
    w = Window(pd.Period("2024-01", "M"), pd.Period("2024-03", "M"))
    np.testing.assert_allclose(w.cumulative(pd.Timestamp("2024-02-15")), [1.0, 15 / 29, 0.0])


def test_time_and_date_round_trip():
    w = Window(pd.Period("2023-03", "M"), pd.Period("2025-12", "M"))
    assert w.time_of(pd.Timestamp("2024-03-01")) == 12.0
    assert w.date_of(12.5) == pd.Timestamp("2024-03-16 12:00")
