"""Content features: one row per (content, active snapshot period), and content availability.

Definitions (``T`` = snapshot time; counts are over the content's events before ``T``)
    * rates per view (like, comment, share, save, completion); skip rate per exposure
      (``view + skip``); average watch ratio over ``view`` events.
    * growth = ``(e[T-g, T) - e[T-2g, T-g)) / max(e[T-2g, T-g), 1)`` with
      ``g = growth_window_hours`` and ``e`` the engagements; age = hours since upload.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from components.core.schema import ENGAGEMENT_TYPES, EVENT_TYPES
from components.features.columns import (
    CONTENT_COUNTED,
    CONTENT_SCHEMA,
    MS_PER_DAY,
    MS_PER_HOUR,
    empty_frame,
    feature_frame,
)
from components.features.params import FeatureParams
from components.features.timeline import EntityTimelines, Events, ratio, type_codes

#: Rate columns per view: (``c_<name>_rate``, event type counted).
RATES_PER_VIEW: tuple[tuple[str, str], ...] = (
    ("like", "like"),
    ("comment", "comment"),
    ("share", "share"),
    ("save", "save"),
    ("completion", "complete_view"),
)


def availability(e: Events, content: pd.DataFrame) -> np.ndarray:
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
    e = Events.of(events)
    keep = np.flatnonzero(e.content >= 0)
    if len(keep) == 0:
        return empty_frame(CONTENT_SCHEMA)
    tl = EntityTimelines.of(e.content[keep], e.ts[keep], len(e.content_ids), p.period_ms)
    etype = e.etype[keep]
    watch_ratio = events["watch_ratio"].to_numpy(dtype="float64")[keep]
    out = _engagement(tl, etype, watch_ratio, p)
    ids = np.array([str(c) for c in e.content_ids], dtype=object)
    out["c_age_hours"] = _age_hours(content, ids, tl.snap.codes, tl.snap.t)
    return feature_frame("content_id", ids[tl.snap.codes], tl.snap.t, out, CONTENT_SCHEMA)


def _engagement(
    tl: EntityTimelines, etype: np.ndarray, watch_ratio: np.ndarray, p: FeatureParams
) -> dict[str, Any]:
    """Counts per type, rates, average watch ratio and the windowed engagement / growth."""
    sc, st = tl.snap.codes, tl.snap.t
    out: dict[str, Any] = {}
    totals: dict[str, np.ndarray] = {}
    view_tl = tl.timeline(etype == EVENT_TYPES.index("view"))
    for typ in CONTENT_COUNTED:
        timeline = view_tl if typ == "view" else tl.timeline(etype == EVENT_TYPES.index(typ))
        totals[typ] = timeline.count(sc, st)
        out[f"c_n_{typ}"] = totals[typ]
    eng_tl = tl.timeline(np.isin(etype, type_codes(ENGAGEMENT_TYPES)))
    out["c_n_engagements"] = eng_tl.count(sc, st)
    views = totals["view"]
    for name, typ in RATES_PER_VIEW:
        out[f"c_{name}_rate"] = ratio(totals[typ], views)
    out["c_skip_rate"] = ratio(totals["skip"], views + totals["skip"])
    wmask = (etype == EVENT_TYPES.index("view")) & np.isfinite(watch_ratio)
    wtl = tl.timeline(wmask)
    out["c_avg_watch_ratio"] = ratio(
        wtl.total(wtl.prefix(watch_ratio[wmask]), sc, st), wtl.count(sc, st)
    )
    g = round(p.growth_window_hours * MS_PER_HOUR)
    recent = eng_tl.count(sc, st, st - g)
    before = eng_tl.count(sc, st - g, st - 2 * g)
    out["c_views_24h"] = view_tl.count(sc, st, st - g)
    out["c_engagements_24h"] = recent
    out["c_engagements_prev_24h"] = before
    out["c_engagement_growth"] = (recent - before) / np.maximum(before, 1)
    out["c_engagements_7d"] = eng_tl.count(sc, st, st - 7 * MS_PER_DAY)
    return out


def _age_hours(content: pd.DataFrame, ids: np.ndarray, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Hours from each snapshot's content's upload to the snapshot (NaN without an upload time)."""
    c = content.drop_duplicates("content_id", keep="first")
    pos = pd.Index(c["content_id"].astype(str)).get_indexer(pd.Index(ids))
    up_all = c["upload_timestamp"].to_numpy(dtype="datetime64[ms]")
    up = (
        np.where(pos >= 0, up_all[np.maximum(pos, 0)], np.datetime64("NaT"))
        if len(c)
        else np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[ms]")
    )
    up = up.astype("datetime64[ms]")[codes]
    age = np.maximum(t - up.astype("int64"), 0) / MS_PER_HOUR
    return np.where(np.isnat(up), np.nan, age)
