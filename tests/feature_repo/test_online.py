"""Materialisation, train/serve consistency, pushes and the serving fast path (SQLite and Redis)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from components.features.columns import FILES
from components.features.context import RequestContext
from components.features.feast_repo import ONLINE_ENV
from components.features.item_cache import ItemFeatureCache, is_missing
from components.features.online import ServingFeatureFetcher, push_user_realtime
from components.features.point_in_time import request_columns, training_frame
from components.features.store import materialize, run_apply, run_materialize
from tests.feature_repo.conftest import redis_client
from tests.fixtures.frames import DAY, T0, H
from tests.fixtures.params import project_params

END = T0 + 4 * DAY  # last snapshot of the default log


def as_float(values: Any) -> np.ndarray:
    return pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(
        dtype="float64"
    )


def assert_same(name: str, offline: Any, online: Any) -> None:
    a, b = list(offline), list(online)
    if any(isinstance(v, list | np.ndarray) for v in a + b):
        for x, y in zip(a, b, strict=True):
            if x is None or y is None or (isinstance(x, float) and np.isnan(x)):
                assert (x is None or (isinstance(x, float) and np.isnan(x)) or len(x) == 0) and (
                    y is None or len(y) == 0
                ), name
            else:
                np.testing.assert_array_equal(
                    np.asarray(x, dtype="float32"), np.asarray(y, dtype="float32"), err_msg=name
                )
    else:
        np.testing.assert_array_equal(as_float(a), as_float(b), err_msg=name)


def test_materialize_is_incremental_with_overlap_and_records_what_it_wrote(
    feature_root, store_factory
) -> None:
    store = store_factory(feature_root)
    first = materialize(store, overlap=timedelta(hours=48))
    by_view = {v.view: v for v in first.views}
    users = pd.read_parquet(feature_root.features / FILES["user"])
    assert set(by_view) == {
        "content_profile",
        "content_stats",
        "creator_stats",
        "user_activity",
        "user_realtime",
    }
    assert by_view["user_activity"].rows == len(users) and by_view["user_activity"].entities == 3
    assert by_view["user_activity"].start == users["event_timestamp"].min().isoformat()
    assert (
        by_view["user_activity"].end == END.isoformat() and not by_view["user_activity"].incremental
    )

    again = {v.view: v for v in materialize(store, overlap=timedelta(hours=48)).views}
    ua = again["user_activity"]
    assert ua.incremental and ua.start == (END - 48 * H).isoformat() and ua.end == END.isoformat()
    assert ua.rows == int((users["event_timestamp"] >= END - 48 * H).sum())

    # late data: the features stage rewrites a snapshot inside the overlap -> the next run picks it up
    late = users.copy()
    late.loc[late["event_timestamp"] == END, "u_n_events"] = 999
    late.to_parquet(feature_root.features / FILES["user"], index=False)
    materialize(store, overlap=timedelta(hours=48), views=["user_activity"])
    got = store.get_online_features(
        features=["user_activity:u_n_events"], entity_rows=[{"user_id": "u1"}]
    ).to_dict()
    assert got["u_n_events"] == [999]


def test_materialize_stage_writes_range_rows_and_timing_apart(feature_root, monkeypatch) -> None:
    monkeypatch.delenv(ONLINE_ENV, raising=False)
    params = project_params(base={"seed": 1}, feast={"project": "stage", "materialize_overlap_hours": 24, "online_store": "sqlite"})
    applied = run_apply(params, feature_root)
    assert applied.online_store == "sqlite" and "ranker_v2" in applied.feature_services
    result = run_materialize(params, feature_root)
    record = json.loads((feature_root.metrics / "materialize.json").read_text())
    assert record["rows"] == result.rows > 0 and "seconds" not in record
    assert (
        record["views"][0]["start"] and record["views"][0]["end"] and record["overlap_hours"] == 24
    )
    assert "seconds" in json.loads(
        (feature_root.metrics / "materialize_throughput.json").read_text()
    )
    assert json.loads((feature_root.metrics / "feast_apply.json").read_text())["project"] == "stage"
    log = (
        (feature_root.root / "feature_repo" / "data" / "materialize_log.sqlite.jsonl")
        .read_text()
        .splitlines()
    )
    assert len(log) == 1 and json.loads(log[0])["rows"] == result.rows


def test_materialize_before_apply_fails_instead_of_writing_nothing(feature_root, monkeypatch) -> None:
    monkeypatch.delenv(ONLINE_ENV, raising=False)
    params = project_params(base={"seed": 1}, feast={"project": "never_applied", "online_store": "sqlite"})
    with pytest.raises(RuntimeError, match="no feature views registered"):
        run_materialize(params, feature_root)


def test_offline_and_online_paths_return_identical_values(
    feature_root, store_factory, online
) -> None:
    """Same FeatureService, same entity and time: get_historical_features == get_online_features."""
    store = store_factory(feature_root, online)
    materialize(store)
    at = END  # every row joined is within its view's TTL (online stores do not apply TTLs)
    pairs = [("u1", "c1"), ("u2", "c2"), ("u3", "c3"), ("u1", "c4")]
    lab = pd.DataFrame(
        {
            "user_id": [u for u, _ in pairs],
            "content_id": [c for _, c in pairs],
            "timestamp": [at] * len(pairs),
        }
    )
    lab["device_type"] = ["ios", "android", None, "web"]
    lab["network"] = ["wifi", "3g", "4g", None]
    offline = training_frame(store, lab, "ranker_v2")
    req = request_columns(offline["event_timestamp"], lab)
    rows = [
        {"user_id": u, "content_id": c, "creator_id": k, **r}
        for u, c, k, r in zip(
            offline["user_id"],
            offline["content_id"],
            offline["creator_id"],
            req.to_dict("records"),
            strict=True,
        )
    ]
    onl = store.get_online_features(
        features=store.get_feature_service("ranker_v2"), entity_rows=rows
    ).to_dict()
    names = [
        f.name
        for p in store.get_feature_service("ranker_v2").feature_view_projections
        for f in p.features
    ]
    assert len(names) > 100
    for name in names:
        assert_same(name, offline[name], onl[name])
    assert (
        offline.loc[0, "u_like_7d"] == 3
        and offline.loc[3, "c_n_view"] != offline.loc[3, "c_n_view"]
    )  # NaN: c4 unseen


def test_serving_fast_path_returns_the_training_values(feature_root, store_factory, online) -> None:
    """Fetcher (online user lookup + in-memory items + local on-demand code) == training frame,
    including TTL expiry at the request time (u3's real-time row is older than 2 days)."""
    store = store_factory(feature_root, online)
    materialize(store)
    items = ItemFeatureCache.from_offline(store, "ranker_v2")
    from_online = ItemFeatureCache.from_online(store, "ranker_v2", list(items.ids))
    assert from_online.columns == items.columns
    np.testing.assert_array_equal(from_online.matrix, items.matrix)
    for view in items.view_ts:
        np.testing.assert_array_equal(from_online.view_ts[view], items.view_ts[view])
    assert items.asof == END and items.matrix.dtype == np.float64
    assert {"c_text_vec_0", "c_visual_vec_2", "cr_followers", "c_like_rate"} <= set(items.columns)

    fetcher = ServingFeatureFetcher(store, "ranker_v2", items)
    at = END + 5 * H
    cands = ["c1", "c2", "c3", "c4"]
    for user, device, network in (("u1", "iPhone", "5g"), ("u3", None, "3g")):
        req = RequestContext(
            request_ts_s=int(at.timestamp()), utc_offset_min=0, device_type=device, network=network
        )
        got = fetcher.fetch(user, cands, req)
        lab = pd.DataFrame(
            {
                "user_id": user,
                "content_id": cands,
                "timestamp": at,
                "device_type": device,
                "network": network,
            }
        )
        offline = training_frame(store, lab, "ranker_v2")
        for name, value in got.user.items():
            if name in offline and name != "user_id":
                assert_same(name, [value] * len(cands), offline[name])
        for name, value in got.context.items():
            assert_same(name, [value] * len(cands), offline[name])
        for j, col in enumerate(got.item_columns):
            if col in offline:
                assert_same(col, got.items[:, j], offline[col])
            else:  # an element of a vector feature
                base, _, idx = col.rpartition("_")
                expected = [
                    v[int(idx)] if not is_missing(v) and len(v) > int(idx) else None
                    for v in offline[base]
                ]
                assert_same(col, got.items[:, j], expected)
        if user == "u3":
            assert (
                got.user["rt_events_1h"] is None and got.user["u_n_events"] == 2
            )  # TTL 2 d vs 30 d
    feast_online = store.get_online_features(
        features=["user_realtime:rt_events_1h"], entity_rows=[{"user_id": "u3"}]
    ).to_dict()
    assert feast_online["rt_events_1h"] == [0]  # not None: the raw online lookup ignores the TTL
    unknown = fetcher.fetch("u1", ["missing"], req)
    assert np.isnan(unknown.items).all()
    m = got.matrix()
    assert m.shape[0] == 4 and m.shape[1] > 100 and m.dtype == np.float64


def test_a_push_changes_what_the_next_serving_lookup_sees(
    feature_root, store_factory, online
) -> None:
    store = store_factory(feature_root, online)
    materialize(store)
    fetcher = ServingFeatureFetcher(
        store, "ranker_v2", ItemFeatureCache.from_offline(store, "ranker_v2")
    )
    req = RequestContext(request_ts_s=int((END + 1 * H).timestamp()))
    before = fetcher.fetch("u1", ["c1"], req)
    assert before.user["rt_events_1h"] == 1  # the view at 23:54
    now = END + 30 * pd.Timedelta(minutes=1)
    push_user_realtime(
        store,
        pd.DataFrame(
            {
                "user_id": ["u1"],
                "event_timestamp": [now],
                "rt_last_event_ts_s": [int(now.timestamp())],
                "rt_events_1h": [7],
                "rt_engagements_1h": [2],
                "rt_views_1h": [4],
                "rt_skips_1h": [1],
                "rt_last_viewed": [["c3", "c1"]],
            }
        ),
    )
    after = fetcher.fetch("u1", ["c1"], req)
    assert after.user["rt_events_1h"] == 7 and after.user["rt_views_1h"] == 4
    assert after.context["rt_hours_since_last_event"] == pytest.approx(0.5)
    assert before.context["rt_hours_since_last_event"] == pytest.approx(1 + 0.1)  # 23:54 on day 3
    assert after.user["u_n_events"] == before.user["u_n_events"]  # batch view untouched


def test_item_cache_refreshes_after_a_materialisation(feature_root, store_factory) -> None:
    store = store_factory(feature_root)
    materialize(store, end=(END - DAY).to_pydatetime())
    fetcher = ServingFeatureFetcher(
        store, "ranker_v2", ItemFeatureCache.from_offline(store, "ranker_v2")
    )
    col = fetcher.items.columns.index("c_n_view")
    stale = fetcher.items.gather(["c1"])[0, col]
    assert not fetcher.refresh_items()
    materialize(store)
    assert fetcher.refresh_items() and fetcher.items.asof == END
    assert fetcher.items.gather(["c1"])[0, col] > stale


@pytest.mark.redis
def test_redis_holds_the_materialised_rows_under_the_project_and_reads_back(
    feature_root, store_factory
) -> None:
    store = store_factory(feature_root, "redis")
    assert store.config.online_store.type == "redis"
    materialize(store)
    client = redis_client()
    keys = list(client.scan_iter(match=b"*" + store.project.encode()))
    assert len(keys) == 3 + 4 + 2  # users, contents, creators (one hash per entity)
    profile = pd.read_parquet(feature_root.features / FILES["content_profile"]).set_index(
        "content_id"
    )
    got = store.get_online_features(
        features=["content_profile:c_duration_s", "content_profile:c_text_vec"],
        entity_rows=[{"content_id": c} for c in profile.index],
    ).to_dict()
    assert got["c_duration_s"] == profile["c_duration_s"].tolist()
    for v, w in zip(got["c_text_vec"], profile["c_text_vec"], strict=True):
        np.testing.assert_array_equal(np.asarray(v, dtype="float32"), w)
    store.teardown()
    assert list(client.scan_iter(match=b"*" + store.project.encode())) == []
