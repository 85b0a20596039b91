"""User features: one row per (user, active snapshot period), activity plus real-time columns.

Definitions (``T`` = snapshot time; counts are over the user's events before ``T``)
    * engagement = ``like, comment, share, follow, save`` (:data:`components.core.schema.ENGAGEMENT_TYPES`);
      exposures = ``view + skip`` (every impression ends in a view or a skip).
    * recency-weighted engagement = ``sum(w[type] * exp(-lambda_decay * age_days))`` over
      engagement-weighted events, age in **days** (``features.lambda_decay``, per day).
    * category share = engagements on contents of category ``c`` / engagements on contents with
      a category, as a vector over the category vocabulary (``feature_meta.json``).
    * skip / hide / report rate = count / exposures (NaN without exposures).
    * sessions (preprocess ``session_id``) are cut at ``T``: a session still open at ``T`` counts
      with its events before ``T``; average duration = (last - first event) per session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from components.core.schema import (
    CONSUMPTION_TYPES,
    ENGAGEMENT_TYPES,
    EVENT_TYPES,
    USER_EVENT_TYPES,
)
from components.features.columns import (
    DEVICES,
    MS_PER_DAY,
    MS_PER_HOUR,
    OSES,
    UNKNOWN,
    USER_SCHEMA,
    WINDOWS,
    empty_frame,
    feature_frame,
)
from components.features.params import FeatureParams
from components.features.timeline import (
    EntityTimelines,
    Events,
    Timeline,
    codes_in,
    decayed,
    last_n,
    list_array,
    ratio,
    string_array,
    type_codes,
)

#: Event counts per (type, window label), the sliding-window sums the real-time columns reuse.
WindowSums = dict[tuple[str, str], np.ndarray]


def user_features(
    events: pd.DataFrame,
    users: pd.DataFrame,
    categories: Sequence[str],
    p: FeatureParams,
) -> pd.DataFrame:
    """One row per (user, active snapshot period): activity + real-time columns, see module doc."""
    e = Events.of(events)
    keep = np.flatnonzero(e.type_in(USER_EVENT_TYPES))
    if len(keep) == 0:
        return empty_frame(USER_SCHEMA)
    tl = EntityTimelines.of(e.user[keep], e.ts[keep], len(e.user_ids), p.period_ms)
    etype = e.etype[keep]
    content = e.content[keep]
    out, window_sums = _activity(tl, etype, p)
    sessions = events["session_id"].to_numpy(dtype="int64")[keep]
    out.update(_sessions(tl, etype, sessions, content, len(e.content_ids)))
    out.update(_device_mix(tl, events, keep))
    out.update(_category_shares(tl, etype, content, events["category"], keep, categories))
    ids = [str(u) for u in e.user_ids]
    out["u_account_age_days"] = _account_age_days(users, ids, tl.snap.codes, tl.snap.t)
    out.update(_realtime(tl, window_sums, etype, content, e.content_ids, p.last_n_viewed))
    snap = tl.snap
    return feature_frame("user_id", np.array(ids, dtype=object)[snap.codes], snap.t, out, USER_SCHEMA)


def _activity(
    tl: EntityTimelines, etype: np.ndarray, p: FeatureParams
) -> tuple[dict[str, Any], WindowSums]:
    """Counts per event type and window, totals, the decayed engagement and the exposure rates."""
    sc, st = tl.snap.codes, tl.snap.t
    out: dict[str, Any] = {}
    totals: dict[str, np.ndarray] = {}
    window_sums: WindowSums = {}
    for typ in USER_EVENT_TYPES:
        timeline = tl.timeline(etype == EVENT_TYPES.index(typ))
        totals[typ] = timeline.count(sc, st)
        for label, w in WINDOWS:
            window_sums[(typ, label)] = timeline.count(sc, st, st - w)
            out[f"u_{typ}_{label}"] = window_sums[(typ, label)]
    exposures = totals["view"] + totals["skip"]
    out["u_n_events"] = sum(totals.values())
    out["u_n_engagements"] = sum(totals[t] for t in ENGAGEMENT_TYPES)
    out["u_n_views"] = totals["view"]
    weights = np.array([p.engagement_weights.get(t, 0.0) for t in EVENT_TYPES] + [0.0])
    out["u_engagement_decayed"] = decayed(
        tl.snap, tl.ts, weights[etype], p.lambda_decay / MS_PER_DAY
    )
    out["u_skip_rate"] = ratio(totals["skip"], exposures)
    out["u_hide_rate"] = ratio(totals["hide"], exposures)
    out["u_report_rate"] = ratio(totals["report"], exposures)
    return out, window_sums


def _sessions(
    tl: EntityTimelines,
    etype: np.ndarray,
    session_id: np.ndarray,
    content: np.ndarray,
    n_contents: int,
) -> dict[str, Any]:
    """Time since the last event and the session statistics (a session still open at ``T``
    counts with its events before ``T``)."""
    sc, st = tl.snap.codes, tl.snap.t
    all_tl = Timeline(tl.clock, tl.codes, tl.ts)
    o = all_tl.order
    last = all_tl.pos(sc, st) - 1
    first = all_tl.start(sc)
    s_ts = tl.ts[o]
    s_sid = session_id[o]
    s_code = tl.codes[o]
    new = np.r_[True, (s_sid[1:] != s_sid[:-1]) | (s_code[1:] != s_code[:-1])]
    g = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(s_ts)] - 1
    consumed = np.isin(etype[o], type_codes(CONSUMPTION_TYPES))
    s_content = content[o]
    pair = np.where(consumed & (s_content >= 0), g * (n_contents + 1) + s_content, -1)
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
    return {
        "u_hours_since_last_event": (st - s_ts[last]) / MS_PER_HOUR,
        "u_n_sessions": n_sessions.astype("int64"),
        "u_avg_session_duration_s": dur / n_sessions / 1000.0,
        "u_avg_contents_per_session": cont / n_sessions,
        "rt_last_event_ts_s": np.floor_divide(s_ts[last], 1000).astype("int64"),
    }


def _device_mix(tl: EntityTimelines, events: pd.DataFrame, keep: np.ndarray) -> dict[str, Any]:
    """Device / OS shares (preprocess has already mapped spellings onto these vocabularies)."""
    out: dict[str, Any] = {}
    for col, vocab, prefix in (
        ("device_type", DEVICES, "u_device_share_"),
        ("os", OSES, "u_os_share_"),
    ):
        vcodes = codes_in(events[col], vocab, other=vocab.index("other"))[keep]
        counts = [tl.count(vcodes == k) for k in range(len(vocab))]
        den = np.sum(counts, axis=0)
        for name, cnt in zip(vocab, counts, strict=True):
            out[f"{prefix}{name}"] = ratio(cnt, den)
    return out


def _category_shares(
    tl: EntityTimelines,
    etype: np.ndarray,
    content: np.ndarray,
    category: pd.Series,
    keep: np.ndarray,
    categories: Sequence[str],
) -> dict[str, Any]:
    """Engagement shares over the category vocabulary, and the top category."""
    other = categories.index("other") if "other" in categories else None
    unknown = categories.index(UNKNOWN) if UNKNOWN in categories else -1
    cat = codes_in(category, categories, other=other, null=unknown)[keep]
    eng_mask = np.isin(etype, type_codes(ENGAGEMENT_TYPES)) & (content >= 0)
    width = len(categories)
    n = len(tl.snap.t)
    shares = np.zeros((n, width), dtype="float64")
    for k in range(width):
        m = eng_mask & (cat == k)
        if m.any():
            shares[:, k] = tl.count(m)
    cat_total = shares.sum(axis=1)
    shares = np.divide(
        shares, cat_total[:, None], out=np.zeros_like(shares), where=cat_total[:, None] > 0
    )
    has_cat = cat_total > 0
    return {
        "u_category_share": list_array(
            np.arange(n + 1) * width, pa.array(shares.astype("float32").reshape(-1))
        ),
        "u_top_category_idx": np.where(has_cat, shares.argmax(axis=1), -1).astype("int64"),
        "u_top_category_share": np.where(has_cat, shares.max(axis=1), np.nan),
    }


def _account_age_days(
    users: pd.DataFrame, ids: list[str], codes: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """Days from each snapshot's user's signup to the snapshot (NaN without a signup time)."""
    sig = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[ms]")
    if len(users) and "signup_timestamp" in users:
        known = users.dropna(subset=["signup_timestamp"]).drop_duplicates("user_id")
        pos = pd.Index(known["user_id"].astype(str)).get_indexer(pd.Index(ids))
        vals = known["signup_timestamp"].to_numpy(dtype="datetime64[ms]")
        sig = np.where(pos >= 0, vals[np.maximum(pos, 0)] if len(vals) else sig, sig)
    sig = sig[codes]
    return np.where(np.isnat(sig), np.nan, (t - sig.astype("int64")) / MS_PER_DAY)


def _realtime(
    tl: EntityTimelines,
    window_sums: WindowSums,
    etype: np.ndarray,
    content: np.ndarray,
    content_ids: Sequence[Any],
    n_viewed: int,
) -> dict[str, Any]:
    """The real-time view's batch values (the push source overwrites these online)."""
    views = (etype == EVENT_TYPES.index("view")) & (content >= 0)
    return {
        "rt_events_1h": sum(window_sums[(t, "1h")] for t in USER_EVENT_TYPES),
        "rt_engagements_1h": sum(window_sums[(t, "1h")] for t in ENGAGEMENT_TYPES),
        "rt_views_1h": window_sums[("view", "1h")],
        "rt_skips_1h": window_sums[("skip", "1h")],
        "rt_last_viewed": last_n(
            tl.timeline(views),
            tl.snap.codes,
            tl.snap.t,
            content[views],
            string_array(content_ids),
            n_viewed,
        ),
    }
