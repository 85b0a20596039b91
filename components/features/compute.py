"""Feature computation: user, content and creator features as snapshots; request-time context.

Snapshot semantics (no look-ahead by construction)
    Every entity gets one feature row per snapshot period in which it had activity (default: one
    UTC day, ``features.snapshot_hours: 24``). The row is stamped ``event_timestamp = T``, the end
    of that period, and is computed from the entity's events with ``timestamp < T`` only. A
    point-in-time join (Feast: latest row with ``event_timestamp <= label time``) therefore never
    sees an event at or after the label. Sliding windows (1 h, 24 h, 7 d) end at ``T``; between two
    snapshots a value is as of the last snapshot. Fresher user values reach serving through the
    push source (see ``feature_repo/``); the request-time parts (hour of day, recency at request
    time) are on-demand features computed identically offline and online from
    :func:`context_frame` and :func:`recency_frame`.

Definitions (``T`` = snapshot time; counts are over the entity's events before ``T``)
    * engagement = ``like, comment, share, follow, save`` (:data:`components.core.schema.ENGAGEMENT_TYPES`);
      exposures = ``view + skip`` (every impression ends in a view or a skip).
    * user recency-weighted engagement = ``sum(w[type] * exp(-lambda_decay * age_days))`` over
      engagement-weighted events, age in **days** (``features.lambda_decay``, per day).
    * user category share = engagements on contents of category ``c`` / engagements on contents
      with a category, as a vector over the category vocabulary (``feature_meta.json``).
    * skip / hide / report rate = count / exposures (NaN without exposures).
    * sessions (preprocess ``session_id``) are cut at ``T``: a session still open at ``T``
      counts with its events before ``T``; average duration = (last - first event) per session.
    * content rates per view (like, comment, share, save, completion); skip rate per exposure;
      average watch ratio over ``view`` events; growth = ``(e[T-g, T) - e[T-2g, T-g)) /
      max(e[T-2g, T-g), 1)`` with ``g = growth_window_hours``; age = hours since upload.
    * creator followers = follows - unfollows (floored at 0: the log does not hold followers
      gained before it starts); follow / unfollow rates per day over ``creator_rate_window_days``;
      content count = contents available before ``T``; average engagement = engagements
      (like, comment, share, save) on the creator's contents per content; engagement rate per view.
    * content profile (static, stamped when the content became available: upload time, else its
      first event): category, duration, tag / hashtag counts, hashtag document frequency (share
      of the catalogue carrying the hashtag; mean and max over the content's hashtags), a TF-IDF
      vector of description + tags reduced with truncated SVD (``text_dim``), and the visual /
      audio embeddings when the data has them. IDF, SVD and hashtag frequencies are fitted on
      the whole catalogue: corpus statistics, not labels.

Vectorised on sorted arrays: each event kind is a sorted ``entity * span + time`` key and every
count "before T" is one ``np.searchsorted``; sums use prefix sums. The decayed sum is a
recurrence between an entity's consecutive snapshots, ``S_k = S_{k-1} exp(-lambda dt) + D_k``,
run as one vectorised step per snapshot period (tens to a few thousand steps), which stays exact
for any span (a prefix sum of ``exp(lambda t)`` overflows after ~700 / lambda days). TF-IDF and
SVD are scikit-learn's; no library computes point-in-time snapshot aggregates, hence this module.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.catalog import DataPaths, artefact
from components.core.config import Params, stage_context, stage_parser
from components.core.frames import arrow_string_mapper, codes_of
from components.core.io import atomic_write_json, write_metrics
from components.core.schema import (
    CONSUMPTION_TYPES,
    CONTENT_ENGAGEMENT_TYPES,
    CONTENT_EVENT_TYPES,
    CREATOR_TYPES,
    ENGAGEMENT_TYPES,
    EVENT_TYPES,
    USER_EVENT_TYPES,
)
from components.data.preprocess import DEVICE_ALIASES, NETWORK_ALIASES

log = logging.getLogger(__name__)

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
#: Nominal downlink per network type (Mb/s) and an ordinal tier; unknown -> NaN / 0.
NETWORK_MBPS: dict[str, float] = {"2g": 0.1, "3g": 2.0, "4g": 20.0, "wifi": 50.0, "5g": 100.0}
NETWORK_TIER: dict[str, int] = {"2g": 1, "3g": 2, "4g": 3, "wifi": 4, "5g": 5}

# ---------------------------------------------------------------------------------------------
# Column specs: the single source of the feature schemas (feature_repo/ builds Feast fields here).
# kinds: int -> Int64, float -> Float64, str -> String, float_list -> Array(Float32),
# str_list -> Array(String).

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


@dataclass(frozen=True)
class FeatureParams:
    """The ``features`` section of params.yaml (plus ``base.seed``)."""

    snapshot_hours: float
    lambda_decay: float  # per day: weight = exp(-lambda_decay * age_days)
    decay_unit: str
    growth_window_hours: float
    creator_rate_window_days: float
    last_n_viewed: int
    max_categories: int
    text_dim: int
    tfidf_max_features: int
    engagement_weights: Mapping[str, float]
    seed: int

    def __post_init__(self) -> None:
        if self.decay_unit != "days":
            raise ValueError(f"features.decay_unit must be 'days', got {self.decay_unit!r}")
        if self.lambda_decay < 0 or self.snapshot_hours <= 0 or self.growth_window_hours <= 0:
            raise ValueError("features: lambda_decay must be >= 0, snapshot/growth windows > 0")
        if self.last_n_viewed < 0 or self.text_dim < 1 or self.max_categories < 1:
            raise ValueError("features: last_n_viewed >= 0, text_dim >= 1, max_categories >= 1")
        unknown = set(self.engagement_weights) - set(USER_EVENT_TYPES)
        if unknown:
            raise ValueError(f"features.engagement_weights: unknown event types {sorted(unknown)}")

    @property
    def period_ms(self) -> int:
        return round(self.snapshot_hours * MS_PER_HOUR)

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> FeatureParams:
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.features.model_dump())


# ---------------------------------------------------------------------------------------------
# Sorted timelines


def _ms(ts: pd.Series) -> np.ndarray:
    return ts.to_numpy(dtype="datetime64[ms]").astype("int64")


class _Clock:
    """Maps (entity code, time) to one sortable int64 key: ``code * span + (t - t0)``."""

    def __init__(self, t_min: int, t_max: int, n_codes: int) -> None:
        self.t0 = int(t_min)
        self.span = int(t_max) - int(t_min) + 1
        if n_codes * self.span >= 2**62:
            raise ValueError("time span x entities too large for int64 keys")

    def key(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        return codes.astype("int64") * self.span + np.clip(t - self.t0, 0, self.span)


class _Timeline:
    """Events of one kind sorted by (entity, time); counts and sums "before t" by binary search."""

    def __init__(self, clock: _Clock, codes: np.ndarray, ts: np.ndarray) -> None:
        self.clock = clock
        key = clock.key(codes, ts)
        self.order = np.argsort(key, kind="stable")
        self.keys = key[self.order]

    def pos(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Index (in sorted order) one past the entity's last event with time < t."""
        return np.searchsorted(self.keys, self.clock.key(codes, t), side="left")

    def start(self, codes: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.keys, codes.astype("int64") * self.clock.span, side="left")

    def count(
        self, codes: np.ndarray, t_hi: np.ndarray, t_lo: np.ndarray | None = None
    ) -> np.ndarray:
        """Events with ``t_lo <= time < t_hi`` (all before ``t_hi`` without ``t_lo``)."""
        lo = self.start(codes) if t_lo is None else self.pos(codes, t_lo)
        return (self.pos(codes, t_hi) - lo).astype("int64")

    def prefix(self, values: np.ndarray) -> np.ndarray:
        """Prefix sums of per-event values in sorted order (length n + 1)."""
        return np.concatenate([[0.0], np.cumsum(values[self.order], dtype="float64")])

    def total(self, prefix: np.ndarray, codes: np.ndarray, t_hi: np.ndarray) -> np.ndarray:
        return prefix[self.pos(codes, t_hi)] - prefix[self.start(codes)]


@dataclass(frozen=True)
class _Snapshots:
    """Unique (entity, period end) pairs sorted by entity then time, and each event's row."""

    codes: np.ndarray  # entity code per snapshot
    t: np.ndarray  # snapshot time (ms), end of the period
    event_row: np.ndarray  # snapshot row of each input event


def _snapshots(codes: np.ndarray, ts: np.ndarray, period_ms: int) -> _Snapshots:
    period = np.floor_divide(ts, period_ms)
    p0 = int(period.min()) if len(period) else 0
    n_periods = int(period.max()) - p0 + 1 if len(period) else 1
    comp = codes.astype("int64") * n_periods + (period - p0)
    uniq, inverse = np.unique(comp, return_inverse=True)
    snap_codes = uniq // n_periods
    snap_t = (uniq % n_periods + p0 + 1) * period_ms
    return _Snapshots(codes=snap_codes, t=snap_t, event_row=inverse.reshape(-1))


def _decayed(snap: _Snapshots, ts: np.ndarray, value: np.ndarray, lam_per_ms: float) -> np.ndarray:
    """``sum(value * exp(-lam * (T - t)))`` over an entity's events before each snapshot ``T``.

    Within a period every event belongs to that period's snapshot, so the value is the previous
    snapshot's decayed by the gap plus this period's own (at most one period old) contributions.
    """
    n = len(snap.t)
    own = np.bincount(
        snap.event_row,
        weights=value * np.exp(-lam_per_ms * (snap.t[snap.event_row] - ts)),
        minlength=n,
    )
    out = np.zeros(n, dtype="float64")
    if n == 0:
        return out
    state = np.zeros(int(snap.codes.max()) + 1, dtype="float64")
    last = np.zeros_like(state)
    by_time = np.argsort(snap.t, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(snap.t[by_time]) != 0, True])
    for a, b in itertools.pairwise(bounds):
        rows = by_time[a:b]
        c, t = snap.codes[rows], snap.t[rows[0]]
        state[c] = state[c] * np.exp(-lam_per_ms * (t - last[c])) + own[rows]
        last[c] = t
        out[rows] = state[c]
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype="float64")
    den = np.asarray(den, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _list_array(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets.astype("int32")), values)


def _last_n(
    tl: _Timeline, codes: np.ndarray, t: np.ndarray, items: np.ndarray, names: pa.Array, n: int
) -> pa.Array:
    """Per snapshot, the ``n`` most recent event items before ``t`` (most recent first)."""
    hi = tl.pos(codes, t)
    k = np.minimum(hi - tl.start(codes), n)
    offsets = np.concatenate([[0], np.cumsum(k)])
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], k)
    idx = np.repeat(hi - 1, k) - within
    values = names.take(pa.array(items[tl.order][idx]))
    return _list_array(offsets, values)


def _codes_in(
    values: pd.Series, vocab: Sequence[str], other: int | None = None, null: int = -1
) -> np.ndarray:
    """Index of each value in ``vocab``: ``other`` (default -1) when absent, ``null`` when null."""
    codes, uniques = codes_of(values)
    lookup = {v: i for i, v in enumerate(vocab)}
    fallback = -1 if other is None else other
    mapped = np.array([lookup.get(str(u), fallback) for u in uniques] + [null], dtype="int64")
    return mapped[codes]


@dataclass(frozen=True)
class _Events:
    """Integer-coded view of the event log (no per-row Python objects)."""

    ts: np.ndarray  # ms since epoch
    etype: np.ndarray  # index into EVENT_TYPES, -1 for anything else
    user: np.ndarray
    user_ids: list[Any]
    content: np.ndarray  # -1 where null
    content_ids: list[Any]

    @classmethod
    def of(cls, events: pd.DataFrame) -> _Events:
        user, user_ids = codes_of(events["user_id"])
        content, content_ids = codes_of(events["content_id"])
        return cls(
            ts=_ms(events["timestamp"]),
            etype=_codes_in(events["event_type"], EVENT_TYPES),
            user=user,
            user_ids=user_ids,
            content=content,
            content_ids=content_ids,
        )

    def type_in(self, types: Sequence[str]) -> np.ndarray:
        return np.isin(self.etype, [EVENT_TYPES.index(t) for t in types])


def _str_or_none(s: pd.Series) -> np.ndarray:
    """Text column as an object array of ``str`` / ``None``."""
    return np.array(
        [
            None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in s
        ],
        dtype=object,
    )


def _strings(uniques: Sequence[Any]) -> pa.Array:
    return pa.array([None if u is None else str(u) for u in uniques], type=pa.string())


# ---------------------------------------------------------------------------------------------
# Vocabularies


def category_vocab(content: pd.DataFrame, max_categories: int) -> list[str]:
    """Categories by catalogue size (ties by name); beyond ``max_categories - 1`` -> ``other``."""
    counts = content["category"].astype("string").fillna(UNKNOWN).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    names = [str(k) for k, _ in ranked]
    if len(names) > max_categories:
        names = [*names[: max_categories - 1], "other"]
    return names


# ---------------------------------------------------------------------------------------------
# User features


def user_features(
    events: pd.DataFrame,
    users: pd.DataFrame,
    categories: Sequence[str],
    p: FeatureParams,
) -> pd.DataFrame:
    """One row per (user, active snapshot period): activity + real-time columns, see module doc."""
    e = _Events.of(events)
    keep = np.flatnonzero(e.type_in(USER_EVENT_TYPES))
    if len(keep) == 0:
        return pa.Table.from_pylist([], schema=USER_SCHEMA).to_pandas()
    ucodes, ts, etype = e.user[keep], e.ts[keep], e.etype[keep]
    clock = _Clock(int(ts.min()), int(ts.max()), len(e.user_ids))
    snap = _snapshots(ucodes, ts, p.period_ms)
    sc, st = snap.codes, snap.t
    out: dict[str, Any] = {}

    def timeline(mask: np.ndarray) -> _Timeline:
        return _Timeline(clock, ucodes[mask], ts[mask])

    totals: dict[str, np.ndarray] = {}
    window_sums: dict[tuple[str, str], np.ndarray] = {}
    for typ in USER_EVENT_TYPES:
        tl = timeline(etype == EVENT_TYPES.index(typ))
        totals[typ] = tl.count(sc, st)
        for label, w in WINDOWS:
            window_sums[(typ, label)] = tl.count(sc, st, st - w)
            out[f"u_{typ}_{label}"] = window_sums[(typ, label)]
    exposures = totals["view"] + totals["skip"]
    out["u_n_events"] = sum(totals.values())
    out["u_n_engagements"] = sum(totals[t] for t in ENGAGEMENT_TYPES)
    out["u_n_views"] = totals["view"]
    weights = np.array([p.engagement_weights.get(t, 0.0) for t in EVENT_TYPES] + [0.0])
    out["u_engagement_decayed"] = _decayed(snap, ts, weights[etype], p.lambda_decay / MS_PER_DAY)
    out["u_skip_rate"] = _ratio(totals["skip"], exposures)
    out["u_hide_rate"] = _ratio(totals["hide"], exposures)
    out["u_report_rate"] = _ratio(totals["report"], exposures)

    # last event and sessions (a session still open at T counts with its events before T)
    all_tl = _Timeline(clock, ucodes, ts)
    o = all_tl.order
    last = all_tl.pos(sc, st) - 1
    first = all_tl.start(sc)
    s_ts = ts[o]
    out["u_hours_since_last_event"] = (st - s_ts[last]) / MS_PER_HOUR
    s_sid = events["session_id"].to_numpy(dtype="int64")[keep][o]
    s_code = ucodes[o]
    new = np.r_[True, (s_sid[1:] != s_sid[:-1]) | (s_code[1:] != s_code[:-1])]
    g = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(s_ts)] - 1
    consumed = np.isin(
        etype[o], [EVENT_TYPES.index(t) for t in CONSUMPTION_TYPES]
    )
    s_content = e.content[keep][o]
    pair = np.where(consumed & (s_content >= 0), g * (len(e.content_ids) + 1) + s_content, -1)
    fresh = np.zeros(len(pair), dtype="int64")  # first view of a content within its session
    valid = np.flatnonzero(pair >= 0)
    if len(valid):
        _, first_idx = np.unique(pair[valid], return_index=True)
        fresh[valid[first_idx]] = 1
    cum_fresh = np.concatenate([[0], np.cumsum(fresh)])
    sess_start = s_ts[starts]
    cum_dur = np.concatenate([[0], np.cumsum(s_ts[ends] - sess_start)])
    cum_cont = np.concatenate([[0], np.cumsum(cum_fresh[ends + 1] - cum_fresh[starts])])
    gi, g0 = g[last], g[first]
    n_sessions = gi - g0 + 1
    dur = (cum_dur[gi] - cum_dur[g0]) + (s_ts[last] - sess_start[gi])
    cont = (cum_cont[gi] - cum_cont[g0]) + (cum_fresh[last + 1] - cum_fresh[starts[gi]])
    out["u_n_sessions"] = n_sessions.astype("int64")
    out["u_avg_session_duration_s"] = dur / n_sessions / 1000.0
    out["u_avg_contents_per_session"] = cont / n_sessions

    # device / OS mix (preprocess has already mapped spellings onto these vocabularies)
    for col, vocab, prefix in (
        ("device_type", DEVICES, "u_device_share_"),
        ("os", OSES, "u_os_share_"),
    ):
        vcodes = _codes_in(events[col], vocab, other=vocab.index("other"))[keep]
        counts = [timeline(vcodes == k).count(sc, st) for k in range(len(vocab))]
        den = np.sum(counts, axis=0)
        for name, cnt in zip(vocab, counts, strict=True):
            out[f"{prefix}{name}"] = _ratio(cnt, den)

    # category engagement shares
    other = categories.index("other") if "other" in categories else None
    unknown = categories.index(UNKNOWN) if UNKNOWN in categories else -1
    cat = _codes_in(events["category"], categories, other=other, null=unknown)[keep]
    eng_mask = np.isin(etype, [EVENT_TYPES.index(t) for t in ENGAGEMENT_TYPES]) & (e.content[keep] >= 0)
    width = len(categories)
    shares = np.zeros((len(st), width), dtype="float64")
    for k in range(width):
        m = eng_mask & (cat == k)
        if m.any():
            shares[:, k] = timeline(m).count(sc, st)
    cat_total = shares.sum(axis=1)
    shares = np.divide(
        shares, cat_total[:, None], out=np.zeros_like(shares), where=cat_total[:, None] > 0
    )
    out["u_category_share"] = _list_array(
        np.arange(len(st) + 1) * width, pa.array(shares.astype("float32").reshape(-1))
    )
    has_cat = cat_total > 0
    out["u_top_category_idx"] = np.where(has_cat, shares.argmax(axis=1), -1).astype("int64")
    out["u_top_category_share"] = np.where(has_cat, shares.max(axis=1), np.nan)

    ids = [str(u) for u in e.user_ids]
    sig = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[ms]")
    if len(users) and "signup_timestamp" in users:
        known = users.dropna(subset=["signup_timestamp"]).drop_duplicates("user_id")
        pos = pd.Index(known["user_id"].astype(str)).get_indexer(pd.Index(ids))
        vals = known["signup_timestamp"].to_numpy(dtype="datetime64[ms]")
        sig = np.where(pos >= 0, vals[np.maximum(pos, 0)] if len(vals) else sig, sig)
    sig = sig[sc]
    out["u_account_age_days"] = np.where(
        np.isnat(sig), np.nan, (st - sig.astype("int64")) / MS_PER_DAY
    )

    # real-time view (the push source overwrites these online)
    out["rt_last_event_ts_s"] = np.floor_divide(s_ts[last], 1000).astype("int64")
    out["rt_events_1h"] = sum(window_sums[(t, "1h")] for t in USER_EVENT_TYPES)
    out["rt_engagements_1h"] = sum(window_sums[(t, "1h")] for t in ENGAGEMENT_TYPES)
    out["rt_views_1h"] = window_sums[("view", "1h")]
    out["rt_skips_1h"] = window_sums[("skip", "1h")]
    views = (etype == EVENT_TYPES.index("view")) & (e.content[keep] >= 0)
    out["rt_last_viewed"] = _last_n(
        timeline(views), sc, st, e.content[keep][views], _strings(e.content_ids), p.last_n_viewed
    )
    return _frame("user_id", np.array(ids, dtype=object)[sc], st, out, USER_SCHEMA)


def _frame(
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


# ---------------------------------------------------------------------------------------------
# Content features


def _availability(e: _Events, content: pd.DataFrame) -> np.ndarray:
    """When each catalogue content became available (ms): the earlier of its upload time and its
    first event; without either, the start (UTC day) of the event log."""
    ids = content["content_id"].astype(str).to_numpy(dtype=object)
    upload = content["upload_timestamp"].to_numpy(dtype="datetime64[ms]")
    avail = np.where(np.isnat(upload), np.iinfo("int64").max, upload.astype("int64"))
    has = e.content >= 0
    if has.any():
        first = pd.Series(e.ts[has]).groupby(e.content[has]).min()
        pos = pd.Index([str(c) for c in e.content_ids]).get_indexer(pd.Index(ids))
        firsts = np.full(len(e.content_ids), np.iinfo("int64").max, dtype="int64")
        firsts[first.index.to_numpy()] = first.to_numpy()
        avail = np.minimum(
            avail, np.where(pos >= 0, firsts[np.maximum(pos, 0)], np.iinfo("int64").max)
        )
    floor = int(np.floor_divide(e.ts.min(), MS_PER_DAY) * MS_PER_DAY) if len(e.ts) else 0
    return np.where(avail == np.iinfo("int64").max, floor, avail).astype("int64")


def content_features(events: pd.DataFrame, content: pd.DataFrame, p: FeatureParams) -> pd.DataFrame:
    """One row per (content, active snapshot period): engagement totals, rates, growth, age."""
    e = _Events.of(events)
    keep = np.flatnonzero(e.content >= 0)
    if len(keep) == 0:
        return pa.Table.from_pylist([], schema=CONTENT_SCHEMA).to_pandas()
    ccodes, ts, etype = e.content[keep], e.ts[keep], e.etype[keep]
    clock = _Clock(int(ts.min()), int(ts.max()), len(e.content_ids))
    snap = _snapshots(ccodes, ts, p.period_ms)
    sc, st = snap.codes, snap.t

    def timeline(mask: np.ndarray) -> _Timeline:
        return _Timeline(clock, ccodes[mask], ts[mask])

    out: dict[str, Any] = {}
    totals: dict[str, np.ndarray] = {}
    view_tl = timeline(etype == EVENT_TYPES.index("view"))
    for typ in CONTENT_COUNTED:
        tl = view_tl if typ == "view" else timeline(etype == EVENT_TYPES.index(typ))
        totals[typ] = tl.count(sc, st)
        out[f"c_n_{typ}"] = totals[typ]
    eng_tl = timeline(np.isin(etype, [EVENT_TYPES.index(t) for t in ENGAGEMENT_TYPES]))
    out["c_n_engagements"] = eng_tl.count(sc, st)
    views = totals["view"]
    for name, typ in (
        ("like", "like"),
        ("comment", "comment"),
        ("share", "share"),
        ("save", "save"),
        ("completion", "complete_view"),
    ):
        out[f"c_{name}_rate"] = _ratio(totals[typ], views)
    out["c_skip_rate"] = _ratio(totals["skip"], views + totals["skip"])
    wr = events["watch_ratio"].to_numpy(dtype="float64")[keep]
    wmask = (etype == EVENT_TYPES.index("view")) & np.isfinite(wr)
    wtl = timeline(wmask)
    out["c_avg_watch_ratio"] = _ratio(wtl.total(wtl.prefix(wr[wmask]), sc, st), wtl.count(sc, st))
    g = round(p.growth_window_hours * MS_PER_HOUR)
    recent = eng_tl.count(sc, st, st - g)
    before = eng_tl.count(sc, st - g, st - 2 * g)
    out["c_views_24h"] = view_tl.count(sc, st, st - g)
    out["c_engagements_24h"] = recent
    out["c_engagements_prev_24h"] = before
    out["c_engagement_growth"] = (recent - before) / np.maximum(before, 1)
    out["c_engagements_7d"] = eng_tl.count(sc, st, st - 7 * MS_PER_DAY)
    ids = np.array([str(c) for c in e.content_ids], dtype=object)
    c = content.drop_duplicates("content_id", keep="first")
    pos = pd.Index(c["content_id"].astype(str)).get_indexer(pd.Index(ids))
    up_all = c["upload_timestamp"].to_numpy(dtype="datetime64[ms]")
    up = (
        np.where(pos >= 0, up_all[np.maximum(pos, 0)], np.datetime64("NaT"))
        if len(c)
        else np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[ms]")
    )
    up = up.astype("datetime64[ms]")[sc]
    age = np.maximum(st - up.astype("int64"), 0) / MS_PER_HOUR
    out["c_age_hours"] = np.where(np.isnat(up), np.nan, age)
    return _frame("content_id", ids[sc], st, out, CONTENT_SCHEMA)


_HASHTAG_RE = re.compile(r"#(\w+)", re.UNICODE)


def _text_vectors(docs: list[str], p: FeatureParams) -> np.ndarray:
    """TF-IDF of each document reduced to ``text_dim`` dimensions (L2-normalised; zeros if no text)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    out = np.zeros((len(docs), p.text_dim), dtype="float32")
    if not any(d.strip() for d in docs):
        return out
    try:
        tfidf = TfidfVectorizer(max_features=p.tfidf_max_features, sublinear_tf=True).fit_transform(
            docs
        )
    except ValueError:  # empty vocabulary (only stop words / one-letter tokens)
        return out
    k = min(p.text_dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
    if k < 1:
        dense = normalize(tfidf).toarray()[:, : p.text_dim]
        out[:, : dense.shape[1]] = dense
        return out
    reduced = TruncatedSVD(n_components=k, random_state=p.seed).fit_transform(tfidf)
    out[:, :k] = normalize(reduced).astype("float32")
    return out


def _vector_column(values: pd.Series) -> pa.Array:
    arr = pa.array(values.tolist(), type=pa.list_(pa.float32()), from_pandas=True)
    return arr


def content_profile(
    events: pd.DataFrame, content: pd.DataFrame, categories: Sequence[str], p: FeatureParams
) -> pd.DataFrame:
    """One static row per catalogue content, stamped when it became available."""
    c = content.drop_duplicates("content_id", keep="first").reset_index(drop=True)
    ids = c["content_id"].astype(str).to_numpy(dtype=object)
    avail = _availability(_Events.of(events), c)
    tags = [list(t) if isinstance(t, list | np.ndarray) else [] for t in c["tags"].tolist()]
    desc = c["description"].astype("string").fillna("").astype(str).tolist()
    hashtags = [
        {str(t).lstrip("#").lower() for t in tl if str(t).startswith("#")}
        | {h.lower() for h in _HASHTAG_RE.findall(d)}
        for tl, d in zip(tags, desc, strict=True)
    ]
    df_counts: dict[str, int] = {}
    for hs in hashtags:
        for h in hs:
            df_counts[h] = df_counts.get(h, 0) + 1
    n_items = max(len(c), 1)
    freqs = [[df_counts[h] / n_items for h in hs] for hs in hashtags]
    docs = [
        d + " " + " ".join(str(t).lstrip("#") for t in tl) for d, tl in zip(desc, tags, strict=True)
    ]
    text = _text_vectors(docs, p)
    other = categories.index("other") if "other" in categories else None
    category = c["category"].astype("string").fillna(UNKNOWN)
    visual = c["visual_embedding"] if "visual_embedding" in c else pd.Series([None] * len(c))
    audio = c["audio_embedding"] if "audio_embedding" in c else pd.Series([None] * len(c))
    has_visual = np.array([v is not None and len(v) > 0 for v in visual], dtype="int64")
    has_audio = np.array([v is not None and len(v) > 0 for v in audio], dtype="int64")
    out: dict[str, Any] = {
        "c_creator_id": _str_or_none(c["creator_id"]),
        "c_category": category.to_numpy(dtype=object),
        "c_category_idx": _codes_in(category, categories, other=other),
        "c_duration_s": pd.to_numeric(c["duration_s"], errors="coerce").to_numpy(dtype="float64"),
        "c_duration_imputed": c.get("duration_imputed", pd.Series(False, index=c.index))
        .fillna(False)
        .to_numpy(dtype="int64"),
        "c_n_tags": np.array([len(t) for t in tags], dtype="int64"),
        "c_n_hashtags": np.array([len(h) for h in hashtags], dtype="int64"),
        "c_hashtag_freq_mean": np.array([float(np.mean(f)) if f else 0.0 for f in freqs]),
        "c_hashtag_freq_max": np.array([float(np.max(f)) if f else 0.0 for f in freqs]),
        "c_has_visual": has_visual,
        "c_has_audio": has_audio,
        "c_text_vec": _list_array(np.arange(len(c) + 1) * p.text_dim, pa.array(text.reshape(-1))),
        "c_visual_vec": _vector_column(visual.where(has_visual.astype(bool), None)),
        "c_audio_vec": _vector_column(audio.where(has_audio.astype(bool), None)),
    }
    order = np.argsort(ids.astype(str), kind="stable")
    out = {
        k: (v.take(pa.array(order)) if isinstance(v, pa.Array) else np.asarray(v)[order])
        for k, v in out.items()
    }
    return _frame("content_id", ids[order], avail[order], out, PROFILE_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Creator features


def creator_features(events: pd.DataFrame, content: pd.DataFrame, p: FeatureParams) -> pd.DataFrame:
    """One row per (creator, active snapshot period): followers, follow rates, content, engagement."""
    e = _Events.of(events)
    c = content.drop_duplicates("content_id", keep="first").reset_index(drop=True)
    owners = _str_or_none(c["creator_id"])
    ev_creator, ev_creator_ids = codes_of(events["creator_id"])
    names = sorted(
        {
            str(x)
            for x in [*owners, *ev_creator_ids]
            if x is not None and str(x) not in ("", UNKNOWN)
        }
    )
    index = {n: i for i, n in enumerate(names)}
    # creator of each event: the event's own creator for follow/unfollow, else the content's owner
    owner_of_id = dict(zip(c["content_id"].astype(str), owners, strict=True))
    owner_code = np.array(
        [index.get(str(owner_of_id.get(str(u))), -1) for u in e.content_ids] + [-1]
    )
    own_code = np.array([index.get(str(u), -1) for u in ev_creator_ids] + [-1])
    follows = e.type_in(CREATOR_TYPES)
    creator = np.where(follows, own_code[ev_creator], owner_code[e.content])
    avail_creator = np.array([index.get(str(o), -1) for o in owners], dtype="int64")
    avail_ts = _availability(e, c)
    AVAILABLE = -2  # pseudo event type: a content of the creator became available
    codes = np.concatenate([creator, avail_creator])
    ts = np.concatenate([e.ts, avail_ts])
    kind = np.concatenate([e.etype, np.full(len(avail_ts), AVAILABLE)])
    ok = codes >= 0
    codes, ts, kind = codes[ok], ts[ok], kind[ok]
    if len(codes) == 0:
        return pa.Table.from_pylist([], schema=CREATOR_SCHEMA).to_pandas()
    window = round(p.creator_rate_window_days * MS_PER_DAY)
    clock = _Clock(int(ts.min()), int(ts.max()), len(names))
    snap = _snapshots(codes, ts, p.period_ms)
    sc, st = snap.codes, snap.t

    def timeline(mask: np.ndarray) -> _Timeline:
        return _Timeline(clock, codes[mask], ts[mask])

    fol = timeline(kind == EVENT_TYPES.index("follow"))
    unf = timeline(kind == EVENT_TYPES.index("unfollow"))
    n_fol, n_unf = fol.count(sc, st), unf.count(sc, st)
    out: dict[str, Any] = {"cr_followers": np.maximum(n_fol - n_unf, 0)}
    out["cr_follows_7d"] = fol.count(sc, st, st - window)
    out["cr_unfollows_7d"] = unf.count(sc, st, st - window)
    out["cr_follow_rate"] = out["cr_follows_7d"] / p.creator_rate_window_days
    out["cr_unfollow_rate"] = out["cr_unfollows_7d"] / p.creator_rate_window_days
    out["cr_unfollow_ratio"] = _ratio(n_unf, n_fol)
    n_content = timeline(kind == AVAILABLE).count(sc, st)
    n_views = timeline(kind == EVENT_TYPES.index("view")).count(sc, st)
    n_eng = timeline(np.isin(kind, [EVENT_TYPES.index(t) for t in CONTENT_ENGAGEMENT_TYPES])).count(
        sc, st
    )
    out["cr_content_count"] = n_content
    out["cr_n_views"] = n_views
    out["cr_n_engagements"] = n_eng
    out["cr_avg_engagement"] = _ratio(n_eng, n_content)
    out["cr_engagement_rate"] = _ratio(n_eng, n_views)
    return _frame("creator_id", np.array(names, dtype=object)[sc], st, out, CREATOR_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Request-time context (the on-demand feature views call these; so does the serving fast path)


def _normalised(values: Sequence[Any] | np.ndarray, aliases: Mapping[str, str]) -> np.ndarray:
    return np.array(
        [aliases.get(v.strip().lower(), "other") if isinstance(v, str) else None for v in values],
        dtype=object,
    )


def _floats(values: Any) -> np.ndarray:
    """Numbers as float64 (None / NA / non-numbers -> NaN); the fast path skips pandas."""
    try:
        return np.asarray(values, dtype="float64").reshape(-1)
    except (TypeError, ValueError):
        return pd.to_numeric(
            pd.Series(np.asarray(values, dtype=object).reshape(-1)), errors="coerce"
        ).to_numpy(dtype="float64")


def context_arrays(
    request_ts_s: Sequence[Any] | np.ndarray,
    utc_offset_min: Sequence[Any] | np.ndarray,
    device_type: Sequence[Any] | np.ndarray,
    network: Sequence[Any] | np.ndarray,
) -> dict[str, np.ndarray]:
    """Context features from request fields: hour as sin/cos(2*pi*hour/24), weekday, device, network.

    ``hour`` is the integer local hour (UTC + ``utc_offset_min``); weekday 0 = Monday.
    """
    ts = _floats(request_ts_s)
    off = np.nan_to_num(_floats(utc_offset_min), nan=0.0)
    local = ts + off * 60.0
    hour = np.floor(local / 3600.0) % 24.0
    angle = 2.0 * np.pi * hour / 24.0
    dow = (np.floor(local / 86400.0) + 3.0) % 7.0  # 1970-01-01 was a Thursday
    ok = np.isfinite(dow)
    dow = np.where(ok, dow, -1.0)
    dev = _normalised(device_type, DEVICE_ALIASES)
    net = _normalised(network, NETWORK_ALIASES)
    return {
        "ctx_hour_sin": np.sin(angle),
        "ctx_hour_cos": np.cos(angle),
        "ctx_day_of_week": dow.astype("int64"),
        "ctx_is_weekend": (dow >= 5).astype("int64"),
        "ctx_device_ios": (dev == "ios").astype("int64"),
        "ctx_device_android": (dev == "android").astype("int64"),
        "ctx_device_web": (dev == "web").astype("int64"),
        "ctx_network_mbps": np.array(
            [NETWORK_MBPS.get(n, np.nan) if n else np.nan for n in net], dtype="float64"
        ),
        "ctx_network_tier": np.array(
            [NETWORK_TIER.get(n, 0) if n else 0 for n in net], dtype="int64"
        ),
    }


def context_frame(inputs: pd.DataFrame) -> pd.DataFrame:
    """The context on-demand view: request columns in, :data:`CONTEXT_COLUMNS` out."""
    n = len(inputs)
    col = inputs.get
    arrays = context_arrays(
        col("request_ts_s", pd.Series([np.nan] * n)).to_numpy(dtype=object),
        col("utc_offset_min", pd.Series([0] * n)).to_numpy(dtype=object),
        col("device_type", pd.Series([None] * n)).to_numpy(dtype=object),
        col("network", pd.Series([None] * n)).to_numpy(dtype=object),
    )
    return pd.DataFrame(arrays, index=inputs.index)


def recency_hours(request_ts_s: Any, last_event_ts_s: Any) -> np.ndarray:
    """Hours from the user's last event to the request (NaN when either is unknown)."""
    return (_floats(request_ts_s) - _floats(last_event_ts_s)) / 3600.0


def recency_frame(inputs: pd.DataFrame) -> pd.DataFrame:
    """The user-recency on-demand view: request time minus the (pushed) last event time."""
    return pd.DataFrame(
        {
            "rt_hours_since_last_event": recency_hours(
                inputs["request_ts_s"], inputs["rt_last_event_ts_s"]
            )
        },
        index=inputs.index,
    )


# ---------------------------------------------------------------------------------------------
# Stage


@dataclass(frozen=True)
class FeatureTables:
    user: pd.DataFrame
    content: pd.DataFrame
    content_profile: pd.DataFrame
    creator: pd.DataFrame
    categories: list[str]


def compute_features(
    events: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame, p: FeatureParams
) -> FeatureTables:
    """The pure core: clean events, content and users in; the four feature tables out."""
    categories = category_vocab(content, p.max_categories) if len(content) else [UNKNOWN]
    return FeatureTables(
        user=user_features(events, users, categories, p),
        content=content_features(events, content, p),
        content_profile=content_profile(events, content, categories, p),
        creator=creator_features(events, content, p),
        categories=categories,
    )


@dataclass(frozen=True)
class FeaturesResult:
    rows: dict[str, int]
    entities: dict[str, int]
    first_snapshot: str | None
    last_snapshot: str | None
    categories: int
    text_dim: int
    seconds: float


EVENT_INPUT_COLUMNS = (
    "event_type",
    "user_id",
    "content_id",
    "timestamp",
    "creator_id",
    "device_type",
    "os",
    "network",
    "session_id",
    "watch_ratio",
    "category",
)


def _write(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table, path, row_group_size=1 << 20)


TABLE_SCHEMAS: dict[str, tuple[pa.Schema, str]] = {
    "user": (USER_SCHEMA, "user_id"),
    "content": (CONTENT_SCHEMA, "content_id"),
    "content_profile": (PROFILE_SCHEMA, "content_id"),
    "creator": (CREATOR_SCHEMA, "creator_id"),
}


def write_tables(tables: FeatureTables, p: FeatureParams, out_dir: Path) -> None:
    """Write the four tables (fixed Arrow schemas) and ``feature_meta.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (schema, _) in TABLE_SCHEMAS.items():
        _write(getattr(tables, name), schema, out_dir / FILES[name])
    meta = {
        "categories": tables.categories,
        "text_dim": p.text_dim,
        "last_n_viewed": p.last_n_viewed,
        "snapshot_hours": p.snapshot_hours,
        "lambda_decay": p.lambda_decay,
        "decay_unit": p.decay_unit,
        "windows": [w for w, _ in WINDOWS],
        "files": FILES,
    }
    atomic_write_json(out_dir / META_FILE, meta, sort_keys=False)


def run(params: Mapping[str, Any], paths: DataPaths) -> FeaturesResult:
    p = FeatureParams.from_params(params)
    t0 = time.perf_counter()
    events = pq.read_table(
        paths.of("interim_events"), columns=list(EVENT_INPUT_COLUMNS)
    ).to_pandas(types_mapper=arrow_string_mapper)
    content = pq.read_table(paths.of("interim_content")).to_pandas(
        types_mapper=arrow_string_mapper
    )
    users = pq.read_table(paths.of("interim_users")).to_pandas(
        types_mapper=arrow_string_mapper
    )
    tables = compute_features(events, content, users, p)

    write_tables(tables, p, paths.features)
    frames = {name: (getattr(tables, name), key) for name, (_, key) in TABLE_SCHEMAS.items()}
    snaps = pd.concat(
        [
            tables.user["event_timestamp"],
            tables.content["event_timestamp"],
            tables.creator["event_timestamp"],
        ]
    )
    result = FeaturesResult(
        rows={k: len(v[0]) for k, v in frames.items()},
        entities={k: int(v[0][v[1]].nunique()) for k, v in frames.items()},
        first_snapshot=snaps.min().isoformat() if len(snaps) else None,
        last_snapshot=snaps.max().isoformat() if len(snaps) else None,
        categories=len(tables.categories),
        text_dim=p.text_dim,
        seconds=round(time.perf_counter() - t0, 3),
    )
    metrics = {k: v for k, v in result.__dict__.items() if k != "seconds"}
    metrics["events"] = len(events)
    write_metrics(paths.of("metrics_features"), metrics)
    timing = {
        "seconds": result.seconds,
        "events_per_second": round(len(events) / result.seconds, 1) if result.seconds else 0.0,
    }
    write_metrics(paths.of("metrics_features_throughput"), timing, sort_keys=False)
    log.info("features: %s rows in %.1f s", result.rows, result.seconds)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    r = run(params, paths)
    print(
        f"features: {r.rows['user']} user rows, {r.rows['content']} content rows, "
        f"{r.rows['content_profile']} profiles, {r.rows['creator']} creator rows "
        f"({r.first_snapshot} .. {r.last_snapshot}) in {r.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
