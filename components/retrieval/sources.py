"""Candidate lists (:class:`Candidates`), the event-count sources and the quota merge.

Event-count sources (one ranked list for everyone, seen contents removed per user later)
    * ``trending``: engagement growth ``(e[now-g, now) - e[now-2g, now-g)) / max(e[now-2g, now-g), 1)``
      with at least ``min_engagements`` recent engagements;
    * ``recent``: the most engaged contents of the last ``recent.window_hours`` (what is being
      watched now; on short-video data this beats all-time popularity by far);
    * ``popularity`` (positive events in the training period) is the baseline, not a source.
    Also here: the per-content activity the pair features read (:func:`item_activity`) and the
    creators each user follows (:func:`followed_creators`, the ``followed`` source's state).

Merging (:func:`merge`)
    Each source gets ``floor(quota * K)`` slots in ``mix`` order, skipping contents already taken;
    slots left (quotas summing below 1, sources running dry) go to the sources that still have
    contents, in proportion to their quotas; popularity fills whatever is still empty (users
    without history, tiny catalogues). Quota merging is a loop no library implements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.core.schema import (
    CONSUMPTION_TYPES,
    CREATOR_TYPES,
    ENGAGEMENT_TYPES,
    POSITIVE_TYPES,
)
from components.retrieval.interactions import UNKNOWN, interaction_events
from components.retrieval.pair_features import minmax
from components.retrieval.params import BASELINE, CandidateParams


@dataclass(frozen=True)
class Candidates:
    """Ranked candidates of one user from one source (positions in the retriever's catalogue)."""

    items: np.ndarray  # int64 positions
    scores: np.ndarray  # float32, descending



def trending_scores(events: pd.DataFrame, item_ids: np.ndarray, now: pd.Timestamp, p: CandidateParams) -> Candidates:
    """Engagement growth over the last window vs. the one before (ranked, ties by volume)."""
    g = pd.Timedelta(hours=p.trending_window_hours)
    ev = events[events["event_type"].isin(sorted(ENGAGEMENT_TYPES)) & events["content_id"].notna()]
    idx = pd.Index(item_ids.astype(str))
    pos = idx.get_indexer(ev["content_id"].astype(str))
    t = ev["timestamp"]
    recent = (t >= now - g) & (t < now) & (pos >= 0)
    prev = (t >= now - 2 * g) & (t < now - g) & (pos >= 0)
    e1 = np.bincount(pos[recent.to_numpy()], minlength=len(idx)).astype(np.float64)
    e0 = np.bincount(pos[prev.to_numpy()], minlength=len(idx)).astype(np.float64)
    growth = (e1 - e0) / np.maximum(e0, 1.0)
    ok = np.flatnonzero(e1 >= p.trending_min_engagements)
    order = ok[np.lexsort((ok, -e1[ok], -growth[ok]))]
    return Candidates(order.astype(np.int64), growth[order].astype(np.float32))


def recent_scores(events: pd.DataFrame, item_ids: np.ndarray, now: pd.Timestamp, window_hours: float) -> Candidates:
    """Contents ranked by engagements in ``[now - window, now)`` (what is being watched now)."""
    ev = events[events["event_type"].isin(sorted(ENGAGEMENT_TYPES)) & events["content_id"].notna()]
    t = ev["timestamp"]
    ev = ev[((t >= now - pd.Timedelta(hours=window_hours)) & (t < now)).to_numpy()]
    pos = pd.Index(np.asarray(item_ids).astype(str)).get_indexer(ev["content_id"].astype(str))
    cnt = np.bincount(pos[pos >= 0], minlength=len(item_ids)).astype(np.float64)
    ok = np.flatnonzero(cnt > 0)
    order = ok[np.lexsort((ok, -cnt[ok]))]
    return Candidates(order.astype(np.int64), cnt[order].astype(np.float32))


def popularity_scores(events: pd.DataFrame, item_ids: np.ndarray, positive_types: Sequence[str] = POSITIVE_TYPES) -> Candidates:
    """The baseline: contents ranked by positive events in the training period."""
    ev = interaction_events(events)
    ev = ev[ev["event_type"].isin(list(positive_types))]
    pos = pd.Index(item_ids.astype(str)).get_indexer(ev["content_id"].astype(str))
    cnt = np.bincount(pos[pos >= 0], minlength=len(item_ids)).astype(np.float64)
    ok = np.flatnonzero(cnt > 0)
    order = ok[np.lexsort((ok, -cnt[ok]))]
    return Candidates(order.astype(np.int64), cnt[order].astype(np.float32))


def item_activity(events: pd.DataFrame, item_ids: np.ndarray, now: pd.Timestamp, windows_hours: Sequence[float]) -> pd.DataFrame:
    """Per content, from interactions before ``now``: engagements in each window before ``now``
    (``eng_<h>h``) and in total, interactions in total, like rate ``(likes + 1) / (views + 2)``,
    and hours since the first and the last interaction (NaN if never)."""
    ev = interaction_events(events)
    ev = ev[ev["timestamp"] < now]
    pos = pd.Index(np.asarray(item_ids).astype(str)).get_indexer(ev["content_id"].astype(str))
    keep = pos >= 0
    pos = pos[keep]
    typ = ev["event_type"].astype(str).to_numpy()[keep]
    age_h = ((now - pd.to_datetime(ev["timestamp"], utc=True)).dt.total_seconds().to_numpy() / 3600.0)[keep]
    n = len(item_ids)
    engaged = np.isin(typ, sorted(ENGAGEMENT_TYPES))
    out = pd.DataFrame(index=range(n))
    for h in windows_hours:
        sel = engaged & (age_h <= h)
        out[f"eng_{h:g}h"] = np.bincount(pos[sel], minlength=n).astype(np.float32)
    out["eng_total"] = np.bincount(pos[engaged], minlength=n).astype(np.float32)
    out["interactions"] = np.bincount(pos, minlength=n).astype(np.float32)
    likes = np.bincount(pos[typ == "like"], minlength=n)
    views = np.bincount(pos[np.isin(typ, CONSUMPTION_TYPES)], minlength=n)
    out["like_rate"] = ((likes + 1.0) / (np.maximum(views, likes) + 2.0)).astype(np.float32)
    first = np.full(n, np.nan)
    last = np.full(n, np.nan)
    if len(pos):
        ages = pd.DataFrame({"p": pos, "a": age_h}).groupby("p")["a"].agg(["max", "min"])
        first[ages.index.to_numpy()] = ages["max"].to_numpy()
        last[ages.index.to_numpy()] = ages["min"].to_numpy()
    out["hours_since_first"] = first.astype(np.float32)
    out["hours_since_last"] = last.astype(np.float32)
    return out


def followed_creators(users: pd.DataFrame, events: pd.DataFrame) -> dict[str, set[str]]:
    """Creators each user follows: the profile list, then follow / unfollow events in time order."""
    out: dict[str, set[str]] = {}
    if "creators_followed" in users:
        for u, cl in zip(users["user_id"].astype(str), users["creators_followed"], strict=True):
            if isinstance(cl, list | tuple | np.ndarray) and len(cl):
                out[u] = {str(c) for c in cl}
    ev = events[events["event_type"].isin(CREATOR_TYPES) & events["creator_id"].notna()]
    ev = ev.sort_values("timestamp", kind="stable")
    for u, c, t in zip(ev["user_id"].astype(str), ev["creator_id"].astype(str), ev["event_type"].astype(str), strict=True):
        if t == "follow":
            out.setdefault(u, set()).add(c)
        else:
            out.get(u, set()).discard(c)
    # the real-data adapters' sentinel for "no creator id in this data set" is nobody to follow
    return {u: s - {UNKNOWN, ""} for u, s in out.items() if s - {UNKNOWN, ""}}



def merge(
    lists: Mapping[str, Candidates], mix: Mapping[str, float], k: int, fallback: Candidates | None = None
) -> tuple[list[int], list[float], list[str]]:
    """Quota merge: ``floor(quota * k)`` slots per source in mix order, then a quota-weighted fill.

    Sources outside ``mix`` only fill slots every mixed source left empty; ``fallback`` (the
    popularity list) fills what is still empty after that. Returns (positions, scores
    normalised per source to [0, 1], source of each candidate).
    """
    if fallback is not None:
        lists = {**lists, BASELINE: fallback}
    order = [s for s in mix if s in lists] + [s for s in lists if s not in mix and s != BASELINE]
    if fallback is not None:
        order.append(BASELINE)
    norm = {s: minmax(lists[s].scores) for s in order}
    taken: dict[int, tuple[float, str]] = {}
    cursor = dict.fromkeys(order, 0)

    def take(src: str, n: int) -> None:
        c = lists[src]
        got = 0
        while got < n and cursor[src] < len(c.items) and len(taken) < k:
            item = int(c.items[cursor[src]])
            if item not in taken:
                taken[item] = (float(norm[src][cursor[src]]), src)
                got += 1
            cursor[src] += 1

    for s in order:
        take(s, int(np.floor(float(mix.get(s, 0.0)) * k + 1e-9)))
    # fill: the remaining slots in proportion to the quotas of sources that still have contents
    weight = {s: float(mix.get(s, 0.0)) for s in order}
    while len(taken) < k:
        live = [s for s in order if cursor[s] < len(lists[s].items) and weight[s] > 0]
        if not live:
            live = [s for s in order if cursor[s] < len(lists[s].items) and s != BASELINE]
            weight = dict.fromkeys(order, 1.0)
        if not live and BASELINE in order and cursor[BASELINE] < len(lists[BASELINE].items):
            live = [BASELINE]
        if not live:
            break
        total = sum(weight[s] for s in live)
        remaining = k - len(taken)
        for s in live:
            take(s, max(1, int(np.floor(weight[s] / total * remaining))))
    items = list(taken)
    return items, [taken[i][0] for i in items], [taken[i][1] for i in items]
