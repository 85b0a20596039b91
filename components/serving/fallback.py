"""The degraded answer (:class:`Fallback`): the fallback list (the most engaged contents of the
recent window, then the all-time popular ones) minus the user's seen and moderated contents,
logged like any feed, with ``degraded=True`` and the reason."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from components.retrieval.pair_features import minmax
from components.serving.artifacts import ArtifactSet
from components.serving.feed import FALLBACK, Feed, FeedItem
from components.serving.impressions import ImpressionLog, impression_rows
from components.serving.stream import StreamState

log = logging.getLogger(__name__)


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


class Fallback:
    """Degraded feeds from the artefact set's fallback list, filtered by the stream state."""

    def __init__(
        self,
        artifacts: ArtifactSet,
        stream: StreamState,
        impressions: ImpressionLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.popular = fallback_list(artifacts)
        self.stream = stream
        self.impressions = impressions
        self._clock = clock

    def feed(
        self,
        user_id: str,
        k: int,
        *,
        request_id: str,
        reason: str,
        request_ts_s: int | None = None,
        started: float | None = None,
    ) -> Feed:
        """Recently most engaged, then popular contents the user has not seen (never raises)."""
        t0 = started if started is not None else time.perf_counter()
        items: list[FeedItem] = []
        try:
            excluded = self.stream.seen(str(user_id)) | self.stream.moderated
            items = fallback_items(self.popular, excluded, k)
            ts = pd.Timestamp(
                int(request_ts_s) if request_ts_s is not None else int(self._clock()),
                unit="s",
                tz="UTC",
            )
            self.impressions.add(
                impression_rows(request_id, str(user_id), items, ts, arm=FALLBACK, degraded=True)
            )
        except Exception:  # the last resort must not raise either
            log.exception("fallback for request %s failed", request_id)
        return Feed(
            request_id=request_id,
            user_id=str(user_id),
            items=items,
            model_version=None,
            degraded=True,
            reason=reason,
            arm=FALLBACK,
            shadow_version=None,
            timings_ms={"total": round((time.perf_counter() - t0) * 1000.0, 3)},
        )
