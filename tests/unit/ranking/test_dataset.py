"""Ranking training sets: labels from later events, sampling, candidates ∪ positives, no leakage."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.ranking import dataset as R
from components.ranking import labels as L
from tests.feature_repo.helpers import events_frame
from tests.fixtures.frames import T0

H = pd.Timedelta(hours=1)
W = pd.Timedelta(hours=24)
CUT = T0 + 24 * H


def ev(rows: list[tuple[float, str, str, str]], **extra: float) -> pd.DataFrame:
    """(hours after T0, type, user, content) rows as clean events."""
    return events_frame(
        [
            {"t": t, "type": typ, "user": u, "content": c, **({"ratio": extra[c]} if c in extra and typ == "view" else {})}
            for t, typ, u, c in rows
        ]
    )


def cands(user: str, contents: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": user,
            "content_id": contents,
            "score": np.linspace(1, 0, len(contents)).astype(np.float32),
            "source": "mf",
            "rank": np.arange(len(contents)),
        }
    )


def row(frame: pd.DataFrame, content: str, user: str = "u1") -> pd.Series:
    hit = frame[(frame["user_id"] == user) & (frame["content_id"] == content)]
    assert len(hit) == 1, (user, content)
    return hit.iloc[0]


def test_each_label_type_and_relevance() -> None:
    events = ev(
        [
            (25, "view", "u1", "c1"),
            (25.1, "share", "u1", "c1"),
            (26, "view", "u1", "c2"),
            (26.1, "like", "u1", "c2"),
            (27, "view", "u1", "c3"),
            (27.1, "complete_view", "u1", "c3"),
            (28, "view", "u1", "c4"),
            (29, "view", "u1", "c5"),
            (29.1, "skip", "u1", "c5"),
            (30, "hide", "u1", "c6"),
            (31, "comment", "u1", "c7"),
        ],
        c4=0.3,
    )
    out = R.build_training_set(events, cands("u1", ["c1", "c9"]), CUT, W, negatives_per_group=5)
    expect = {  # engaged, like, share, complete, negative, relevance
        "c1": (1, 0, 1, 0, 0, 3),
        "c2": (1, 1, 0, 0, 0, 2),
        "c3": (1, 0, 0, 1, 0, 2),
        "c4": (0, 0, 0, 0, 0, 1),
        "c5": (0, 0, 0, 0, 1, 1),
        "c6": (0, 0, 0, 0, 1, 0),
        "c7": (1, 0, 0, 0, 0, 3),
        "c9": (0, 0, 0, 0, 0, 0),
    }
    cols = ["label_engaged", "label_like", "label_share", "label_complete_view", "label_negative", "relevance"]
    for c, want in expect.items():
        assert tuple(int(v) for v in row(out, c)[cols]) == want, c
    assert row(out, "c4")["label_watch_ratio"] == pytest.approx(0.3)
    assert np.isnan(row(out, "c6")["label_watch_ratio"]) and np.isnan(row(out, "c9")["label_watch_ratio"])
    assert out["group_id"].nunique() == 1
    assert (out["event_timestamp"] == CUT).all()


def test_window_boundaries_and_events_before_the_cut() -> None:
    events = ev(
        [
            (10, "like", "u1", "c1"),  # before the cut: never labels
            (24, "like", "u1", "c2"),  # exactly at the cut: excluded
            (48, "like", "u1", "c3"),  # exactly at cut + window: included
            (48.01, "like", "u1", "c4"),  # after the window: excluded
            (30, "view", "u1", "c5"),
        ]
    )
    out = R.build_training_set(events, cands("u1", ["c1", "c2", "c4"]), CUT, W, negatives_per_group=10)
    assert row(out, "c3")["label_like"] == 1
    for c in ("c1", "c2", "c4"):
        assert row(out, c)["label_like"] == 0 and row(out, c)["relevance"] == 0
    # events outside the window change nothing
    inside = ev([(48, "like", "u1", "c3"), (30, "view", "u1", "c5")])
    again = R.build_training_set(inside, cands("u1", ["c1", "c2", "c4"]), CUT, W, negatives_per_group=10)
    cols = ["user_id", "content_id", *L.LABEL_COLUMNS]
    pd.testing.assert_frame_equal(out[cols], again[cols])


def test_positive_outside_candidates_is_added() -> None:
    events = ev([(25, "view", "u1", "cX"), (25.1, "like", "u1", "cX")])
    out = R.build_training_set(events, cands("u1", ["c1", "c2"]), CUT, W, negatives_per_group=5)
    added = row(out, "cX")
    assert added["in_candidates"] == 0 and added["label_engaged"] == 1
    assert np.isnan(added["retrieval_score"]) and added["source"] == "none"
    assert row(out, "c1")["in_candidates"] == 1 and row(out, "c1")["retrieval_rank"] == 0


def test_negative_sampling_is_deterministic_and_bounded() -> None:
    events = ev([(25, "like", "u1", "p1"), (26, "like", "u2", "p2")])
    c = pd.concat([cands("u1", [f"n{i}" for i in range(40)]), cands("u2", [f"n{i}" for i in range(40)])])
    a = R.build_training_set(events, c, CUT, W, negatives_per_group=7, seed=1)
    b = R.build_training_set(events, c.sample(frac=1, random_state=3), CUT, W, negatives_per_group=7, seed=1)
    other = R.build_training_set(events, c, CUT, W, negatives_per_group=7, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert a.groupby("user_id").size().to_dict() == {"u1": 8, "u2": 8}
    assert set(a["content_id"]) != set(other["content_id"])
    assert {"p1", "p2"} <= set(a["content_id"])


def test_join_outcomes_within_window_only() -> None:
    events = ev(
        [
            (1, "view", "u1", "c1"),  # at the impression time: counts
            (1.5, "like", "u1", "c1"),
            (3, "share", "u1", "c1"),  # after the 1 h window
            (0.5, "like", "u1", "c2"),  # before the impression
        ]
    )
    imps = pd.DataFrame(
        {
            "request_id": ["r1", "r1"],
            "user_id": ["u1", "u1"],
            "content_id": ["c1", "c2"],
            "timestamp": [T0 + H, T0 + H],
            "model_version": ["v1", "v1"],
            "propensity": [0.5, 0.25],
            "f_x": [1.0, 2.0],
        }
    )
    out = L.join_outcomes(imps, events, H)
    assert list(out.columns[:7]) == list(imps.columns)
    assert out["label_like"].tolist() == [1, 0]
    assert out["label_share"].tolist() == [0, 0]
    assert out["relevance"].tolist() == [2, 0]
    with pytest.raises(KeyError):
        L.join_outcomes(imps.drop(columns="timestamp"), events, H)


def test_training_cuts_are_day_boundaries() -> None:
    cuts = R.training_cuts(pd.Timestamp("2026-01-18T23:59:54Z"), 3, W)
    assert [str(c.date()) for c in cuts] == ["2026-01-16", "2026-01-17", "2026-01-18"]


def test_features_come_from_the_point_in_time_join(tmp_path: Path) -> None:
    """A feature row stamped after the cut is not used; the row sees the snapshot before it."""
    from components.features.feast_repo import StoreSettings, open_store
    from components.features.store import apply
    from tests.feature_repo.helpers import build_root, default_events
    from tests.fixtures.params import project_settings

    paths = build_root(tmp_path)
    store = open_store(paths, project_settings(StoreSettings, project=f"t{uuid.uuid4().hex[:12]}", online="sqlite"))
    apply(store)
    events = events_frame(default_events())
    cut = T0 + 2 * 24 * H  # day 2 starts; u1 has later activity on day 3
    out = R.build_training_set(events, cands("u1", ["c1", "c3"]), cut, 2 * W, negatives_per_group=5)
    feats = R.add_features(store, out, "ranker_v2")
    later = R.add_features(store, out.assign(event_timestamp=cut + 2 * W), "ranker_v2")
    user_cols = [c for c in feats.columns if c.startswith("u_") and pd.api.types.is_numeric_dtype(feats[c])]
    assert user_cols
    assert len(feats) == len(out)
    # features at the cut differ from those after later activity (so they are not the latest)
    assert not feats[user_cols].equals(later[user_cols])
    # the next daily snapshot is stamped at cut + 1 day: up to just before it, the cut's values hold
    same = R.add_features(
        store, out.assign(event_timestamp=cut + W - pd.Timedelta(milliseconds=1)), "ranker_v2"
    )
    pd.testing.assert_frame_equal(
        feats[user_cols].reset_index(drop=True), same[user_cols].reset_index(drop=True)
    )
    assert set(R.feature_columns(feats)) & set(user_cols)
    assert not set(R.feature_columns(feats)) & set(L.LABEL_COLUMNS)


def test_negative_label_is_content_negative_feedback_not_an_unfollow() -> None:
    """The negative label is ``schema.CONTENT_NEGATIVE_TYPES``: an unfollow is about the creator
    (even when the log ties it to the content that prompted it), so it labels nothing negative."""
    events = ev([(25, "unfollow", "u1", "c1"), (26, "report", "u1", "c2"), (27, "skip", "u1", "c3")])
    out = R.build_training_set(events, cands("u1", ["c1", "c2", "c3"]), CUT, W, negatives_per_group=5)
    assert [int(row(out, c)["label_negative"]) for c in ("c1", "c2", "c3")] == [0, 1, 1]


def test_sample_groups_bounds_a_cut_by_seed_not_by_order() -> None:
    users = [f"u{i}" for i in range(100)]
    a = R.sample_groups(users, 30, seed=1, cut=CUT)
    assert len(a) == 30 and len(set(a)) == 30 and set(a) <= set(users) and a == sorted(a)
    assert R.sample_groups(list(reversed(users)), 30, seed=1, cut=CUT) == a
    assert R.sample_groups(users, 30, seed=2, cut=CUT) != a
    assert R.sample_groups(users, 30, seed=1, cut=CUT + pd.Timedelta(days=1)) != a
    assert R.sample_groups(users, 0, seed=1, cut=CUT) == sorted(users)
    assert R.sample_groups(users[:20], 30, seed=1, cut=CUT) == sorted(users[:20])
