"""Creator features: one row per (creator, active snapshot period).

Followers = follows - unfollows (floored at 0: the log does not hold followers gained before it
starts); follow / unfollow rates per day over ``creator_rate_window_days``; content count =
contents available before ``T``; average engagement = engagements (like, comment, share, save)
on the creator's contents per content; engagement rate per view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.core.frames import codes_of
from components.core.schema import CONTENT_ENGAGEMENT_TYPES, CREATOR_TYPES, EVENT_TYPES
from components.features.columns import (
    CREATOR_SCHEMA,
    MS_PER_DAY,
    UNKNOWN,
    empty_frame,
    feature_frame,
)
from components.features.content import availability
from components.features.params import FeatureParams
from components.features.timeline import EntityTimelines, Events, ratio, str_or_none, type_codes

#: Pseudo event type: a content of the creator became available.
AVAILABLE = -2


@dataclass(frozen=True)
class _CreatorEvents:
    """Creator-coded events (follows by their own creator, the rest by the content's owner) plus
    one pseudo event per content becoming available; ``names`` maps codes to creator ids."""

    names: list[str]
    codes: np.ndarray
    ts: np.ndarray
    kind: np.ndarray


def _creator_events(events: pd.DataFrame, content: pd.DataFrame) -> _CreatorEvents:
    e = Events.of(events)
    c = content.drop_duplicates("content_id", keep="first").reset_index(drop=True)
    owners = str_or_none(c["creator_id"])
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
    avail_ts = availability(e, c)
    codes = np.concatenate([creator, avail_creator])
    ts = np.concatenate([e.ts, avail_ts])
    kind = np.concatenate([e.etype, np.full(len(avail_ts), AVAILABLE)])
    ok = codes >= 0
    return _CreatorEvents(names, codes[ok], ts[ok], kind[ok])


def creator_features(events: pd.DataFrame, content: pd.DataFrame, p: FeatureParams) -> pd.DataFrame:
    """One row per (creator, active snapshot period): followers, follow rates, content, engagement."""
    ce = _creator_events(events, content)
    if len(ce.codes) == 0:
        return empty_frame(CREATOR_SCHEMA)
    kind = ce.kind
    window = round(p.creator_rate_window_days * MS_PER_DAY)
    tl = EntityTimelines.of(ce.codes, ce.ts, len(ce.names), p.period_ms)
    sc, st = tl.snap.codes, tl.snap.t
    fol = tl.timeline(kind == EVENT_TYPES.index("follow"))
    unf = tl.timeline(kind == EVENT_TYPES.index("unfollow"))
    n_fol, n_unf = fol.count(sc, st), unf.count(sc, st)
    out: dict[str, Any] = {"cr_followers": np.maximum(n_fol - n_unf, 0)}
    out["cr_follows_7d"] = fol.count(sc, st, st - window)
    out["cr_unfollows_7d"] = unf.count(sc, st, st - window)
    out["cr_follow_rate"] = out["cr_follows_7d"] / p.creator_rate_window_days
    out["cr_unfollow_rate"] = out["cr_unfollows_7d"] / p.creator_rate_window_days
    out["cr_unfollow_ratio"] = ratio(n_unf, n_fol)
    n_content = tl.count(kind == AVAILABLE)
    n_views = tl.count(kind == EVENT_TYPES.index("view"))
    n_eng = tl.count(np.isin(kind, type_codes(CONTENT_ENGAGEMENT_TYPES)))
    out["cr_content_count"] = n_content
    out["cr_n_views"] = n_views
    out["cr_n_engagements"] = n_eng
    out["cr_avg_engagement"] = ratio(n_eng, n_content)
    out["cr_engagement_rate"] = ratio(n_eng, n_views)
    return feature_frame("creator_id", np.array(ce.names, dtype=object)[sc], st, out, CREATOR_SCHEMA)
