"""Evaluation splits: sizes, disjointness, determinism and no look-ahead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.evaluation.splits import global_time, random_per_user, read_split, temporal_per_user


def interactions(n_users: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for j in range(int(rng.integers(1, 25))):
            rows.append({"user": f"u{u}", "item": f"i{rng.integers(0, 50)}", "rating": 4.0,
                         "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=int(rng.integers(0, 10_000)) + j)})
    return pd.DataFrame(rows)


def test_random_per_user_fractions_disjoint_and_reproducible() -> None:
    df = interactions()
    s = random_per_user(df, test_fraction=0.25, seed=42)
    assert len(s.train) + len(s.test) == len(df)
    assert set(s.train.index).isdisjoint(s.test.index)
    n = df.groupby("user").size()
    n_train = s.train.groupby("user").size().reindex(n.index, fill_value=0)
    assert (n_train == np.ceil(0.75 * n)).all()
    again = random_per_user(df, test_fraction=0.25, seed=42)
    assert again.test.index.tolist() == s.test.index.tolist()
    other = random_per_user(df, test_fraction=0.25, seed=7)
    assert other.test.index.tolist() != s.test.index.tolist()


def test_temporal_per_user_test_is_each_users_latest() -> None:
    df = interactions()
    s = temporal_per_user(df, test_fraction=0.2)
    assert len(s.train) + len(s.test) == len(df)
    last_train = s.train.groupby("user")["timestamp"].max()
    first_test = s.test.groupby("user")["timestamp"].min()
    common = first_test.index.intersection(last_train.index)
    assert (first_test[common] >= last_train[common]).all()  # no hold-out event precedes training
    one = df[df["user"] == df["user"].iloc[0]]
    assert len(temporal_per_user(one.head(1), test_fraction=0.2).test) == 0  # a single event stays in train


def test_global_time_cut() -> None:
    df = interactions()
    s = global_time(df, quantile=0.8)
    assert s.train["timestamp"].max() < s.test["timestamp"].min()
    assert len(s.train) + len(s.test) == len(df)


def test_bad_fraction_is_refused() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        random_per_user(interactions(), test_fraction=1.0)


def test_read_split_csv_and_parquet(tmp_path: Path) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("user,item,rating,timestamp\n1,10,4.5,964982703\n2,11,3.0,964981247\n")
    df = read_split(csv)
    assert df["user"].tolist() == ["1", "2"]
    assert df["timestamp"].iloc[0] == pd.Timestamp(964982703, unit="s", tz="UTC")
    pq_path = tmp_path / "test.parquet"
    pd.DataFrame({"user": ["a"], "item": ["b"], "timestamp": ["2026-01-01T00:00:00Z"]}).to_parquet(pq_path)
    got = read_split(pq_path)
    assert np.isnan(got["rating"].iloc[0]) and got["timestamp"].iloc[0] == pd.Timestamp("2026-01-01", tz="UTC")
    (tmp_path / "bad.csv").write_text("user,item\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        read_split(tmp_path / "bad.csv")


def test_kfold_per_user_tests_every_row_once() -> None:
    from components.evaluation.splits import kfold_per_user

    frame = pd.DataFrame({"user": ["a"] * 9 + ["b"] * 4, "item": [str(i) for i in range(13)], "timestamp": range(13)})
    folds = kfold_per_user(frame, 3, seed=1)
    assert len(folds) == 3
    tested = pd.concat([f.test for f in folds])
    assert sorted(tested.index) == list(frame.index)  # each row tested exactly once
    for f in folds:
        assert not set(f.train.index) & set(f.test.index) and len(f.train) + len(f.test) == 13
        assert (f.test["user"] == "a").sum() == 3  # 9 rows of a dealt evenly
    again = kfold_per_user(frame, 3, seed=1)
    assert all(a.test.index.equals(b.test.index) for a, b in zip(folds, again, strict=True))
    with pytest.raises(ValueError):
        kfold_per_user(frame, 1)
