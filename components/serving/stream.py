"""What the event stream changed since load (:class:`StreamState`): the contents each user has
seen since, moderation (reports counted over the batch events and the stream, operator blocks)
and each user's real-time interest; plus the report-counting helpers.

A streamed report counts only from an *established* user (:class:`ReportPolicy`): one the batch
export knew with events, or one whose first accepted event reached the server at least
``serving.moderation_min_user_age_s`` before the report, with at least
``serving.moderation_min_user_events`` accepted events since; user ids are free text in a
posted event, so reports from invented ids cannot take content down. Memory stays bounded:
at most threshold + 1 reporters per content (forgotten once it is moderated), the
``serving.moderation_track_users`` most recently active users' histories, and the seen-since-load
contents (the ``serving.stream_seen_per_user`` most recent of each) and real-time interest of
the ``serving.stream_users`` most recently active users; every eviction is O(1) (an
``OrderedDict``'s oldest entry). An evicted user's seen-since-load contents may be recommended
again, and its interest starts afresh."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.core.schema import POSITIVE_TYPES
from components.serving.artifacts import ArtifactSet
from components.serving.catalogue import Catalogue
from components.serving.lru import lru_entry

log = logging.getLogger(__name__)


def over_threshold(reporters: Mapping[str, set[str]], threshold: int) -> frozenset[str]:
    """Contents reported by more than ``threshold`` distinct users."""
    return frozenset(c for c, u in reporters.items() if len(u) > threshold)


def reporters_by_content(events: pd.DataFrame) -> dict[str, set[str]]:
    """The distinct users who reported each content."""
    rep = events[(events["event_type"].astype(str) == "report") & events["content_id"].notna()]
    return {
        str(c): set(g.astype(str))
        for c, g in rep.groupby(rep["content_id"].astype(str), sort=False)["user_id"]
    }


def moderated_contents(events: pd.DataFrame, threshold: int) -> frozenset[str]:
    """Contents reported by more than ``threshold`` distinct users in ``events``."""
    return over_threshold(reporters_by_content(events), threshold)


@dataclass(frozen=True)
class ReportPolicy:
    """Whose streamed reports count (``serving.moderation_*``)."""

    threshold: int  # contents reported by more distinct users than this are moderated
    min_user_events: int = 1  # accepted events a user needs before the report
    min_user_age_s: float = 86_400.0  # since the user's first accepted event (server clock)
    track_users: int = 1_000_000  # most recently active users whose history is kept


class UserHistory:
    """Per user: when its first accepted event reached the server and how many it sent (the
    ``track`` most recently active users; an evicted user starts again as new)."""

    def __init__(self, track: int) -> None:
        self.track = int(track)
        self._users: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._users)

    def note(self, counts: Mapping[str, int], received_s: float) -> None:
        for user, n in counts.items():
            got = self._users.get(user)
            if got is None:
                self._users[user] = [received_s, float(n)]
            else:
                got[0] = min(got[0], received_s)
                got[1] += n
                self._users.move_to_end(user)
        while len(self._users) > self.track:
            self._users.popitem(last=False)

    def established(self, user: str, at_s: float, policy: ReportPolicy) -> bool:
        got = self._users.get(user)
        return got is not None and got[1] >= policy.min_user_events and got[0] <= at_s - policy.min_user_age_s


class StreamState:
    """Seen sets, moderation and real-time interest, under one lock (``vectors_lock`` guards the
    item vectors, shared with the FAISS searches)."""

    def __init__(
        self,
        artifacts: ArtifactSet,
        catalogue: Catalogue,
        *,
        moderated: frozenset[str],
        reporters: Mapping[str, set[str]],
        threshold: int,
        vectors_lock: threading.Lock,
        policy: ReportPolicy | None = None,
        clock: Callable[[], float] = time.time,
        max_users: int = 20_000,
        seen_per_user: int = 200,
    ) -> None:
        self.artifacts = artifacts
        self.max_users = int(max_users)
        self.seen_per_user = int(seen_per_user)
        self.catalogue = catalogue
        self.threshold = threshold
        self.policy = policy if policy is not None else ReportPolicy(threshold)
        self.moderated = frozenset(moderated)
        self.moderated_pos = catalogue.to_positions(moderated)
        # reporters of contents not moderated yet (at most threshold + 1 each), oldest first
        self._reporters: OrderedDict[str, set[str]] = OrderedDict(
            (c, set(u)) for c, u in reporters.items() if c not in self.moderated
        )
        self._history = UserHistory(self.policy.track_users)
        self._clock = clock
        self.ignored_reports = 0  # streamed reports from users not established
        # per user, the contents seen since load, oldest first (both levels bounded)
        self._noted: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()
        # real-time interest: sum of the unit vectors of contents engaged with since load, count
        self._fresh: OrderedDict[str, tuple[np.ndarray, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._vectors_lock = vectors_lock

    # ---- seen sets

    def note_seen(self, user_id: str, content_ids: Iterable[str]) -> None:
        """Contents shown to / watched by the user since load: never recommended again."""
        user = str(user_id)
        with self._lock:
            noted = lru_entry(self._noted, user, OrderedDict, self.max_users)
            for c in content_ids:
                c = str(c)
                noted[c] = None
                noted.move_to_end(c)
            while len(noted) > self.seen_per_user:
                noted.popitem(last=False)

    def noted_of(self, user_id: str) -> list[str]:
        """Contents noted as seen since load (the snapshot already leaves out earlier ones)."""
        with self._lock:
            return list(self._noted.get(user_id, ()))

    def tracked(self) -> tuple[int, int]:
        """(users with seen-since-load contents, users with a real-time interest)."""
        with self._lock:
            return len(self._noted), len(self._fresh)

    def seen(self, user_id: str) -> frozenset[str]:
        """Contents seen in the batch events (the export's seen sets) or noted since load."""
        with self._lock:
            noted = self._noted.get(user_id)
            extra = frozenset(noted) if noted else None
        base = frozenset(self.catalogue.ids[self.artifacts.seen.of(user_id)].tolist())
        return base | extra if extra else base

    def observe(self, events: pd.DataFrame) -> None:
        """Event-sink listener: contents users interacted with since load become seen."""
        if events is None or len(events) == 0 or "content_id" not in events:
            return
        ev = events[events["content_id"].notna()]
        if "event_type" in ev:
            ev = ev[ev["event_type"].astype(str) != "content_upload"]
        for user, group in ev.groupby(ev["user_id"].astype(str), sort=False)["content_id"]:
            self.note_seen(str(user), group.astype(str).tolist())
        if "event_type" in ev:
            kind = ev["event_type"].astype(str)
            self._update_interest(ev[kind.isin(POSITIVE_TYPES)])
            # reports first: a user's events in the same batch do not establish it
            received_s = float(events.attrs.get("received_s", self._clock()))
            self._count_reports(ev[kind == "report"], received_s)
            others = events[events["event_type"].astype(str) != "report"]
            if len(others):
                with self._lock:
                    counts = others["user_id"].astype(str).value_counts()
                    self._history.note(dict(zip(counts.index.astype(str), counts.astype(int), strict=True)), received_s)

    # ---- moderation

    def established(self, user_id: str, at_s: float) -> bool:
        """Whether the user's reports count (see the module doc)."""
        row = self.artifacts.snapshot.row(str(user_id))
        if row >= 0 and bool(self.artifacts.known[row]):
            return True
        with self._lock:
            return self._history.established(str(user_id), at_s, self.policy)

    def _count_reports(self, reports: pd.DataFrame, received_s: float) -> None:
        """Streamed reports from established users: a content reported by more than the
        threshold's distinct users is moderated from the next request on."""
        if reports.empty:
            return
        newly = []
        for c, u in zip(reports["content_id"].astype(str), reports["user_id"].astype(str), strict=True):
            if c in self.moderated or c in newly:
                continue
            if not self.established(u, received_s):
                self.ignored_reports += 1
                continue
            with self._lock:
                who = self._reporters.setdefault(c, set())
                self._reporters.move_to_end(c)
                who.add(u)
                if len(who) > self.threshold:
                    newly.append(c)
                    del self._reporters[c]  # moderated: its reporters are no longer needed
                while len(self._reporters) > self.policy.track_users:
                    self._reporters.popitem(last=False)
        if newly:
            self.block(newly, reason="reports")

    def block(self, content_ids: Iterable[str], reason: str = "operator") -> None:
        """Never serve these contents again (moderation: reports over the threshold, or an
        operator's block)."""
        ids = {str(c) for c in content_ids} - self.moderated
        if not ids:
            return
        with self._lock:
            self.moderated = self.moderated | ids
            self.moderated_pos = self.catalogue.to_positions(self.moderated)
        log.info("moderated %d content(s) (%s): %s", len(ids), reason, sorted(ids)[:10])

    # ---- real-time interest

    def _update_interest(self, ev: pd.DataFrame) -> None:
        """Fold fresh positive engagements into the user's real-time interest vector (the mean
        direction of the contents engaged with since load), used for retrieval and re-ranking
        until the next batch run folds them into the embeddings."""
        if ev.empty:
            return
        pos = self.catalogue.lookup(ev["content_id"].astype(str))
        ok = pos >= 0
        if not ok.any():
            return
        with self._vectors_lock:
            vecs = np.asarray(self.artifacts.item_vectors[pos[ok]], dtype=np.float64)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
        users = ev["user_id"].astype(str).to_numpy()[ok]
        with self._lock:
            for u in pd.unique(users):
                v = vecs[users == u]
                total, n = self._fresh.get(u, (np.zeros(vecs.shape[1]), 0))
                self._fresh[u] = (total + v.sum(axis=0), n + len(v))
                self._fresh.move_to_end(u)
            while len(self._fresh) > self.max_users:
                self._fresh.popitem(last=False)

    def interest(self, user_id: str) -> tuple[np.ndarray, float] | None:
        """(unit interest vector, weight n / (n + 2)) of the user's fresh engagements, if any."""
        with self._lock:
            got = self._fresh.get(str(user_id))
        if got is None or got[1] == 0:
            return None
        total, n = got
        norm = float(np.linalg.norm(total))
        if norm == 0:
            return None
        return (total / norm).astype(np.float32), n / (n + 2.0)
