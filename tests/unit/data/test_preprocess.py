"""Preprocessing on hand-built frames: dedupe, imputation, normalisation, sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.core.schema import DEVICE_ALIASES, NETWORK_ALIASES
from components.data.preprocess import (
    PreprocessParams,
    clean_content,
    normalise_vocab,
    preprocess,
    session_table,
    sessionise,
)
from tests.fixtures.params import project_params

T0 = pd.Timestamp("2026-03-01T08:00:00Z")


def events_frame(rows: list[tuple[str, str, str, float, str, float | None]]) -> pd.DataFrame:
    """rows: (event_id, user, content, minutes after T0, event_type, watch seconds)."""
    df = pd.DataFrame(
        {
            "event_id": pd.array([r[0] for r in rows], dtype="string[pyarrow]"),
            "user_id": pd.array([r[1] for r in rows], dtype="string[pyarrow]"),
            "content_id": pd.array([r[2] for r in rows], dtype="string[pyarrow]"),
            "timestamp": [T0 + pd.Timedelta(minutes=r[3]) for r in rows],
            "event_type": pd.array([r[4] for r in rows], dtype="string[pyarrow]"),
            "watch_duration_s": [np.nan if r[5] is None else r[5] for r in rows],
        }
    )
    df["timestamp"] = df["timestamp"].astype("datetime64[ms, UTC]")
    for col in ("device_type", "os", "network"):
        df[col] = pd.array(["iPhone"] * len(df), dtype="string[pyarrow]")
    df["unknown_content"] = False
    return df


def test_sessions_split_after_gap_and_per_user() -> None:
    ev = events_frame(
        [
            ("a1", "u1", "c1", 0, "view", 10.0),
            ("a2", "u1", "c2", 10, "view", 20.0),
            ("a3", "u1", "c2", 39.9, "like", None),  # 29.9 min after a2: same session
            ("a4", "u1", "c3", 70.0, "view", 5.0),  # 30.1 min after a3: new session
            ("b1", "u2", "c1", 5, "view", 7.0),
        ]
    )
    out = sessionise(ev.sample(frac=1.0, random_state=3), gap_minutes=30)
    sid = dict(zip(out["event_id"], out["session_id"], strict=True))
    assert sid["a1"] == sid["a2"] == sid["a3"]
    assert sid["a4"] != sid["a3"]
    assert sid["b1"] not in {sid["a1"], sid["a4"]}
    assert out["session_id"].nunique() == 3

    s = session_table(out).set_index("session_id")
    first = s.loc[sid["a1"]]
    assert first["n_events"] == 3
    assert first["n_contents"] == 2  # c1, c2 viewed (the like is not a view)
    assert first["watch_time_s"] == pytest.approx(30.0)
    assert first["duration_s"] == pytest.approx(39.9 * 60)
    assert first["start"] == T0 and first["user_id"] == "u1"


def test_gap_parameter_changes_sessions() -> None:
    ev = events_frame([("a", "u", "c", 0, "view", 1.0), ("b", "u", "c", 20, "view", 1.0)])
    assert sessionise(ev, 30)["session_id"].nunique() == 1
    assert sessionise(ev, 15)["session_id"].nunique() == 2


def test_sessionise_is_deterministic_under_input_order() -> None:
    ev = events_frame([(f"e{i}", f"u{i % 3}", "c", float(i * 7 % 50), "view", 1.0) for i in range(40)])

    def partition(df: pd.DataFrame) -> set[frozenset[str]]:
        return set(df.groupby("session_id")["event_id"].apply(frozenset))

    a = sessionise(ev, 30)
    b = sessionise(ev.iloc[::-1].reset_index(drop=True), 30)
    assert partition(a) == partition(b)
    assert a["session_id"].is_monotonic_increasing


def test_duration_imputed_from_category_median_then_global() -> None:
    content = pd.DataFrame(
        {
            "content_id": ["a", "b", "c", "d", "e"],
            "category": ["Dance ", "dance", "dance", "food", None],
            "duration_s": [10.0, 30.0, 0.0, np.nan, None],
        }
    )
    out = clean_content(content).set_index("content_id")
    assert out.loc["c", "duration_s"] == 20.0 and out.loc["c", "duration_imputed"]
    assert out.loc["d", "duration_s"] == 20.0  # food has no known duration: global median of 10, 30
    assert out.loc["e", "category"] == "unknown"
    assert out.loc["a", "category"] == "dance" and not out.loc["a", "duration_imputed"]


def test_vocab_normalisation() -> None:
    s = pd.Series(["iPhone", " ANDROID", "Desktop", "toaster", None], dtype="string[pyarrow]")
    assert normalise_vocab(s, DEVICE_ALIASES).tolist() == ["ios", "android", "web", "other", pd.NA]
    n = pd.Series(["Wi-Fi", "LTE", "5G"], dtype="string[pyarrow]")
    assert normalise_vocab(n, NETWORK_ALIASES).tolist() == ["wifi", "4g", "5g"]


def test_preprocess_dedupes_attaches_content_and_ratio() -> None:
    ev = events_frame(
        [("a", "u", "c1", 0, "view", 5.0), ("a", "u", "c1", 0, "view", 5.0), ("b", "u", "zz", 1, "view", 3.0)]
    )
    content = pd.DataFrame({"content_id": ["c1"], "category": ["Dance"], "duration_s": [10.0]})
    events, sessions, _clean, dups = preprocess(ev, content, PreprocessParams.from_params(project_params(preprocess={"session_gap_minutes": 30})))
    assert dups == 1 and len(events) == 2
    by_id = events.set_index("event_id")
    assert by_id.loc["a", "watch_ratio"] == pytest.approx(0.5)
    assert by_id.loc["a", "category"] == "dance"
    assert np.isnan(by_id.loc["b", "watch_ratio"]) and by_id.loc["b", "category"] == "unknown"
    assert (events["device_type"] == "ios").all()
    assert len(sessions) == 1 and sessions["n_events"].iloc[0] == 2
