"""The serving side's event consumer: ``POST /v1/events`` batches.

Each batch goes through the batch ingestion's own code (:func:`components.data.ingestion.decode.decode_jsonl`
and :func:`components.data.ingestion.process.process_drops`: the same schema checks, reasons, duplicate rule and
keyed-HMAC pseudonymisation), so an event accepted here would be accepted by ``dvc repro`` and
refused for the same reason. Then:

* valid events are appended durably to the stream event store ``data/stream/events/`` (same
  schema and day partitioning as ``data/raw/events``, one folder per batch:
  ``events/<batch>/event_date=YYYY-MM-DD/<batch>.parquet``; ``data/raw`` itself is a DVC output
  that only the ingest stage writes). A batch commits all or nothing
  (:mod:`components.serving.commits`): written and fsynced (files and folders) in
  ``data/stream/.staging/<batch>/``, committed in the commit log together with its event ids
  (a unique index shared by every worker process and kept across restarts: an id is stored
  once), then renamed into place in one step; a 200 is sent only after that. Start-up
  (:meth:`EventSink.recover`) finishes committed batches a crash left in staging and deletes
  uncommitted ones;
* refused events go to ``data/stream/quarantine/`` with their reason (user ids pseudonymised
  there too), and back to the caller as per-event errors; the valid events of the same batch
  are kept. Each record is checked on its own first (:func:`~components.data.ingestion.decode.check_record`):
  nested deeper than 32 levels (``too_deep``) or holding a lone surrogate (``invalid_unicode``)
  is refused, unknown keys are dropped and counted (``dropped_keys``), never made columns;
* the users' real-time features (``rt_*``: events / engagements / views / skips in the last
  hour, last event time, last viewed contents) are recomputed from a one-hour window kept in
  memory and pushed to Feast's push source, so the next online lookup sees them.

Counts reconcile per batch: ``received = accepted + rejected + duplicates``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from components.core.catalog import DataPaths
from components.core.schema import ENGAGEMENT_TYPES, USER_EVENT_TYPES
from components.serving.lru import lru_entry

if TYPE_CHECKING:
    from components.data.ingestion.rules import Limits

log = logging.getLogger(__name__)

ONE_HOUR_S = 3600
#: how often a sink prunes old event ids from the commit log (``serving.dedupe_retention_h``)
PRUNE_EVERY_S = 600.0


@dataclass(frozen=True)
class EventError:
    index: int  # position in the posted batch (0-based)
    reason: str
    detail: str


@dataclass(frozen=True)
class BatchResult:
    received: int
    accepted: int
    rejected: int
    duplicates: int
    errors: list[EventError]
    users_updated: int
    dropped_keys: int = 0  # unknown keys removed from the events (never stored)

    def reconciles(self) -> bool:
        return self.received == self.accepted + self.rejected + self.duplicates


@dataclass
class _UserWindow:
    events: deque[tuple[int, str, str | None]] = field(default_factory=deque)  # (ts_s, type, content)
    viewed: deque[str] = field(default_factory=deque)
    last_ts_s: int = 0


class RealtimeFeatures:
    """The ``rt_*`` user features from the events of the last hour, per user (in memory): the
    ``max_users`` most recently active users' windows (``serving.stream_users``; the least
    recent is evicted in O(1), its features then expire in the online store by their TTL)."""

    def __init__(self, last_n_viewed: int = 20, max_users: int = 20_000) -> None:
        self.last_n = last_n_viewed
        self.max_users = int(max_users)
        self.user_types = frozenset(USER_EVENT_TYPES)
        self.engagement = frozenset(ENGAGEMENT_TYPES)
        self._users: OrderedDict[str, _UserWindow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._users)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._users

    def add(self, user_id: str, ts_s: int, event_type: str, content_id: str | None) -> None:
        w = lru_entry(self._users, user_id, _UserWindow, self.max_users)
        w.events.append((ts_s, event_type, content_id))
        w.last_ts_s = max(w.last_ts_s, ts_s)
        while w.events and w.events[0][0] <= w.last_ts_s - ONE_HOUR_S:  # bounded: one hour a user
            w.events.popleft()
        if event_type == "view" and content_id:
            w.viewed.append(content_id)
            while len(w.viewed) > self.last_n:
                w.viewed.popleft()

    def row(self, user_id: str, now_s: int) -> dict[str, Any]:
        w = self._users[user_id]
        while w.events and w.events[0][0] <= now_s - ONE_HOUR_S:
            w.events.popleft()
        recent = [t for ts, t, _ in w.events if ts > now_s - ONE_HOUR_S]
        return {
            "user_id": user_id,
            "event_timestamp": pd.Timestamp(max(now_s, w.last_ts_s), unit="s", tz="UTC"),
            "rt_last_event_ts_s": int(w.last_ts_s),
            "rt_events_1h": sum(t in self.user_types for t in recent),
            "rt_engagements_1h": sum(t in self.engagement for t in recent),
            "rt_views_1h": sum(t == "view" for t in recent),
            "rt_skips_1h": sum(t == "skip" for t in recent),
            "rt_last_viewed": list(reversed(w.viewed)),
        }


class EventSink:
    """Validate, store and push one batch of posted events at a time (thread-safe)."""

    def __init__(
        self,
        paths: DataPaths,
        *,
        key: bytes,
        limits: Limits,
        known_content: set[str],
        push: Callable[[pd.DataFrame], None] | None = None,
        last_n_viewed: int = 20,
        realtime_users: int = 20_000,
        dedupe_retention_s: float | None = None,
    ) -> None:
        from components.serving.batches import StreamStore

        self.paths = paths
        self.key = key
        self.limits = limits
        self.known_content = set(known_content)
        self.push = push
        self.realtime = RealtimeFeatures(last_n_viewed, realtime_users)
        self.store = StreamStore(paths)
        self.writer_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # names this sink's batches
        self._lock = threading.Lock()
        self.listeners: list[Callable[[pd.DataFrame], None]] = []  # e.g. the online-update buffer
        self.replayed_seq: int | None = None  # the last batch :meth:`replay` read
        self.push_failures = 0  # batches whose real-time push to the online store failed (stored all the same)
        self.dedupe_retention_s = dedupe_retention_s  # None: ids stay in the commit log for good
        self._next_prune_s = 0.0

    def prune_ids(self, now_s: float | None = None) -> int:
        """At most every ``PRUNE_EVERY_S``: drop from the commit log the ids committed more than
        ``dedupe_retention_s`` ago (:meth:`~components.serving.commits.CommitLog.forget_ids`);
        returns how many went."""
        now_s = time.time() if now_s is None else now_s
        if self.dedupe_retention_s is None or now_s < self._next_prune_s:
            return 0
        self._next_prune_s = now_s + PRUNE_EVERY_S
        removed = self.store.log.forget_ids(now_s - self.dedupe_retention_s)
        if removed:
            log.info("commit log: %d event ids older than %.0f h pruned", removed, self.dedupe_retention_s / 3600)
        return removed

    def accept(self, records: Sequence[Any], now: pd.Timestamp) -> BatchResult:
        """Check, store (all or nothing, see the module doc) and push one posted batch."""
        from components.data.ingestion.decode import decode_records
        from components.data.ingestion.process import process_drops, uploads_in

        decoded = decode_records(records, "api")
        if decoded.dropped_keys:
            log.info("dropped %d unknown event keys, e.g. %s", decoded.dropped_keys, list(decoded.dropped_names))
        frame = decoded.frame
        with self._lock:
            self.prune_ids()
            uploads = uploads_in(frame) if len(frame) else set()
            outcome = next(
                iter(process_drops([decoded], known_content=self.known_content | uploads, key=self.key, now=now, limits=self.limits))
            )
            errors = [
                EventError(int(q["record_no"]) - 1, str(q["reason"]), str(q["detail"])) for _, q in outcome.quarantine.iterrows()
            ]
            # duplicates: the commit log's unique index (shared by the workers, kept across
            # restarts) is the one place asked; an in-memory cache of recent ids saved no lookup
            # (new ids are looked up anyway) and cost ~170 bytes an id, up to 170 MB a worker
            done = self.store.commit(outcome.events, outcome.quarantine, self.writer_id)
            self.known_content |= uploads
            events = done.events
            if done.duplicates:
                errors += _duplicate_errors(frame, outcome.quarantine, done.duplicates)
            updated = self._update_realtime(events, now)
        duplicates = sum(e.reason == "duplicate_event_id" for e in errors)
        result = BatchResult(
            received=len(records),
            accepted=len(events),
            rejected=len(errors) - duplicates,
            duplicates=duplicates,
            errors=sorted(errors, key=lambda e: e.index),
            users_updated=updated,
            dropped_keys=decoded.dropped_keys,
        )
        if not result.reconciles():  # a bug, never a user error: fail loudly
            raise RuntimeError(f"event batch does not reconcile: {result}")
        if len(events):
            frame_out = events.to_pandas()
            frame_out.attrs["received_s"] = time.time()
            for listener in self.listeners:
                listener(frame_out)
        return result

    def recover(self) -> dict[str, int]:
        """Start-up: finish or drop what a crash left in staging (see :meth:`StreamStore.recover`)."""
        return self.store.recover()

    def replay(self, listeners: Iterable[Callable[[pd.DataFrame], None]] = ()) -> int:
        """Start-up: fold every committed batch, in commit order, into this sink's real-time
        windows and hand it to ``listeners`` (the engine's seen sets,
        moderation and interest), so a restart loses no streamed state. Returns the events read."""
        listeners = list(listeners)
        n = 0
        last = 0
        for batch in self.store.batches():
            last = batch.seq
            if batch.n_events == 0:
                continue
            try:
                frame = self.store.read(batch.name)
            except Exception:
                log.exception("replay: committed batch %s unreadable; skipped", batch.name)
                continue
            frame.attrs["received_s"] = batch.committed_s
            self._absorb(frame, listeners)
            n += len(frame)
        self.replayed_seq = last
        log.info("replayed %d streamed events (%d batches)", n, last)
        return n

    def absorb(self, events: pd.DataFrame) -> None:
        """Events another process accepted into the same stream (see :class:`StreamFollower`):
        remembered for duplicate detection and folded into the real-time windows (not pushed:
        their writer pushed them), then handed to the listeners like this sink's own."""
        self._absorb(events, self.listeners)

    def _absorb(self, events: pd.DataFrame, listeners: Sequence[Callable[[pd.DataFrame], None]]) -> None:
        if events is None or len(events) == 0:
            return
        table = pa.Table.from_pandas(events, preserve_index=False)
        with self._lock:
            self._update_realtime(table, pd.Timestamp.now(tz="UTC"), push=False)
        for listener in listeners:
            listener(events)

    def _update_realtime(self, events: pa.Table, now: pd.Timestamp, push: bool = True) -> int:
        if len(events) == 0:
            return 0
        users = events["user_id"].to_pylist()
        types = events["event_type"].to_pylist()
        contents = events["content_id"].to_pylist()
        import pyarrow.compute as pc

        stamps = pc.cast(events["timestamp"], pa.timestamp("s", tz="UTC"), safe=False).cast(pa.int64()).to_pylist()
        touched: dict[str, None] = {}
        for u, t, c, ts in zip(users, types, contents, stamps, strict=True):
            if u is None or t == "content_upload":
                continue
            self.realtime.add(u, int(ts), t, c)
            touched[u] = None
        if not touched:
            return 0
        if not push:
            return 0
        now_s = int(now.timestamp())
        rows = pd.DataFrame([self.realtime.row(u, now_s) for u in touched if u in self.realtime])
        if self.push is not None:
            try:
                self.push(rows)
            except Exception as exc:  # the events are committed: an online-store outage must not refuse them
                self.push_failures += 1
                log.warning("real-time features of %d users not pushed (%s: %s); the events are stored", len(rows), type(exc).__name__, exc)
                return 0
        return len(rows)


def _duplicate_errors(frame: pd.DataFrame, quarantine: pd.DataFrame, stored: Iterable[str]) -> list[EventError]:
    """Per-event errors for the valid events whose id was already stored (their record is the
    batch's record with that id that was not quarantined)."""
    stored = set(stored)
    refused = set(quarantine["record_no"].astype("int64").tolist()) if len(quarantine) else set()
    out: list[EventError] = []
    for no, eid in zip(frame["_record_no"].tolist(), frame["event_id"].tolist(), strict=True):
        if eid in stored and int(no) not in refused:
            out.append(EventError(int(no) - 1, "duplicate_event_id", f"event_id {eid!r} was already ingested"))
            stored.discard(eid)
    return out


class StreamFollower:
    """Follows the commit log for batches other processes committed (several server workers
    share one stream): each new batch's events go to :meth:`EventSink.absorb`, so every
    worker's seen-contents, real-time interest, moderation counts and real-time feature windows
    follow all the events, not only those it received, within ``poll_s``.

    A poll asks the log for the batches after the last one taken (O(new batches), no listing of
    the stream). A batch that cannot be read (not placed yet, or damaged) is tried again on the
    next polls, keeping the order; after ``max_tries`` polls it is skipped with an error logged
    (and listed in ``skipped``). It starts after the batches :meth:`EventSink.replay` read, or
    after the newest committed batch."""

    def __init__(self, sink: EventSink, poll_s: float = 0.25, max_tries: int = 40) -> None:
        self.sink = sink
        self.poll_s = float(poll_s)
        self.max_tries = int(max_tries)
        self.after = sink.replayed_seq if sink.replayed_seq is not None else sink.store.log.last_seq()
        self._tries: dict[int, int] = {}
        self.skipped: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.absorbed = 0  # events taken from other writers

    def poll(self) -> int:
        """Absorb the batches committed since the last poll; the number of events taken."""
        taken = 0
        for batch in self.sink.store.batches(self.after):
            if batch.writer != self.sink.writer_id and batch.n_events > 0:
                try:
                    frame = self.sink.store.read(batch.name)
                except Exception as exc:
                    tries = self._tries[batch.seq] = self._tries.get(batch.seq, 0) + 1
                    if tries < self.max_tries:
                        break  # keep the order: next poll
                    log.error("stream batch %s unreadable after %d tries (%s): skipped", batch.name, tries, exc)
                    self.skipped.append(batch.name)
                else:
                    frame.attrs["received_s"] = batch.committed_s
                    self.sink.absorb(frame)
                    taken += len(frame)
            self._tries.pop(batch.seq, None)
            self.after = batch.seq
        self.absorbed += taken
        return taken

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.poll_s):
                try:
                    self.poll()
                except Exception:
                    log.exception("event stream poll failed")

        self._thread = threading.Thread(target=loop, daemon=True, name="stream-follower")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def read_stream_events(paths: DataPaths) -> pd.DataFrame:
    """Every committed event accepted through the API so far (empty frame when none)."""
    from components.serving.batches import StreamStore

    return StreamStore(paths).read_all()


def limits_from(params: Mapping[str, Any]) -> Limits:
    from components.data.ingestion.rules import Limits

    return Limits.from_params(params)
