"""Feature computation on hand-built frames: values checked against hand-computed numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.core.catalog import DataPaths
from components.core.schema import ENGAGEMENT_TYPES
from components.data.preprocess import session_table
from components.features.columns import (
    CONTEXT_COLUMNS,
    FILES,
    META_FILE,
    TABLE_SCHEMAS,
    USER_SCHEMA,
)
from components.features.compute import run as features_run
from components.features.content import content_features
from components.features.context import context_arrays, context_frame, recency_frame
from components.features.creator import creator_features
from components.features.params import FeatureParams
from components.features.profile import category_vocab, content_profile
from components.features.user import user_features
from tests.fixtures.frames import DAY, NO_USERS, T0, H, content_frame, events_frame
from tests.fixtures.params import project_params

MS = pd.Timedelta(milliseconds=1)
P = FeatureParams.from_params(project_params())


def row(frame: pd.DataFrame, key: str, entity: str, at: pd.Timestamp) -> pd.Series:
    hit = frame[(frame[key] == entity) & (frame["event_timestamp"] == at)]
    assert len(hit) == 1, f"expected one row for {entity} at {at}, got {len(hit)}"
    return hit.iloc[0]


# ---------------------------------------------------------------------------------------------
# user features


def test_decayed_engagement_matches_formula_across_snapshots() -> None:
    ev = events_frame(
        [
            {"t": 2, "type": "like"},
            {"t": 20, "type": "share"},
            {"t": 21, "type": "view"},  # weight 0: not an engagement
            {"t": 53, "type": "comment"},
        ]
    )
    out = user_features(ev, NO_USERS, ["food"], P)
    assert list(out["event_timestamp"]) == [T0 + DAY, T0 + 3 * DAY]  # day 1 had no activity

    def w(age_h: float, weight: float) -> float:
        return weight * math.exp(-0.1 * age_h / 24.0)  # lambda_decay per day

    day1 = row(out, "user_id", "u1", T0 + DAY)
    assert day1["u_engagement_decayed"] == pytest.approx(w(22, 1.0) + w(4, 3.0), rel=1e-12)
    day3 = row(out, "user_id", "u1", T0 + 3 * DAY)
    assert day3["u_engagement_decayed"] == pytest.approx(
        w(70, 1.0) + w(52, 3.0) + w(19, 2.0), rel=1e-12
    )

    flat = user_features(ev, NO_USERS, ["food"], P.replace(lambda_decay=0.0))
    assert list(flat["u_engagement_decayed"]) == pytest.approx([4.0, 6.0])


def test_category_engagement_share_is_category_over_total() -> None:
    ev = events_frame(
        [
            {"t": 1, "type": "like", "content": "a", "category": "food"},
            {"t": 2, "type": "share", "content": "a", "category": "food"},
            {"t": 3, "type": "like", "content": "b", "category": "pets"},
            {"t": 4, "type": "view", "content": "c", "category": "music"},  # not an engagement
            {
                "t": 5,
                "type": "follow",
                "content": None,
                "creator": "k1",
                "category": None,
            },  # no content
        ]
    )
    cats = ["music", "food", "pets"]
    r = row(user_features(ev, NO_USERS, cats, P), "user_id", "u1", T0 + DAY)
    assert list(r["u_category_share"]) == pytest.approx([0.0, 2 / 3, 1 / 3])
    assert r["u_top_category_idx"] == 1 and r["u_top_category_share"] == pytest.approx(2 / 3)
    assert r["u_n_engagements"] == 4  # the follow counts as engagement, not towards a category


def test_no_engagement_gives_zero_shares_and_no_top_category() -> None:
    r = user_features(
        events_frame([{"t": 1, "type": "view"}]), NO_USERS, ["food", "pets"], P
    ).iloc[0]
    assert list(r["u_category_share"]) == [0.0, 0.0]
    assert r["u_top_category_idx"] == -1 and np.isnan(r["u_top_category_share"])


def test_sliding_windows_are_half_open_and_end_at_the_snapshot() -> None:
    T = T0 + 7 * DAY  # snapshot of day 6 (events in [T - 1 day, T))
    ev = events_frame(
        [
            {"t": T - 7 * DAY - MS, "type": "like"},  # outside 7 d
            {"t": T - 7 * DAY, "type": "like"},  # first instant of the 7 d window
            {"t": T - 24 * H, "type": "like"},  # first instant of 24 h
            {"t": T - H - MS, "type": "like"},  # just outside 1 h
            {"t": T - H, "type": "like"},  # first instant of 1 h
            {"t": T, "type": "like"},  # belongs to the next snapshot
        ]
    )
    out = user_features(ev, NO_USERS, ["food"], P)
    r = row(out, "user_id", "u1", T)
    assert (r["u_like_1h"], r["u_like_24h"], r["u_like_7d"]) == (1, 3, 4)
    assert r["u_n_engagements"] == 5
    nxt = row(out, "user_id", "u1", T + DAY)
    assert (nxt["u_like_1h"], nxt["u_like_24h"], nxt["u_n_engagements"]) == (0, 1, 6)
    assert r["rt_events_1h"] == 1 and r["rt_engagements_1h"] == 1


def test_rates_recency_devices_and_last_viewed() -> None:
    ev = events_frame(
        [
            {"t": 1, "type": "view", "content": "a", "device": "ios", "os": "ios"},
            {"t": 2, "type": "skip", "content": "b", "device": "android", "os": "android"},
            {"t": 3, "type": "view", "content": "c", "device": "ios", "os": "ios"},
            {"t": 4, "type": "hide", "content": "c", "device": None, "os": None},
            {"t": 5, "type": "view", "content": "d", "device": "web", "os": "windows"},
            {"t": 6, "type": "report", "content": "d", "device": "web", "os": "windows"},
            {"t": 20, "type": "view", "content": "a", "device": "ios", "os": "ios"},
        ]
    )
    r = row(
        user_features(ev, NO_USERS, ["food"], P.replace(last_n_viewed=3)),
        "user_id",
        "u1",
        T0 + DAY,
    )
    assert r["u_skip_rate"] == pytest.approx(1 / 5)  # exposures = 4 views + 1 skip
    assert r["u_hide_rate"] == pytest.approx(1 / 5) and r["u_report_rate"] == pytest.approx(1 / 5)
    assert r["u_hours_since_last_event"] == pytest.approx(4.0)
    assert r["rt_last_event_ts_s"] == int((T0 + 20 * H).timestamp())
    assert list(r["rt_last_viewed"]) == ["a", "d", "c"]  # most recent first, at most N
    assert r["u_device_share_ios"] == pytest.approx(3 / 6) and r[
        "u_device_share_web"
    ] == pytest.approx(2 / 6)
    assert r["u_os_share_windows"] == pytest.approx(2 / 6) and r["u_os_share_linux"] == 0.0
    assert r["u_n_views"] == 4 and r["u_n_events"] == 7


def test_session_stats_cut_at_the_snapshot() -> None:
    ev = events_frame(
        [
            {"t": 0, "type": "view", "content": "c1"},  # session A: 0-20 min, contents c1, c2
            {"t": 10 / 60, "type": "view", "content": "c2"},
            {"t": 20 / 60, "type": "view", "content": "c1"},
            {"t": 3, "type": "view", "content": "c3"},  # session B: one event
            {"t": 23 + 50 / 60, "type": "view", "content": "c4"},  # session C crosses midnight
            {"t": 24 + 10 / 60, "type": "view", "content": "c5"},
        ]
    )
    out = user_features(ev, NO_USERS, ["food"], P)
    d0 = row(out, "user_id", "u1", T0 + DAY)  # C seen up to 23:50 only
    assert d0["u_n_sessions"] == 3
    assert d0["u_avg_session_duration_s"] == pytest.approx((1200 + 0 + 0) / 3)
    assert d0["u_avg_contents_per_session"] == pytest.approx((2 + 1 + 1) / 3)
    d1 = row(out, "user_id", "u1", T0 + 2 * DAY)
    assert d1["u_n_sessions"] == 3
    assert d1["u_avg_session_duration_s"] == pytest.approx((1200 + 0 + 1200) / 3)
    assert d1["u_avg_contents_per_session"] == pytest.approx((2 + 1 + 2) / 3)
    sessions = session_table(ev)  # the final snapshot agrees with preprocess's session table
    assert d1["u_avg_session_duration_s"] == pytest.approx(sessions["duration_s"].mean())
    assert d1["u_avg_contents_per_session"] == pytest.approx(sessions["n_contents"].mean())


def test_uploads_are_not_user_activity_and_account_age() -> None:
    ev = events_frame(
        [{"t": 1, "type": "content_upload", "user": "k"}, {"t": 2, "type": "like", "user": "u1"}]
    )
    users = pd.DataFrame({"user_id": ["u1"], "signup_timestamp": [T0 - 10 * DAY]})
    users["signup_timestamp"] = users["signup_timestamp"].astype("datetime64[ms, UTC]")
    out = user_features(ev, users, ["food"], P)
    assert list(out["user_id"]) == ["u1"]
    assert out.iloc[0]["u_account_age_days"] == pytest.approx(11.0)


# ---------------------------------------------------------------------------------------------
# content and creator features


def test_content_rates_watch_ratio_and_growth() -> None:
    rows: list[dict[str, Any]] = [
        {"t": 10, "type": "like"},
        {"t": 11, "type": "like"},
        {"t": 12, "type": "view", "ratio": 0.5},
        {"t": 12.5, "type": "view", "ratio": 1.0},
        {"t": 13, "type": "view", "ratio": np.nan},  # no ratio: not in the average
        {"t": 13.5, "type": "complete_view"},
        {"t": 14, "type": "skip"},
    ]
    rows += [{"t": 30 + i, "type": "like"} for i in range(5)] + [{"t": 40, "type": "comment"}]
    content = content_frame([{"content": "c1", "upload": -24.0}])
    out = content_features(events_frame(rows), content, P)
    d0 = row(out, "content_id", "c1", T0 + DAY)
    assert (d0["c_n_view"], d0["c_n_like"], d0["c_n_skip"]) == (3, 2, 1)
    assert d0["c_like_rate"] == pytest.approx(2 / 3) and d0["c_completion_rate"] == pytest.approx(
        1 / 3
    )
    assert d0["c_skip_rate"] == pytest.approx(1 / 4)
    assert d0["c_avg_watch_ratio"] == pytest.approx(0.75)
    assert d0["c_engagement_growth"] == pytest.approx(2.0)  # (2 - 0) / max(0, 1)
    assert d0["c_age_hours"] == pytest.approx(48.0)
    d1 = row(out, "content_id", "c1", T0 + 2 * DAY)
    assert (d1["c_engagements_24h"], d1["c_engagements_prev_24h"]) == (6, 2)
    assert d1["c_engagement_growth"] == pytest.approx((6 - 2) / 2)
    assert d1["c_comment_rate"] == pytest.approx(1 / 3) and d1["c_n_engagements"] == 8
    assert d1["c_engagements_7d"] == 8 and d1["c_views_24h"] == 0


def test_content_without_views_has_undefined_rates_and_unknown_upload_has_no_age() -> None:
    out = content_features(
        events_frame([{"t": 1, "type": "like"}]), content_frame([{"content": "c1"}]), P
    )
    r = out.iloc[0]
    assert (
        np.isnan(r["c_like_rate"])
        and np.isnan(r["c_avg_watch_ratio"])
        and np.isnan(r["c_age_hours"])
    )


def test_creator_followers_rates_content_count_and_engagement() -> None:
    content = content_frame(
        [
            {"content": "c1", "upload": -240.0},
            {"content": "c2", "upload": 30.0},
            {"content": "x", "creator": "unknown"},
        ]
    )
    ev = events_frame(
        [
            {"t": 1, "type": "follow", "content": None, "creator": "k1"},
            {"t": 2, "type": "follow", "content": None, "creator": "k1"},
            {"t": 3, "type": "unfollow", "content": None, "creator": "k1"},
            {"t": 4, "type": "view", "content": "c1"},
            {"t": 5, "type": "like", "content": "c1"},
            {"t": 6, "type": "like", "content": "x"},  # creator unknown: no creator row
        ]
    )
    out = creator_features(ev, content, P)
    assert set(out["creator_id"]) == {"k1"}
    d0 = row(out, "creator_id", "k1", T0 + DAY)
    assert (d0["cr_followers"], d0["cr_follows_7d"], d0["cr_unfollows_7d"]) == (1, 2, 1)
    assert d0["cr_follow_rate"] == pytest.approx(2 / 7) and d0["cr_unfollow_rate"] == pytest.approx(
        1 / 7
    )
    assert d0["cr_unfollow_ratio"] == pytest.approx(0.5)
    assert d0["cr_content_count"] == 1  # c2 is uploaded on day 1
    assert d0["cr_avg_engagement"] == pytest.approx(1.0) and d0[
        "cr_engagement_rate"
    ] == pytest.approx(1.0)
    d1 = row(out, "creator_id", "k1", T0 + 2 * DAY)  # the upload itself is creator activity
    assert d1["cr_content_count"] == 2 and d1["cr_avg_engagement"] == pytest.approx(0.5)
    assert row(out, "creator_id", "k1", T0 - 9 * DAY)["cr_content_count"] == 1


def test_content_profile_text_hashtags_vectors_and_availability() -> None:
    content = content_frame(
        [
            {
                "content": "a",
                "upload": 5.0,
                "tags": ["#food", "recipe"],
                "description": "spicy noodles #food #quick",
                "visual": [1.0, 0.0],
            },
            {
                "content": "b",
                "upload": None,
                "tags": ["#food"],
                "description": "cat video",
                "category": "pets",
            },
            {"content": "c", "upload": None, "tags": [], "description": "", "category": "music"},
        ]
    )
    ev = events_frame([{"t": 7, "type": "view", "content": "b"}])
    out = content_profile(
        ev, content, ["food", "pets", "other"], P.replace(text_dim=4)
    ).set_index("content_id")
    assert out.loc["a", "event_timestamp"] == T0 + 5 * H  # upload time
    assert out.loc["b", "event_timestamp"] == T0 + 7 * H  # first event (no upload time)
    assert out.loc["c", "event_timestamp"] == T0  # neither: start of the log's first day
    assert (out.loc["a", "c_n_hashtags"], out.loc["a", "c_n_tags"]) == (2, 2)  # food, quick
    assert out.loc["a", "c_hashtag_freq_max"] == pytest.approx(2 / 3)  # #food on a and b
    assert out.loc["a", "c_hashtag_freq_mean"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert out.loc["c", "c_hashtag_freq_max"] == 0.0
    assert list(out["c_category_idx"]) == [0, 1, 2]  # music is not in the vocabulary -> other
    vec = np.vstack(out["c_text_vec"].to_numpy())
    assert vec.shape == (3, 4) and vec.dtype == np.float32
    assert np.linalg.norm(vec[0]) == pytest.approx(1.0, abs=1e-5)
    assert np.all(vec[2] == 0.0)  # no text
    assert list(out.loc["a", "c_visual_vec"]) == [1.0, 0.0] and out.loc["b", "c_visual_vec"] is None
    assert list(out["c_has_visual"]) == [1, 0, 0]


def test_category_vocab_caps_with_other() -> None:
    content = content_frame(
        [{"content": f"c{i}", "category": cat} for i, cat in enumerate("aabbbcd")]
    )
    assert category_vocab(content, 10) == ["b", "a", "c", "d"]
    assert category_vocab(content, 3) == ["b", "a", "other"]


# ---------------------------------------------------------------------------------------------
# context


def test_context_hour_sin_cos_weekday_device_network() -> None:
    monday = int(pd.Timestamp("2026-03-02T00:00:00Z").timestamp())
    ts = [monday + h * 3600 for h in (0, 6, 12, 18)] + [monday + 23 * 3600, monday + 5 * 86400]
    out = context_arrays(
        ts,
        [0, 0, 0, 0, 120, 0],
        ["iPhone", "android", "Desktop", None, "ios", "toaster"],
        ["LTE", "wifi", "5g", None, "edge", "x"],
    )
    np.testing.assert_allclose(out["ctx_hour_sin"][:4], [0.0, 1.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(out["ctx_hour_cos"][:4], [1.0, 0.0, -1.0, 0.0], atol=1e-12)
    # 23:00 UTC + 2 h offset = 01:00 on Tuesday
    assert out["ctx_hour_sin"][4] == pytest.approx(math.sin(2 * math.pi / 24))
    assert list(out["ctx_day_of_week"]) == [0, 0, 0, 0, 1, 5]
    assert list(out["ctx_is_weekend"]) == [0, 0, 0, 0, 0, 1]
    assert list(out["ctx_device_ios"]) == [1, 0, 0, 0, 1, 0] and list(out["ctx_device_web"]) == [
        0,
        0,
        1,
        0,
        0,
        0,
    ]
    assert list(out["ctx_network_tier"]) == [3, 4, 5, 0, 1, 0]
    np.testing.assert_allclose(out["ctx_network_mbps"], [20.0, 50.0, 100.0, np.nan, 0.1, np.nan])
    frame = context_frame(
        pd.DataFrame(
            {
                "request_ts_s": ts,
                "utc_offset_min": [0, 0, 0, 0, 120, 0],
                "device_type": ["iPhone", "android", "Desktop", None, "ios", "toaster"],
                "network": ["LTE", "wifi", "5g", None, "edge", "x"],
            }
        )
    )
    assert list(frame.columns) == [c for c, _ in CONTEXT_COLUMNS]
    for col in frame:
        np.testing.assert_array_equal(frame[col].to_numpy(), out[col])


def test_recency_hours() -> None:
    out = recency_frame(
        pd.DataFrame({"request_ts_s": [7200, 7200], "rt_last_event_ts_s": [0, None]})
    )
    assert out["rt_hours_since_last_event"].iloc[0] == 2.0 and np.isnan(
        out["rt_hours_since_last_event"].iloc[1]
    )


# ---------------------------------------------------------------------------------------------
# against a brute-force reference on random data


def test_vectorised_features_match_brute_force() -> None:
    rng = np.random.default_rng(7)
    n = 600
    types = ["view", "like", "share", "skip", "comment", "hide", "follow"]
    rows = [
        {
            "t": float(rng.uniform(0, 24 * 9)),
            "type": str(rng.choice(types)),
            "user": f"u{rng.integers(4)}",
            "content": f"c{rng.integers(6)}",
            "category": str(rng.choice(["food", "pets", "news"])),
        }
        for _ in range(n)
    ]
    ev = events_frame(rows)
    cats = ["food", "pets", "news"]
    out = user_features(ev, NO_USERS, cats, P)
    w = P.engagement_weights
    for _, r in out.sample(12, random_state=1).iterrows():
        T = r["event_timestamp"]
        mine = ev[(ev["user_id"] == r["user_id"]) & (ev["timestamp"] < T)]
        for typ in ("like", "view", "skip"):
            for label, hours in (("1h", 1), ("24h", 24), ("7d", 168)):
                expected = (
                    (mine["event_type"] == typ)
                    & (mine["timestamp"] >= T - pd.Timedelta(hours=hours))
                ).sum()
                assert r[f"u_{typ}_{label}"] == expected
        age = (T - mine["timestamp"]).dt.total_seconds() / 86400.0
        value = mine["event_type"].map(lambda t: w.get(t, 0.0)).astype(float)
        assert r["u_engagement_decayed"] == pytest.approx(
            float((value * np.exp(-0.1 * age)).sum()), rel=1e-9
        )
        eng = mine[mine["event_type"].isin(list(ENGAGEMENT_TYPES))]
        share = eng["category"].value_counts(normalize=True).reindex(cats, fill_value=0.0)
        assert list(r["u_category_share"]) == pytest.approx(list(share), abs=1e-6)
        assert r["u_n_sessions"] == mine["session_id"].nunique()
    content = content_frame([{"content": f"c{i}"} for i in range(6)])
    cf = content_features(ev, content, P)
    for _, r in cf.sample(10, random_state=2).iterrows():
        T = r["event_timestamp"]
        mine = ev[(ev["content_id"] == r["content_id"]) & (ev["timestamp"] < T)]
        eng = mine["event_type"].isin(list(ENGAGEMENT_TYPES))
        recent = (eng & (mine["timestamp"] >= T - DAY)).sum()
        before = (eng & (mine["timestamp"] < T - DAY) & (mine["timestamp"] >= T - 2 * DAY)).sum()
        assert (r["c_engagements_24h"], r["c_engagements_prev_24h"]) == (recent, before)
        assert r["c_n_like"] == (mine["event_type"] == "like").sum()


def test_snapshots_never_use_events_at_or_after_their_timestamp() -> None:
    """Every feature row equals the features of the log truncated at its timestamp."""
    rng = np.random.default_rng(3)
    rows = [
        {"t": float(rng.uniform(0, 96)), "type": str(rng.choice(["view", "like", "skip"]))}
        for _ in range(60)
    ]
    ev = events_frame(rows)
    full = user_features(ev, NO_USERS, ["food"], P)
    for T in full["event_timestamp"]:
        cut = user_features(ev[ev["timestamp"] < T], NO_USERS, ["food"], P)
        a = (
            full[full["event_timestamp"] == T]
            .drop(columns=["rt_last_viewed", "u_category_share"])
            .reset_index(drop=True)
        )
        b = (
            cut[cut["event_timestamp"] == T]
            .drop(columns=["rt_last_viewed", "u_category_share"])
            .reset_index(drop=True)
        )
        pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------------------------------------
# params, errors, stage


def test_params_from_yaml_section_and_validation() -> None:
    p = FeatureParams.from_params(
        project_params(base={"seed": 7}, features={"lambda_decay": 0.2, "engagement_weights": {"like": 5}})
    )
    assert (p.lambda_decay, p.seed, p.engagement_weights["like"]) == (0.2, 7, 5.0)
    assert p.engagement_weights["share"] == P.engagement_weights["share"]  # the rest from params.yaml
    with pytest.raises(ValueError, match="days"):
        P.replace(decay_unit="hours")
    with pytest.raises(ValueError, match="lambda_decay"):
        P.replace(lambda_decay=-1.0)
    with pytest.raises(ValueError, match="unknown event types"):
        P.replace(engagement_weights={"zap": 1.0})


def test_empty_inputs_give_empty_tables_with_schema() -> None:
    ev = events_frame([{"t": 1}]).iloc[:0]
    out = user_features(ev, NO_USERS, ["food"], P)
    assert len(out) == 0 and list(out.columns) == USER_SCHEMA.names


def _write_interim(root: Path) -> None:
    rows = [
        {
            "t": float(h),
            "type": t,
            "user": u,
            "content": c,
            "category": "food" if c < "c2" else "pets",
            "ratio": 0.5,
        }
        for h, t, u, c in [
            (1, "view", "u1", "c1"),
            (1.2, "like", "u1", "c1"),
            (5, "view", "u2", "c2"),
            (30, "share", "u1", "c2"),
            (31, "view", "u2", "c1"),
            (50, "skip", "u1", "c3"),
            (51, "follow", "u2", "c3"),
        ]
    ]
    ev = events_frame(rows)
    ev["creator_id"] = ev["creator_id"].fillna("k1")
    paths = DataPaths(root)
    paths.interim.mkdir(parents=True)
    ev.to_parquet(paths.interim / "events.parquet")
    content_frame(
        [
            {"content": "c1", "upload": -2.0, "tags": ["#a"]},
            {"content": "c2", "creator": "k2"},
            {"content": "c3"},
        ]
    ).to_parquet(paths.interim / "content.parquet")
    NO_USERS.to_parquet(paths.interim / "users.parquet")


def test_run_writes_tables_meta_and_deterministic_metrics(tmp_path: Path) -> None:
    _write_interim(tmp_path)
    paths = DataPaths(tmp_path)
    params = project_params(base={"seed": 1}, features={"text_dim": 4})
    r = features_run(params, paths)
    first = (paths.metrics / "features.json").read_text()
    features_run(params, paths)
    assert (paths.metrics / "features.json").read_text() == first
    metrics = json.loads(first)
    assert "seconds" not in metrics and metrics["rows"] == r.rows
    assert r.rows == {"user": 6, "content": 5, "content_profile": 3, "creator": 6}
    for name, (schema, _) in TABLE_SCHEMAS.items():
        assert pq.read_schema(paths.features / FILES[name]).equals(schema, check_metadata=False)
    meta = json.loads((paths.features / META_FILE).read_text())
    assert meta["categories"] == ["food"] and meta["text_dim"] == 4 and meta["decay_unit"] == "days"
