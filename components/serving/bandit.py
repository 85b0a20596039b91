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

Memory stays bounded: a reward counts once per (user, content), remembered for the
``max_users`` most recently active users (``serving.stream_users``) and their last
``per_user`` rewarded contents; a user evicted (or a content pushed out of a user's memory) that
rewards the same content again counts again. The per-content counts are bounded by the catalogue.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
import pandas as pd

from components.core.schema import EXPOSURE_TYPES, POSITIVE_TYPES
from components.serving.lru import lru_entry


class ItemStats:
    """Thread-safe per-content (impressions, rewards) counts."""

    def __init__(self, max_users: int = 20_000, per_user: int = 200) -> None:
        self._lock = threading.Lock()
        self._n: dict[str, int] = {}
        self._r: dict[str, int] = {}
        self.max_users, self.per_user = int(max_users), int(per_user)
        #: per user, the contents whose reward has been counted (most recent last): O(1) evictions
        self._rewarded: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()

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
            for user, content in pairs:
                if self._first_reward(user, content):
                    self._r[content] = self._r.get(content, 0) + 1

    def _first_reward(self, user: str, content: str) -> bool:
        """Whether ``user`` has not rewarded ``content`` (within what is remembered); notes it
        (call holding ``_lock``)."""
        seen = lru_entry(self._rewarded, user, OrderedDict, self.max_users)
        if content in seen:
            return False
        seen[content] = None
        if len(seen) > self.per_user:
            seen.popitem(last=False)
        return True

    def remembered(self) -> tuple[int, int]:
        """(users, (user, content) pairs) held for the once-per-user reward rule."""
        with self._lock:
            return len(self._rewarded), sum(len(v) for v in self._rewarded.values())

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
