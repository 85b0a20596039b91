"""The time-based validation split of a ranking training frame.

Groups are ordered by their timestamp (latest row of the group; ties by group id) and the latest
``validation_fraction`` of groups are held out. The boundary is moved to the nearest change of
timestamp so that no timestamp is on both sides (only when every group shares one timestamp is it
split by group id, with a warning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def _time_values(s: pd.Series) -> np.ndarray:
    """A timestamp column as sortable numbers (int64 ns for datetimes), refusing missing ones."""
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        if s.isna().any():
            raise ValueError(f"time column {s.name!r} has missing timestamps")
        return s.to_numpy(dtype="datetime64[ns]").astype("int64")
    if pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype="float64", na_value=np.nan)
        if np.isnan(v).any():
            raise ValueError(f"time column {s.name!r} has missing timestamps")
        return v
    raise TypeError(f"time column {s.name!r} must be datetime or numeric, got {s.dtype}")


@dataclass(frozen=True)
class GroupOrder:
    """A frame's rows in group-time order, with the boundary of the training groups."""

    row_order: np.ndarray  # positions of the frame's rows, groups in time order, contiguous
    group_of_row: np.ndarray  # per sorted row: the group's rank in time order
    group_sizes: np.ndarray  # per group rank
    group_times: np.ndarray  # per group rank (sortable numbers)
    n_train_groups: int


def order_groups(
    frame: pd.DataFrame, validation_fraction: float, group_col: str, time_col: str
) -> GroupOrder:
    """Order ``frame``'s groups by time and place the train / validation boundary."""
    for col in (group_col, time_col):
        if col not in frame.columns:
            raise KeyError(f"frame has no column {col!r}")
    if frame[group_col].isna().any():
        raise ValueError(f"group column {group_col!r} has missing values")
    codes, uniques = pd.factorize(frame[group_col], sort=False)
    n_groups = len(uniques)
    if n_groups < 2:
        raise ValueError(
            f"need at least 2 groups for a time-based validation split, got {n_groups}"
        )
    times = pd.Series(_time_values(frame[time_col])).groupby(codes).max().to_numpy()
    tiebreak = np.empty(n_groups, dtype="int64")
    tiebreak[pd.Index(uniques).argsort()] = np.arange(n_groups)
    by_time = np.lexsort((tiebreak, times))  # group codes, earliest first
    rank = np.empty(n_groups, dtype="int64")
    rank[by_time] = np.arange(n_groups)
    row_rank = rank[codes]
    row_order = np.argsort(row_rank, kind="stable")
    sorted_times = times[by_time]

    target = n_groups - max(1, round(validation_fraction * n_groups))
    target = min(max(target, 1), n_groups - 1)
    cuts = np.flatnonzero(sorted_times[1:] > sorted_times[:-1]) + 1  # first group of a new time
    if len(cuts):
        dist = np.abs(cuts - target)
        n_train = int(cuts[np.lexsort((-cuts, dist))[0]])  # nearest; on a tie, the larger train
    else:
        logger.warning("all %d groups share one timestamp: validation split by group id", n_groups)
        n_train = target
    return GroupOrder(
        row_order=row_order,
        group_of_row=row_rank[row_order],
        group_sizes=np.bincount(row_rank, minlength=n_groups),
        group_times=sorted_times,
        n_train_groups=n_train,
    )


def time_split(
    frame: pd.DataFrame,
    validation_fraction: float,
    *,
    group_col: str = "group_id",
    time_col: str = "event_timestamp",
) -> np.ndarray:
    """Boolean mask over ``frame``'s rows: True for the validation rows (the latest groups)."""
    if not 0 < validation_fraction < 1:
        raise ValueError("validation_fraction must be in (0, 1)")
    order = order_groups(frame, validation_fraction, group_col, time_col)
    mask = np.zeros(len(frame), dtype=bool)
    mask[order.row_order[order.group_of_row >= order.n_train_groups]] = True
    return mask



def time_repr(col: pd.Series, value: float) -> str:
    """A value of ``col``'s sortable time numbers as text (ISO time for datetimes)."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return pd.Timestamp(int(value), unit="ns", tz="UTC").isoformat()
    return repr(float(value))

