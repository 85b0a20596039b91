"""The degraded answer's parts: the fallback list (the most engaged contents of the recent window,
then the all-time popular ones), a user's slate from it and the ``degraded=True`` feed."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from components.retrieval.pair_features import minmax
from components.serving.artifacts import ArtifactSet
from components.serving.feed import FALLBACK, Feed, FeedItem


def fallback_list(art: ArtifactSet) -> list[tuple[str, float, str]]:
    """Recent (most engaged in the recent window), then all-time popular contents, deduplicated,
    each list's scores min-max normalised."""
    ids = art.content_ids
    out: list[tuple[str, float, str]] = []
    taken: set[str] = set()
    for name, c in (("recent", art.recent), ("popular", art.popular)):
        if c is None:
            continue
        for p, s in zip(np.asarray(c.items).tolist(), minmax(np.asarray(c.scores)).tolist(), strict=True):
            cid = ids[int(p)]
            if cid not in taken:
                taken.add(cid)
                out.append((cid, float(s), name))
    return out


def fallback_items(
    popular: Sequence[tuple[str, float, str]], excluded: frozenset[str], k: int
) -> list[FeedItem]:
    """The first ``k`` contents of the fallback list not in ``excluded`` (no exploration)."""
    items: list[FeedItem] = []
    for cid, score, source in popular:
        if len(items) >= max(int(k), 0):
            break
        if cid not in excluded:
            items.append(FeedItem(cid, score, source, False, 1.0, len(items)))
    return items



def degraded_feed(
    request_id: str, user_id: str, items: list[FeedItem], reason: str, started: float
) -> Feed:
    """The fallback's feed (``degraded=True``, the reason; timed since ``started``)."""
    return Feed(
        request_id=request_id,
        user_id=user_id,
        items=items,
        model_version=None,
        degraded=True,
        reason=reason,
        arm=FALLBACK,
        shadow_version=None,
        timings_ms={"total": round((time.perf_counter() - started) * 1000.0, 3)},
    )
