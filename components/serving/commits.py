"""The event stream's commit log: which batches are committed, in order, and every stored
``event_id`` (a unique index), in one SQLite database ``data/stream/commits.sqlite``.

Why SQLite: the API's server processes (``RECO_WORKERS``) share one stream and must agree on
which ids are stored, across restarts too. SQLite (standard library, WAL journal,
``synchronous=FULL``) gives a durable unique index and a cross-process write lock
(``BEGIN IMMEDIATE``) without another service; a batch's commit is one transaction.

The protocol (:class:`~components.serving.events.EventSink`): a batch is written and fsynced
in ``data/stream/.staging/<batch>/``; then, holding the write lock, the ids already stored
are dropped and the batch row and its ids are inserted (the commit point: a crash before it
leaves an uncommitted staging folder that start-up deletes; after it the staged files are
complete and start-up moves them into place if the process died first); then the staged folder
is renamed into ``data/stream/events/<batch>/`` in one step. Readers take only committed
batches (:meth:`CommitLog.since`), so nobody sees part of a batch.

Ids are kept for ``serving.dedupe_retention_h`` after their batch's commit and then pruned
(:meth:`CommitLog.forget_ids`, indexed by batch), so the log grows with a week of traffic, not
with all of it; the batch rows themselves (one per batch) stay.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    writer TEXT NOT NULL,
    committed_s REAL NOT NULL,
    n_events INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS event_ids (
    event_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_ids_by_seq ON event_ids (seq);
"""
#: ids per ``IN (...)`` query (below SQLite's default bound of host parameters)
_CHUNK = 500


@dataclass(frozen=True)
class Batch:
    """One committed batch: its order, folder name, the writing process and the commit time."""

    seq: int
    name: str
    writer: str
    committed_s: float
    n_events: int


class CommitLog:
    """The committed batches and stored event ids of one stream (thread-safe; one connection
    per instance, one instance per process)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def known(self, event_ids: Sequence[str]) -> set[str]:
        """The ids among ``event_ids`` that are stored already."""
        with self._lock:
            return self._known(event_ids)

    def _known(self, event_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(dict.fromkeys(e for e in event_ids if isinstance(e, str)))
        for i in range(0, len(ids), _CHUNK):
            part = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT event_id FROM event_ids WHERE event_id IN ({marks})", part)
            found.update(r[0] for r in rows)
        return found

    @contextmanager
    def writing(self) -> Iterator[Writer]:
        """A write transaction holding the stream's cross-process write lock: commits when the
        block ends normally, rolls back on an exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Writer(self)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def since(self, seq: int) -> list[Batch]:
        """The batches committed after ``seq``, in commit order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, name, writer, committed_s, n_events FROM batches WHERE seq > ? ORDER BY seq", (int(seq),)
            ).fetchall()
        return [Batch(*r) for r in rows]

    def names(self) -> set[str]:
        """Every committed batch's name."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT name FROM batches")}

    def last_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM batches").fetchone()
        return int(row[0])

    def forget_ids(self, committed_before_s: float) -> int:
        """Prune the ids of the batches committed before ``committed_before_s`` (the batch rows
        stay: one small row each, which start-up recovery reads); returns the ids removed. A
        retried event older than that is stored again by the API and dropped by ``ingest``,
        which dedupes by event id over everything it stores."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "DELETE FROM event_ids WHERE seq <= "
                    "(SELECT COALESCE(MAX(seq), 0) FROM batches WHERE committed_s < ?)",
                    (float(committed_before_s),),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return int(cur.rowcount)

    def count_ids(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM event_ids").fetchone()[0])


class Writer:
    """Inside :meth:`CommitLog.writing`: look up stored ids and add a batch."""

    def __init__(self, log_: CommitLog) -> None:
        self._log = log_

    def known(self, event_ids: Sequence[str]) -> set[str]:
        return self._log._known(event_ids)

    def add(self, name: str, writer: str, event_ids: Iterable[str], *, committed_s: float | None = None) -> int:
        """Insert the batch row and its ids (a repeated id raises: the caller dropped the known
        ones under this same lock); returns the batch's sequence number."""
        ids = list(event_ids)
        cur = self._log._db.execute(
            "INSERT INTO batches (name, writer, committed_s, n_events) VALUES (?, ?, ?, ?)",
            (name, writer, time.time() if committed_s is None else committed_s, len(ids)),
        )
        seq = int(cur.lastrowid or 0)
        self._log._db.executemany("INSERT INTO event_ids (event_id, seq) VALUES (?, ?)", ((e, seq) for e in ids))
        return seq
