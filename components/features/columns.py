"""The feature tables' schema: column specs, Arrow schemas and file names, in one place.

The column specs are the single source of the feature schemas: the batch computation writes
them (:func:`arrow_schema`), ``feature_repo/`` builds its Feast fields from them. Kinds: ``int``
-> Int64, ``float`` -> Float64, ``str`` -> String, ``float_list`` -> Array(Float32),
``str_list`` -> Array(String). Sliding windows are part of the schema, hence fixed here and not
in params.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from components.core.catalog import artefact
from components.core.frames import arrow_string_mapper
from components.core.schema import CONTENT_EVENT_TYPES, USER_EVENT_TYPES

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000

#: Sentinel the real-data adapters use for an id the data set does not have (no such creator).
UNKNOWN = "unknown"

#: Event types counted per content, views first: the order of the ``c_n_*`` feature columns.
CONTENT_COUNTED: tuple[str, ...] = ("view", *(t for t in CONTENT_EVENT_TYPES if t != "view"))
#: Sliding windows (label, length in ms). Part of the Feast schema, so fixed here, not in params.
WINDOWS: tuple[tuple[str, int], ...] = (
    ("1h", MS_PER_HOUR),
    ("24h", 24 * MS_PER_HOUR),
    ("7d", 7 * MS_PER_DAY),
)
DEVICES: tuple[str, ...] = ("ios", "android", "web", "other")
OSES: tuple[str, ...] = ("ios", "android", "windows", "macos", "linux", "other")

USER_ACTIVITY_COLUMNS: tuple[tuple[str, str], ...] = (
    *((f"u_{t}_{w}", "int") for t in USER_EVENT_TYPES for w, _ in WINDOWS),
    ("u_n_events", "int"),
    ("u_n_engagements", "int"),
    ("u_n_views", "int"),
    ("u_engagement_decayed", "float"),
    ("u_skip_rate", "float"),
    ("u_hide_rate", "float"),
    ("u_report_rate", "float"),
    ("u_hours_since_last_event", "float"),
    ("u_n_sessions", "int"),
    ("u_avg_session_duration_s", "float"),
    ("u_avg_contents_per_session", "float"),
    *((f"u_device_share_{d}", "float") for d in DEVICES),
    *((f"u_os_share_{o}", "float") for o in OSES),
    ("u_category_share", "float_list"),
    ("u_top_category_idx", "int"),
    ("u_top_category_share", "float"),
    ("u_account_age_days", "float"),
)
#: Fast-changing user features, also written by the serving side through the push source.
USER_REALTIME_COLUMNS: tuple[tuple[str, str], ...] = (
    ("rt_last_event_ts_s", "int"),
    ("rt_events_1h", "int"),
    ("rt_engagements_1h", "int"),
    ("rt_views_1h", "int"),
    ("rt_skips_1h", "int"),
    ("rt_last_viewed", "str_list"),
)
CONTENT_STATS_COLUMNS: tuple[tuple[str, str], ...] = (
    *((f"c_n_{t}", "int") for t in CONTENT_COUNTED),
    ("c_n_engagements", "int"),
    ("c_like_rate", "float"),
    ("c_comment_rate", "float"),
    ("c_share_rate", "float"),
    ("c_save_rate", "float"),
    ("c_completion_rate", "float"),
    ("c_skip_rate", "float"),
    ("c_avg_watch_ratio", "float"),
    ("c_views_24h", "int"),
    ("c_engagements_24h", "int"),
    ("c_engagements_prev_24h", "int"),
    ("c_engagement_growth", "float"),
    ("c_engagements_7d", "int"),
    ("c_age_hours", "float"),
)
CONTENT_PROFILE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("c_creator_id", "str"),
    ("c_category", "str"),
    ("c_category_idx", "int"),
    ("c_duration_s", "float"),
    ("c_duration_imputed", "int"),
    ("c_n_tags", "int"),
    ("c_n_hashtags", "int"),
    ("c_hashtag_freq_mean", "float"),
    ("c_hashtag_freq_max", "float"),
    ("c_has_visual", "int"),
    ("c_has_audio", "int"),
    ("c_text_vec", "float_list"),
    ("c_visual_vec", "float_list"),
    ("c_audio_vec", "float_list"),
)
CREATOR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cr_followers", "int"),
    ("cr_follows_7d", "int"),
    ("cr_unfollows_7d", "int"),
    ("cr_follow_rate", "float"),
    ("cr_unfollow_rate", "float"),
    ("cr_unfollow_ratio", "float"),
    ("cr_content_count", "int"),
    ("cr_n_views", "int"),
    ("cr_n_engagements", "int"),
    ("cr_avg_engagement", "float"),
    ("cr_engagement_rate", "float"),
)
CONTEXT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ctx_hour_sin", "float"),
    ("ctx_hour_cos", "float"),
    ("ctx_day_of_week", "int"),
    ("ctx_is_weekend", "int"),
    ("ctx_device_ios", "int"),
    ("ctx_device_android", "int"),
    ("ctx_device_web", "int"),
    ("ctx_network_mbps", "float"),
    ("ctx_network_tier", "int"),
)
#: Request fields the context / recency features are computed from.
REQUEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("request_ts_s", "int"),
    ("utc_offset_min", "int"),
    ("device_type", "str"),
    ("network", "str"),
)
RECENCY_COLUMNS: tuple[tuple[str, str], ...] = (("rt_hours_since_last_event", "float"),)

_ARROW_KIND: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "float_list": pa.list_(pa.float32()),
    "str_list": pa.list_(pa.string()),
}
TIMESTAMP = pa.timestamp("ms", tz="UTC")


def arrow_schema(key: str, columns: Sequence[tuple[str, str]]) -> pa.Schema:
    """Arrow schema of a feature table: entity key, ``event_timestamp``, then the features."""
    return pa.schema(
        [
            pa.field(key, pa.string(), nullable=False),
            pa.field("event_timestamp", TIMESTAMP, nullable=False),
        ]
        + [pa.field(n, _ARROW_KIND[k]) for n, k in columns]
    )


USER_SCHEMA = arrow_schema("user_id", USER_ACTIVITY_COLUMNS + USER_REALTIME_COLUMNS)
CONTENT_SCHEMA = arrow_schema("content_id", CONTENT_STATS_COLUMNS)
PROFILE_SCHEMA = arrow_schema("content_id", CONTENT_PROFILE_COLUMNS)
CREATOR_SCHEMA = arrow_schema("creator_id", CREATOR_COLUMNS)

#: Output file names in the features folder, from the catalogue's ``features_<table>`` entries.
FILES: dict[str, str] = {
    name: artefact(f"features_{name}").relative().name
    for name in ("user", "content", "content_profile", "creator")
}
META_FILE = artefact("features_meta").relative().name

#: Each table's schema and entity key, by the table's name in :data:`FILES`.
TABLE_SCHEMAS: dict[str, tuple[pa.Schema, str]] = {
    "user": (USER_SCHEMA, "user_id"),
    "content": (CONTENT_SCHEMA, "content_id"),
    "content_profile": (PROFILE_SCHEMA, "content_id"),
    "creator": (CREATOR_SCHEMA, "creator_id"),
}


def empty_frame(schema: pa.Schema) -> pd.DataFrame:
    """A feature table without rows (no activity of its kind)."""
    return pa.Table.from_pylist([], schema=schema).to_pandas()


def feature_frame(
    key: str, ids: np.ndarray, t: np.ndarray, cols: Mapping[str, Any], schema: pa.Schema
) -> pd.DataFrame:
    """Assemble a feature frame in schema order (list columns stay Arrow-backed until written)."""
    arrays: list[Any] = [
        pa.array(ids, type=pa.string()),
        pa.array(t.astype("datetime64[ms]"), type=pa.timestamp("ms")).cast(TIMESTAMP),
    ]
    for f in schema:
        if f.name in (key, "event_timestamp"):
            continue
        v = cols[f.name]
        arrays.append(
            v if isinstance(v, pa.Array) else pa.array(np.asarray(v), type=f.type, from_pandas=True)
        )
    table = pa.Table.from_arrays(arrays, schema=schema)
    return table.to_pandas(types_mapper=arrow_string_mapper)
