"""The global time cut: hand-computed quantiles, strictly-before train, bad input refused."""

from __future__ import annotations

import pandas as pd
import pytest

from components.core.splits import before, quantile_cut

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def times(*minutes: int) -> pd.Series:
    return pd.Series([T0 + pd.Timedelta(minutes=m) for m in minutes]).astype("datetime64[ms, UTC]")


def test_lower_takes_an_observed_time_and_linear_interpolates() -> None:
    t = times(0, 10, 20, 30, 40)  # q = 0.7 falls at position 2.8: between 20 and 30 minutes
    assert quantile_cut(t, 0.7, interpolation="lower") == T0 + pd.Timedelta(minutes=20)
    assert quantile_cut(t, 0.7, interpolation="linear") == T0 + pd.Timedelta(minutes=28)


def test_rows_at_the_cut_go_to_test() -> None:
    t = times(0, 10, 20, 20, 30)
    cut = quantile_cut(t, 0.5)
    assert cut == T0 + pd.Timedelta(minutes=20)
    assert before(t, cut).tolist() == [True, True, False, False, False]


def test_bad_quantile_and_empty_times_are_refused() -> None:
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        quantile_cut(times(0, 1), 1.0)
    with pytest.raises(ValueError, match="empty"):
        quantile_cut(times(), 0.5)
