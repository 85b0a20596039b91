"""Train/test splits used by offline evaluation, including splits brought as files.

* ``random_per_user``: each user's interactions shuffled with the seed; the first
  ``ceil((1 - test_fraction) · n)`` go to train (the MovieLens protocol: 75/25, seed 42);
* ``temporal_per_user``: each user's last ``test_fraction`` of interactions by time are test
  (the KuaiRand protocol: last 20 %); ties in time keep their input order;
* ``global_time``: everything before the ``quantile`` of event times is train;
* ``kfold_per_user``: k folds per user for cross-validation (each interaction tested once);
* ``read_split``: a ``user,item,rating,timestamp`` table (CSV or Parquet) as given by a
  published protocol, so results can be compared with it.

Every split returns disjoint row sets that together hold every input row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.core.splits import before, quantile_cut

SPLIT_COLUMNS = ("user", "item", "rating", "timestamp")


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame


def _by_rank(frame: pd.DataFrame, order: np.ndarray, user_col: str, test_fraction: float) -> Split:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ordered = frame.iloc[order]
    rank = ordered.groupby(user_col, sort=False).cumcount().to_numpy()
    n = ordered.groupby(user_col, sort=False)[user_col].transform("size").to_numpy()
    in_train = rank < np.ceil((1.0 - test_fraction) * n)
    return Split(train=ordered[in_train].sort_index(), test=ordered[~in_train].sort_index())


def random_per_user(frame: pd.DataFrame, *, user_col: str = "user", test_fraction: float = 0.25, seed: int = 42) -> Split:
    """Per-user random split, reproducible from ``seed``."""
    key = np.random.default_rng(seed).random(len(frame))
    order = np.lexsort((key, frame[user_col].astype(str).to_numpy()))
    return _by_rank(frame, order, user_col, test_fraction)


def temporal_per_user(
    frame: pd.DataFrame, *, user_col: str = "user", time_col: str = "timestamp", test_fraction: float = 0.2
) -> Split:
    """Per-user temporal split: each user's latest ``test_fraction`` of interactions are test."""
    pos = np.arange(len(frame))
    order = np.lexsort((pos, frame[time_col].to_numpy(), frame[user_col].astype(str).to_numpy()))
    return _by_rank(frame, order, user_col, test_fraction)


def kfold_per_user(frame: pd.DataFrame, k: int, *, user_col: str = "user", seed: int = 42) -> list[Split]:
    """``k`` folds for cross-validation: each user's interactions shuffled with ``seed`` and dealt
    round-robin into ``k`` parts; fold ``f`` tests on part ``f`` and trains on the rest, so every
    interaction is tested exactly once (users with fewer than ``k`` interactions are absent
    from some test parts)."""
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    key = np.random.default_rng(seed).random(len(frame))
    order = np.lexsort((key, frame[user_col].astype(str).to_numpy()))
    ordered = frame.iloc[order]
    part = ordered.groupby(user_col, sort=False).cumcount().to_numpy() % k
    return [Split(train=ordered[part != f].sort_index(), test=ordered[part == f].sort_index()) for f in range(k)]


def global_time(frame: pd.DataFrame, *, time_col: str = "timestamp", quantile: float = 0.8) -> Split:
    """Everything strictly before the ``quantile`` (an observed time) of event times is train,
    the rest test (:func:`components.core.splits.quantile_cut`)."""
    train = before(frame[time_col], quantile_cut(frame[time_col], quantile, interpolation="lower"))
    return Split(train=frame[train], test=frame[~train])


def read_split(path: Path) -> pd.DataFrame:
    """Read one side of a given split (``user,item,rating,timestamp``; rating may be absent).

    Timestamps may be epoch seconds or ISO-8601 text; ids are read as text.
    """
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, dtype={"user": str, "item": str})
    missing = {"user", "item", "timestamp"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected {', '.join(SPLIT_COLUMNS)}")
    frame = frame.copy()
    frame["user"] = frame["user"].astype(str)
    frame["item"] = frame["item"].astype(str)
    ts = frame["timestamp"]
    if pd.api.types.is_numeric_dtype(ts):
        frame["timestamp"] = pd.to_datetime(ts, unit="s", utc=True)
    else:
        frame["timestamp"] = pd.to_datetime(ts, utc=True, format="ISO8601")
    if "rating" not in frame.columns:
        frame["rating"] = np.nan
    return frame[list(SPLIT_COLUMNS)]
