"""Serving-side feature fetch: 1 user + 500 candidate items, p50 / p99, SQLite and Redis.

A synthetic catalogue (default 100k items, 5k creators, 2k users) is written directly as feature
rows with the stage's schemas into a temporary root, applied and materialised into each online
store. Measured per store:

* Feast ``get_online_features`` for 1 user (the service's user features);
* Feast ``get_online_features`` for 1 user + 500 items through the whole FeatureService (user,
  content, creator views and the on-demand views) - the naive serving path, fewer requests;
* the serving path: :class:`components.features.online.ServingFeatureFetcher` - user features from
  the online store per request, the 500 item rows gathered from the in-memory item matrix
  (TTL-checked), context computed locally - with and without assembling the model matrix.

Run: ``.venv/bin/python -m benchmarks.bench_feature_fetch`` (``--help`` for sizes). Redis is the
server at ``RECO_REDIS_URL`` (default 127.0.0.1:6379) in database 14 under a one-off project name;
its keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.catalog import DataPaths
from components.core.config import load_params
from components.core.settings import Settings
from components.features.columns import (
    CONTENT_PROFILE_COLUMNS,
    CONTENT_SCHEMA,
    CONTENT_STATS_COLUMNS,
    CREATOR_COLUMNS,
    CREATOR_SCHEMA,
    FILES,
    PROFILE_SCHEMA,
    TIMESTAMP,
    USER_ACTIVITY_COLUMNS,
    USER_REALTIME_COLUMNS,
    USER_SCHEMA,
)
from components.features.context import RequestContext
from components.features.feast_repo import DEFAULT_REDIS_URL, StoreSettings, open_store
from components.features.item_cache import ItemFeatureCache
from components.features.online import ServingFeatureFetcher
from components.features.store import apply, materialize

END_MS = int(np.datetime64("2026-01-19T00:00:00", "ms").astype("int64"))
DAY_MS = 86_400_000


def _column(kind: str, n: int, rng: np.random.Generator, name: str, dim: int = 16) -> pa.Array:
    if kind == "int":
        return pa.array(rng.integers(0, 500, n), type=pa.int64())
    if kind == "float":
        return pa.array(rng.random(n) * 10.0, type=pa.float64())
    if kind == "str":
        return pa.array([f"{name}_{i % 97}" for i in range(n)], type=pa.string())
    if kind == "float_list":
        values = pa.array(rng.standard_normal(n * dim).astype("float32"))
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype="int32") * dim), values)
    if kind == "str_list":
        values = pa.array(
            [f"video_{i:06d}" for i in rng.integers(0, 1000, n * 5)], type=pa.string()
        )
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype="int32") * 5), values)
    raise ValueError(kind)


def _table(
    schema: pa.Schema,
    ids: list[str],
    ts_ms: np.ndarray,
    rng: np.random.Generator,
    overrides: dict[str, pa.Array],
) -> pa.Table:
    n = len(ids)
    cols: list[pa.Array] = [
        pa.array(ids, type=pa.string()),
        pa.array(ts_ms.astype("datetime64[ms]")).cast(TIMESTAMP),
    ]
    spec = dict(
        USER_ACTIVITY_COLUMNS
        + USER_REALTIME_COLUMNS
        + CONTENT_STATS_COLUMNS
        + CONTENT_PROFILE_COLUMNS
        + CREATOR_COLUMNS
    )
    for f in list(schema)[2:]:
        cols.append(
            overrides[f.name] if f.name in overrides else _column(spec[f.name], n, rng, f.name)
        )
    return pa.Table.from_arrays(cols, schema=schema)


def write_catalogue(
    paths: DataPaths, n_items: int, n_creators: int, n_users: int, seed: int = 0
) -> None:
    """Feature rows for a synthetic catalogue: one stats snapshot per item / creator / user."""
    rng = np.random.default_rng(seed)
    out = paths.features
    out.mkdir(parents=True, exist_ok=True)
    items = [f"video_{i:06d}" for i in range(n_items)]
    creators = [f"creator_{i:05d}" for i in range(n_creators)]
    users = [f"user_{i:05d}" for i in range(n_users)]
    recent = END_MS - rng.integers(0, 3 * DAY_MS, n_items)
    pq.write_table(_table(CONTENT_SCHEMA, items, recent, rng, {}), out / FILES["content"])
    owner = pa.array([creators[i] for i in rng.integers(0, n_creators, n_items)], type=pa.string())
    has_visual = rng.random(n_items) < 0.5
    visual = _column("float_list", n_items, rng, "v")
    visual = pa.array(
        [v if h else None for v, h in zip(visual.to_pylist(), has_visual, strict=True)],
        type=pa.list_(pa.float32()),
    )
    profile = {
        "c_creator_id": owner,
        "c_category_idx": pa.array(rng.integers(0, 20, n_items), type=pa.int64()),
        "c_has_visual": pa.array(has_visual.astype("int64")),
        "c_visual_vec": visual,
        "c_audio_vec": pa.nulls(n_items, type=pa.list_(pa.float32())),
    }
    pq.write_table(
        _table(
            PROFILE_SCHEMA,
            items,
            END_MS - 30 * DAY_MS - rng.integers(0, 60 * DAY_MS, n_items),
            rng,
            profile,
        ),
        out / FILES["content_profile"],
    )
    pq.write_table(
        _table(
            CREATOR_SCHEMA, creators, END_MS - rng.integers(0, 2 * DAY_MS, n_creators), rng, {}
        ),
        out / FILES["creator"],
    )
    user_over = {
        "u_category_share": _column("float_list", n_users, rng, "s", dim=20),
        "rt_last_event_ts_s": pa.array(
            (END_MS // 1000) - rng.integers(0, 3600, n_users), type=pa.int64()
        ),
    }
    pq.write_table(
        _table(USER_SCHEMA, users, np.full(n_users, END_MS), rng, user_over),
        out / FILES["user"],
    )


def percentiles(fn: Callable[[int], Any], n: int, warmup: int = 20) -> dict[str, float]:
    for i in range(warmup):
        fn(i)
    lat = np.empty(n)
    for i in range(n):
        t = time.perf_counter_ns()
        fn(i)
        lat[i] = (time.perf_counter_ns() - t) / 1e6
    return {
        "n": n,
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "mean_ms": round(float(lat.mean()), 3),
    }


def bench_store(paths: DataPaths, online: str, args: argparse.Namespace) -> dict[str, Any]:
    redis_url = (Settings.from_env().redis_url or DEFAULT_REDIS_URL).split(",")[0] + ",db=14"
    settings = replace(
        StoreSettings.from_params(load_params()), project=f"bench{uuid.uuid4().hex[:8]}", online=online, redis_url=redis_url
    )
    store = open_store(paths, settings)
    results: dict[str, Any] = {"online_store": online}
    try:
        apply(store)
        t = time.perf_counter()
        mat = materialize(store)
        results["materialize_s"] = round(time.perf_counter() - t, 1)
        results["materialized_rows"] = mat.rows
        t = time.perf_counter()
        items = ItemFeatureCache.from_offline(store, args.service)
        results["item_cache_load_s"] = round(time.perf_counter() - t, 2)
        results["item_matrix"] = list(items.matrix.shape)
        fetcher = ServingFeatureFetcher(store, args.service, items)
        results["user_features"] = len(fetcher.user_refs)
        results["item_features"] = sum(
            len(p.features) for p, _ in ItemFeatureCache.item_projections(store, fetcher.service)
        )
        rng = np.random.default_rng(1)
        n_items = len(items.ids)
        item_ids = np.array(items.ids, dtype=object)
        users = [f"user_{i:05d}" for i in range(args.users)]
        cands = [list(item_ids[rng.integers(0, n_items, args.candidates)]) for _ in range(64)]
        owners = dict(zip(items.ids, items.creators, strict=True))
        req = RequestContext(
            request_ts_s=END_MS // 1000 + 1800, device_type="ios", network="wifi"
        )
        gc.collect()

        results["feast_1_user"] = percentiles(
            lambda i: store.get_online_features(
                features=fetcher.user_refs, entity_rows=[{"user_id": users[i % len(users)]}]
            ).to_dict(),
            args.requests,
        )
        svc = store.get_feature_service(args.service)
        request_fields = {
            "request_ts_s": req.request_ts_s,
            "utc_offset_min": 0,
            "device_type": "ios",
            "network": "wifi",
        }

        def feast_items(i: int) -> Any:
            u = users[i % len(users)]
            rows = [
                {"user_id": u, "content_id": c, "creator_id": owners[c], **request_fields}
                for c in cands[i % 64]
            ]
            return store.get_online_features(features=svc, entity_rows=rows).to_dict()

        results["feast_service_1_user_500_items"] = percentiles(
            feast_items, args.feast_item_requests, warmup=3
        )
        results["serving_fetch_1_user_500_items"] = percentiles(
            lambda i: fetcher.fetch(users[i % len(users)], cands[i % 64], req), args.requests
        )
        results["serving_fetch_and_matrix"] = percentiles(
            lambda i: fetcher.fetch(users[i % len(users)], cands[i % 64], req).matrix(),
            args.requests,
        )
        results["items_gather_only"] = percentiles(
            lambda i: items.gather(cands[i % 64], req.request_ts_s), args.requests
        )
        results["feature_columns"] = int(fetcher.fetch(users[0], cands[0], req).matrix().shape[1])
    finally:
        if online == "redis":
            store.teardown()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--creators", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--feast-item-requests", type=int, default=30)
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--service", default="ranker_v2")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_fetch_"))
    try:
        paths = DataPaths(tmp)
        t = time.perf_counter()
        write_catalogue(paths, args.items, args.creators, args.users)
        print(
            f"catalogue: {args.items} items, {args.creators} creators, {args.users} users in {time.perf_counter() - t:.1f} s"
        )
        all_results = []
        for online in args.stores.split(","):
            r = bench_store(paths, online.strip(), args)
            all_results.append(r)
            print(
                f"\n== {r['online_store']} (materialise {r['materialized_rows']} rows: {r['materialize_s']} s; "
                f"item matrix {r['item_matrix']} loaded in {r['item_cache_load_s']} s; "
                f"{r['user_features']} user + {r['item_features']} item features, {r['feature_columns']} model columns)"
            )
            for key in (
                "feast_1_user",
                "feast_service_1_user_500_items",
                "serving_fetch_1_user_500_items",
                "serving_fetch_and_matrix",
                "items_gather_only",
            ):
                v = r[key]
                print(
                    f"  {key:34s} n={v['n']:5d}  p50 {v['p50_ms']:9.3f} ms  p99 {v['p99_ms']:9.3f} ms"
                )
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(all_results, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
