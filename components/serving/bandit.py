"""Per-item bandit statistics from the event stream (:class:`ItemStats`), read by UCB
exploration (``exploration.strategy: ucb``,
:func:`components.retrieval.exploration.explore_slate`).

Per content: ``impressions`` = exposure events (view, skip) and ``rewards`` = distinct users
with a positive event (like, comment, share, save, complete_view, replay) on it, as
:func:`components.retrieval.exploration.bandit_stats` counts them offline. Fed by every
accepted event (this worker's and, through the stream follower, the others'), so a content
shown and rated since load gets a finite UCB index; a content never shown keeps an infinite
one (it is explored first). Counts start at zero at load: replaying the stream into
:meth:`ItemStats.observe` on restart rebuilds them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import pandas as pd

from components.core.schema import EXPOSURE_TYPES, POSITIVE_TYPES


class ItemStats:
    """Thread-safe per-content (impressions, rewards) counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n: dict[str, int] = {}
        self._r: dict[str, int] = {}
        self._rewarded: set[tuple[str, str]] = set()

    def observe(self, events: pd.DataFrame) -> None:
        """Count the exposures and first positive events per (user, content) of ``events``."""
        if (
            events is None
            or len(events) == 0
            or not {"content_id", "event_type", "user_id"} <= set(events)
        ):
            return
        ev = events[events["content_id"].notna()]
        kind = ev["event_type"].astype(str)
        exposed = ev.loc[kind.isin(EXPOSURE_TYPES), "content_id"].astype(str).value_counts()
        pos = ev[kind.isin(POSITIVE_TYPES)]
        pairs = zip(pos["user_id"].astype(str), pos["content_id"].astype(str), strict=True)
        with self._lock:
            for c, n in exposed.items():
                self._n[str(c)] = self._n.get(str(c), 0) + int(n)
            for pair in pairs:
                if pair not in self._rewarded:
                    self._rewarded.add(pair)
                    self._r[pair[1]] = self._r.get(pair[1], 0) + 1

    def snapshot(self, content_ids: Iterable[str]) -> dict[str, tuple[float, float]]:
        """``{content: (impressions, rewards)}`` of the contents with any exposure (rewards
        capped at impressions: a reward needs an exposure)."""
        with self._lock:
            out = {}
            for c in content_ids:
                n = self._n.get(c, 0)
                if n:
                    out[c] = (float(n), float(min(self._r.get(c, 0), n)))
            return out

    def totals(self) -> tuple[int, int]:
        """(contents with an exposure, exposures)."""
        with self._lock:
            return len(self._n), int(np.sum(list(self._n.values()))) if self._n else 0
