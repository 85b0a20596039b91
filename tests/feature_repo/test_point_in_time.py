"""Point-in-time training data through the FeatureService: no leakage, no lost rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.features.point_in_time import historical_features, request_columns, training_frame
from tests.feature_repo.helpers import build_root
from tests.fixtures.frames import DAY, T0, H

MS = pd.Timedelta(milliseconds=1)


def labels(rows: list[tuple[str, str, pd.Timestamp]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "content_id": [r[1] for r in rows],
            "timestamp": pd.to_datetime([r[2] for r in rows], utc=True),
            "clicked": np.arange(len(rows)) % 2,
        }
    )


def test_features_that_change_after_the_label_never_reach_its_row(
    tmp_path: Path, store_factory
) -> None:
    rows = [
        {"t": 5, "type": "like", "user": "u1", "content": "c1", "category": "food"},
        {"t": 6, "type": "like", "user": "u1", "content": "c1", "category": "food"},
        # day 1: one like before the label (12:00), three after it
        {"t": 24 + 11, "type": "like", "user": "u1", "content": "c1", "category": "food"},
        *(
            {"t": 24 + 13 + i, "type": "like", "user": "u1", "content": "c1", "category": "food"}
            for i in range(3)
        ),
        {"t": 48 + 1, "type": "view", "user": "u1", "content": "c1", "category": "food"},
    ]
    paths = build_root(tmp_path, rows)
    store = store_factory(paths)
    label_time = T0 + DAY + 12 * H
    frame = training_frame(
        store,
        labels(
            [("u1", "c1", label_time), ("u1", "c1", T0 + 2 * DAY - MS), ("u1", "c1", T0 + 2 * DAY)]
        ),
        "ranker_v2",
    )
    # 12:00 on day 1: the day-0 snapshot (2 likes) - not the like at 11:00, not the three after 12:00
    assert list(frame["u_like_24h"]) == [2, 2, 4]
    assert list(frame["u_like_7d"]) == [2, 2, 6]
    assert list(frame["c_n_like"]) == [2, 2, 6]
    assert list(frame["c_engagements_24h"]) == [2, 2, 4]
    # the day-1 snapshot exists in the offline store and would leak if it were joined
    user_rows = pd.read_parquet(paths.features / "user_features.parquet")
    day1 = user_rows[user_rows["event_timestamp"] == T0 + 2 * DAY]
    assert list(day1["u_like_24h"]) == [4]
    # the recency feature is computed at the label's time from what was known then
    assert frame["rt_hours_since_last_event"].iloc[0] == pytest.approx(
        12 + 18.0
    )  # last event 06:00 day 0
    assert frame["clicked"].tolist() == [0, 1, 0]
    assert "rt_last_event_ts_s" not in frame  # read for the on-demand view, not a service feature


def test_every_label_row_comes_back_with_nulls_where_nothing_was_known(
    feature_root, store_factory
) -> None:
    store = store_factory(feature_root)
    rows = [
        ("u1", "c1", T0 + 30 * H),  # normal
        (
            "u3",
            "c3",
            T0 + 2 * H,
        ),  # before u3's first snapshot; c3 profile known (first event at 01:12)
        ("u2", "c2", T0 + 10 * DAY),  # user_realtime (TTL 2 d) expired, user_activity (30 d) not
        ("u1", "c1", T0 + 30 * H),  # exact duplicate of the first row
        ("nobody", "c4", T0 + 3 * DAY),  # unknown user, content never interacted with
    ]
    frame = training_frame(store, labels(rows), "ranker_v2")
    assert len(frame) == 5 and frame["clicked"].tolist() == [0, 1, 0, 1, 0]
    assert frame["user_id"].tolist() == [r[0] for r in rows]
    assert frame.loc[0, "u_like_24h"] == 1 and frame.loc[3, "u_like_24h"] == 1
    assert np.isnan(frame.loc[1, "u_n_events"]) and frame.loc[1, "c_duration_s"] == 15.0
    assert frame.loc[1, "creator_id"] == "k2" and frame.loc[1, "cr_content_count"] == 1
    assert np.isnan(frame.loc[2, "rt_events_1h"]) and frame.loc[2, "u_n_events"] == 7
    assert np.isnan(frame.loc[4, "u_n_events"]) and np.isnan(frame.loc[4, "c_n_view"])
    assert (
        frame.loc[4, "c_category_idx"] == 1
    )  # food, music, pets and frame.loc[4, "cr_content_count"] == 2
    assert frame["ctx_hour_sin"].notna().all()


def test_feast_single_call_loses_rows_that_the_per_view_join_keeps(
    feature_root, store_factory
) -> None:
    """Why historical_features joins one view per call (Feast 0.67 file offline store)."""
    store = store_factory(feature_root)
    ent = labels([("u3", "c3", T0 + 2 * H), ("u1", "c1", T0 + 30 * H), ("u1", "c1", T0 + 30 * H)])
    ent["event_timestamp"] = ent.pop("timestamp")
    ent = ent.join(request_columns(ent["event_timestamp"]))
    ent["creator_id"] = ["k2", "k1", "k1"]
    ent = ent.astype({"user_id": "string", "content_id": "string", "creator_id": "string"})
    raw = store.get_historical_features(
        entity_df=ent, features=store.get_feature_service("ranker_v1")
    ).to_df()
    ours = historical_features(store, ent, "ranker_v1")
    assert len(raw) < len(ent) == len(ours)


def test_context_features_come_from_the_label_request(feature_root, store_factory) -> None:
    store = store_factory(feature_root)
    lab = labels([("u1", "c1", T0 + 6 * H), ("u1", "c1", T0 + 18 * H)])
    lab["device_type"] = ["iPhone", None]
    lab["network"] = ["LTE", "wifi"]
    frame = training_frame(store, lab, "ranker_v1")
    assert frame["ctx_hour_sin"].tolist() == pytest.approx([1.0, -1.0])
    assert frame["ctx_device_ios"].tolist() == [1, 0] and frame["ctx_network_tier"].tolist() == [
        3,
        4,
    ]
    assert "rt_events_1h" not in frame  # v1 does not carry the pushed features


def test_labels_need_entity_and_time_columns(feature_root, store_factory) -> None:
    store = store_factory(feature_root)
    with pytest.raises(KeyError, match="timestamp"):
        training_frame(store, pd.DataFrame({"user_id": ["u1"], "content_id": ["c1"]}))
