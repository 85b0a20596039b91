"""The serving side's event consumer: ``POST /v1/events`` batches.

Each batch goes through the batch ingestion's own code (:func:`components.data.ingestion.decode.decode_jsonl`
and :func:`components.data.ingestion.process.process_drops`: the same schema checks, reasons, duplicate rule and
keyed-HMAC pseudonymisation), so an event accepted here would be accepted by ``dvc repro`` and
refused for the same reason. Then:

* valid events are appended durably to the stream event store ``data/stream/events/`` (same
  schema and day partitioning as ``data/raw/events``; ``data/raw`` itself is a DVC output that
  only the ingest stage writes), each batch as new files written to a staging folder and
  renamed into place, so a crash leaves the whole batch or none of it;
* refused events go to ``data/stream/quarantine/`` with their reason, and back to the caller
  as per-event errors; the valid events of the same batch are kept;
* the users' real-time features (``rt_*``: events / engagements / views / skips in the last
  hour, last event time, last viewed contents) are recomputed from a one-hour window kept in
  memory and pushed to Feast's push source, so the next online lookup sees them.

Counts reconcile per batch: ``received = accepted + rejected + duplicates``.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
import pyarrow as pa

from components.core.catalog import DataPaths
from components.core.io import fsync_dir, fsync_file
from components.core.schema import ENGAGEMENT_TYPES, USER_EVENT_TYPES

if TYPE_CHECKING:
    from components.data.ingestion.rules import Limits

log = logging.getLogger(__name__)

ONE_HOUR_S = 3600


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

    def reconciles(self) -> bool:
        return self.received == self.accepted + self.rejected + self.duplicates


@dataclass
class _UserWindow:
    events: deque[tuple[int, str, str | None]] = field(default_factory=deque)  # (ts_s, type, content)
    viewed: deque[str] = field(default_factory=deque)
    last_ts_s: int = 0


class RealtimeFeatures:
    """The ``rt_*`` user features from the events of the last hour, per user (in memory)."""

    def __init__(self, last_n_viewed: int = 20) -> None:
        self.last_n = last_n_viewed
        self.user_types = frozenset(USER_EVENT_TYPES)
        self.engagement = frozenset(ENGAGEMENT_TYPES)
        self._users: dict[str, _UserWindow] = {}

    def add(self, user_id: str, ts_s: int, event_type: str, content_id: str | None) -> None:
        w = self._users.setdefault(user_id, _UserWindow())
        w.events.append((ts_s, event_type, content_id))
        w.last_ts_s = max(w.last_ts_s, ts_s)
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


class RecentIds:
    """The most recent ``capacity`` ids (duplicate detection across batches): O(1) membership,
    insertion and eviction of the oldest. An ``OrderedDict``, because evicting from a plain
    dict with ``d.pop(next(iter(d)))`` rescans the deleted slots at its front on every call: in
    ``benchmarks/bench_event_dedupe.py`` a 10k-id batch went from 0.002 s to 0.3-0.7 s once 1M
    ids had passed (this: 0.006 s)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add_all(self, event_ids: Iterable[str]) -> None:
        """Remember ``event_ids``, forgetting the oldest beyond the capacity."""
        ids = self._ids
        for eid in event_ids:
            ids[eid] = None
        while len(ids) > self.capacity:
            ids.popitem(last=False)


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
        remember_ids: int = 1_000_000,
    ) -> None:
        self.paths = paths
        self.key = key
        self.limits = limits
        self.known_content = set(known_content)
        self.push = push
        self.realtime = RealtimeFeatures(last_n_viewed)
        self._seen = RecentIds(remember_ids)  # recent event ids (duplicates across batches)
        self._lock = threading.Lock()
        self.listeners: list[Callable[[pd.DataFrame], None]] = []  # e.g. the online-update buffer
        self.written: set[str] = set()  # names of the stream files this sink wrote

    def accept(self, records: Sequence[Any], now: pd.Timestamp) -> BatchResult:
        from components.data.ingestion.decode import decode_jsonl
        from components.data.ingestion.process import process_drops, uploads_in

        lines = b"".join(orjson.dumps(r) + b"\n" for r in records)
        decoded = decode_jsonl(lines, "api")
        with self._lock:
            frame = decoded.frame
            repeated = (
                frame["event_id"].map(lambda e: isinstance(e, str) and e in self._seen).to_numpy(dtype=bool)
                if "event_id" in frame and len(frame)
                else None
            )
            errors: list[EventError] = []
            if repeated is not None and repeated.any():
                for no, eid in zip(frame.loc[repeated, "_record_no"], frame.loc[repeated, "event_id"], strict=True):
                    errors.append(EventError(int(no) - 1, "duplicate_event_id", f"event_id {eid!r} was already ingested"))
                frame = frame[~repeated].reset_index(drop=True)
                decoded = type(decoded)(decoded.source, frame, decoded.rejected, decoded.n_in, decoded.n_blank)
            uploads = uploads_in(frame) if len(frame) else set()
            outcome = next(
                iter(process_drops([decoded], known_content=self.known_content | uploads, key=self.key, now=now, limits=self.limits))
            )
            self.known_content |= uploads
            for _, q in outcome.quarantine.iterrows():
                errors.append(EventError(int(q["record_no"]) - 1, str(q["reason"]), str(q["detail"])))
            events = outcome.events
            self._write(events, outcome.quarantine)
            self._seen.add_all(events["event_id"].to_pylist())
            updated = self._update_realtime(events, now)
        duplicates = sum(e.reason == "duplicate_event_id" for e in errors)
        result = BatchResult(
            received=len(records),
            accepted=len(events),
            rejected=len(errors) - duplicates,
            duplicates=duplicates,
            errors=sorted(errors, key=lambda e: e.index),
            users_updated=updated,
        )
        if not result.reconciles():  # a bug, never a user error: fail loudly
            raise RuntimeError(f"event batch does not reconcile: {result}")
        if len(events):
            frame_out = events.to_pandas()
            for listener in self.listeners:
                listener(frame_out)
        return result

    def _write(self, events: pa.Table, quarantine: pd.DataFrame) -> None:
        """Append the batch durably: staging folder, fsync, rename each file into place."""
        from components.data.ingestion.store import write_events

        base = self.paths.of("stream")
        name = f"api-{pd.Timestamp.now(tz='UTC').strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
        staging = base / ".staging" / name
        staging.mkdir(parents=True, exist_ok=True)
        try:
            if len(events):
                write_events(events, staging / "events", basename=name)
            if len(quarantine):
                (staging / "quarantine").mkdir()
                quarantine.astype({"record_no": "int64"}).to_parquet(staging / "quarantine" / f"{name}.parquet", index=False)
            for path in sorted(p for p in staging.rglob("*.parquet")):
                fsync_file(path)
                final = base / path.relative_to(staging)
                final.parent.mkdir(parents=True, exist_ok=True)
                self.written.add(final.name)
                os.replace(path, final)
                fsync_dir(final.parent)
        finally:
            for p in sorted(staging.rglob("*"), reverse=True):
                p.rmdir() if p.is_dir() else p.unlink()
            staging.rmdir()

    def absorb(self, events: pd.DataFrame) -> None:
        """Events another process accepted into the same stream (see :class:`StreamFollower`):
        remembered for duplicate detection and folded into the real-time windows (not pushed:
        their writer pushed them), then handed to the listeners like this sink's own."""
        if events is None or len(events) == 0:
            return
        table = pa.Table.from_pandas(events, preserve_index=False)
        with self._lock:
            self._seen.add_all(table["event_id"].to_pylist() if "event_id" in table.column_names else [])
            self._update_realtime(table, pd.Timestamp.now(tz="UTC"), push=False)
        for listener in self.listeners:
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
        rows = pd.DataFrame([self.realtime.row(u, now_s) for u in touched])
        if self.push is not None:
            self.push(rows)
        return len(rows)


class StreamFollower:
    """Tails the durable event stream for files other processes wrote (several server workers
    share one stream): each new file's events go to :meth:`EventSink.absorb`, so every worker's
    seen-contents, real-time interest, moderation counts and real-time feature windows follow
    all the events, not only those it received, within ``poll_s``.

    Files present when it starts are skipped (they precede this process's state, like the
    events the serving artefact set was exported from)."""

    def __init__(self, sink: EventSink, poll_s: float = 0.25) -> None:
        self.sink = sink
        self.poll_s = float(poll_s)
        self.folder = sink.paths.of("stream_events")
        self._known = set(self._files())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.absorbed = 0  # events taken from other writers

    def _files(self) -> list[str]:
        if not self.folder.exists():
            return []
        return [str(p) for p in self.folder.rglob("*.parquet")]

    def poll(self) -> int:
        """Absorb the files that appeared since the last poll; the number of events taken."""
        taken = 0
        for path in sorted(set(self._files()) - self._known):
            self._known.add(path)
            if Path(path).name in self.sink.written:
                continue
            try:
                frame = pd.read_parquet(path)
            except Exception:  # a file being replaced under us: next poll
                self._known.discard(path)
                log.exception("stream file %s unreadable; retrying", path)
                continue
            self.sink.absorb(frame)
            taken += len(frame)
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
    """Every event accepted through the API so far (empty frame when none)."""
    from components.data.ingestion.store import read_events

    folder = paths.of("stream_events")
    if not folder.exists() or not any(folder.rglob("*.parquet")):
        return pd.DataFrame()
    return read_events(folder)


def limits_from(params: Mapping[str, Any]) -> Limits:
    from components.data.ingestion.rules import Limits

    return Limits.from_params(params)
