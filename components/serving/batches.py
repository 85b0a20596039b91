"""The event stream's files: one batch written, committed and placed all or nothing
(:class:`StreamStore`), start-up recovery, and reading committed batches back.

Layout under ``data/stream/``::

    .staging/<batch>/events/event_date=YYYY-MM-DD/<batch>.parquet   while a batch is written
    .staging/<batch>/quarantine/<batch>.parquet
    events/<batch>/event_date=YYYY-MM-DD/<batch>.parquet            committed, placed
    quarantine/<batch>.parquet
    commits.sqlite                                                  the commit log (ids, order)

The steps and why they are safe are in :mod:`components.serving.commits`. Readers of
``events/`` see a batch appear whole (one directory rename); the hidden ``.staging`` folder is
skipped by Arrow datasets. Hand-written over :mod:`os`: no library offers a multi-file atomic
commit on a plain file system, and the steps are few.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from components.core.catalog import DataPaths
from components.core.io import fsync_dir, fsync_file
from components.serving.commits import Batch, CommitLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Committed:
    """What a commit stored: the events (ids already stored removed), those ids, its batch."""

    events: pa.Table
    duplicates: list[str]
    name: str | None  # None: nothing was left to store
    seq: int | None


def write_events(events: pa.Table, out_dir: Path, basename: str) -> int:
    """The ingestion's partitioned writer (a seam the fault-injection tests replace)."""
    from components.data.ingestion.store import write_events as write

    return write(events, out_dir, basename=basename)


class StreamStore:
    """The stream's folders and commit log (one per process; thread-safe through the log)."""

    def __init__(self, paths: DataPaths, log_: CommitLog | None = None) -> None:
        base = paths.of("stream")
        self.base = base
        self.events_dir = paths.of("stream_events")
        self.quarantine_dir = base / "quarantine"
        self.staging_dir = base / ".staging"
        for d in (self.events_dir, self.quarantine_dir, self.staging_dir):
            d.mkdir(parents=True, exist_ok=True)
        fsync_dir(base)
        self.log = log_ if log_ is not None else CommitLog(paths.of("stream_index"))
        self.unplaced: set[str] = set()  # committed here, not yet renamed into place

    # ---- writing

    def commit(
        self, events: pa.Table, quarantine: pd.DataFrame, writer: str, known: Iterable[str] = ()
    ) -> Committed:
        """Store one batch all or nothing; ids already stored (``known``, or in the commit log
        under its lock, whichever worker stored them) are left out and returned. On an error
        before the commit nothing is stored; after it, the batch is placed later
        (:meth:`place_pending`) and the error raised."""
        self.place_pending()
        name = f"api-{pd.Timestamp.now(tz='UTC').strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
        staging = self.staging_dir / name
        committed = False
        try:
            with self.log.writing() as tx:
                ids = events["event_id"].to_pylist() if len(events) else []
                hint = set(known)
                stored = {e for e in ids if e in hint} | tx.known([e for e in ids if e not in hint])
                if stored:
                    events = events.filter(pa.array(np.array([e not in stored for e in ids], dtype=bool)))
                if len(events) == 0 and len(quarantine) == 0:
                    return Committed(events, sorted(stored), None, None)
                self._stage(staging, name, events, quarantine)
                seq = tx.add(name, writer, events["event_id"].to_pylist() if len(events) else [])
            committed = True
        finally:
            if not committed:
                shutil.rmtree(staging, ignore_errors=True)
        try:
            self._place(name)
        except BaseException:
            self.unplaced.add(name)
            raise
        return Committed(events, sorted(stored), name, seq)

    def _stage(self, staging: Path, name: str, events: pa.Table, quarantine: pd.DataFrame) -> None:
        """Write the batch's files under ``staging`` and fsync every file and folder."""
        staging.mkdir(parents=True)
        if len(events):
            write_events(events, staging / "events", basename=name)
        if len(quarantine):
            (staging / "quarantine").mkdir()
            quarantine.astype({"record_no": "int64"}).to_parquet(staging / "quarantine" / f"{name}.parquet", index=False)
        folders = [staging]
        for path in sorted(staging.rglob("*")):
            if path.is_dir():
                folders.append(path)
            else:
                fsync_file(path)
        for d in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)
        fsync_dir(self.staging_dir)

    def _place(self, name: str) -> None:
        """Move a committed batch from staging into place (each step idempotent) and fsync."""
        staging = self.staging_dir / name
        moves = [
            (staging / "events", self.events_dir / name),
            (staging / "quarantine" / f"{name}.parquet", self.quarantine_dir / f"{name}.parquet"),
        ]
        for src, dst in moves:
            if src.exists() and not dst.exists():
                try:
                    os.replace(src, dst)
                except FileNotFoundError:  # another process's recovery placed it meanwhile
                    if not dst.exists():
                        raise
        fsync_dir(self.events_dir)
        fsync_dir(self.quarantine_dir)
        shutil.rmtree(staging, ignore_errors=True)
        fsync_dir(self.staging_dir)
        self.unplaced.discard(name)

    def place_pending(self) -> None:
        """Place the batches this process committed but could not move (a failed rename)."""
        for name in sorted(self.unplaced):
            self._place(name)

    # ---- start-up

    def recover(self) -> dict[str, int]:
        """Under the commit lock: committed batches left in staging are placed (roll forward),
        uncommitted ones deleted (never acknowledged), and batch folders the log does not know
        (a lost or deleted commit log) indexed again. Returns the counts."""
        out = {"placed": 0, "dropped": 0, "indexed": 0}
        with self.log.writing() as tx:
            names = self.log.names()
            for staging in sorted(p for p in self.staging_dir.iterdir()):
                if staging.name in names:
                    self._place(staging.name)
                    out["placed"] += 1
                else:
                    shutil.rmtree(staging, ignore_errors=True) if staging.is_dir() else staging.unlink()
                    out["dropped"] += 1
            fsync_dir(self.staging_dir)
            for folder in sorted(self.events_dir.iterdir()):
                if folder.name in names or not folder.is_dir() or folder.name.startswith((".", "event_date=")):
                    continue
                ids = [e for e in self.read(folder.name)["event_id"].tolist() if isinstance(e, str)]
                fresh = [e for e in dict.fromkeys(ids) if e not in tx.known(ids)]
                tx.add(folder.name, "recovered", fresh, committed_s=folder.stat().st_mtime)
                out["indexed"] += 1
        if any(out.values()):
            log.warning("event stream recovery: %s", out)
        return out

    # ---- reading

    def read(self, name: str) -> pd.DataFrame:
        """The events of one committed batch (``event_date`` left out: ``timestamp`` holds it),
        from staging if it is not in place yet (committed there: complete and fsynced)."""
        from components.data.ingestion.store import read_event_table

        folder = self.events_dir / name
        if not folder.exists():
            folder = self.staging_dir / name / "events"
        if not folder.exists():
            raise FileNotFoundError(f"{self.events_dir / name}: batch not found")
        table = read_event_table(folder)
        if "event_date" in table.column_names:
            table = table.drop_columns(["event_date"])
        return table.to_pandas()

    def batches(self, after: int = 0) -> list[Batch]:
        """The committed batches after sequence number ``after``, in order."""
        return self.log.since(after)

    def read_all(self) -> pd.DataFrame:
        """Every committed event (empty frame when none), in commit order."""
        frames = [self.read(b.name) for b in self.batches() if b.n_events > 0]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
