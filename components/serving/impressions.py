"""The impression log: one row per shown item (:data:`LOG_SCHEMA`: request, user, content,
position, model version, arm, propensity, score, shadow version and score, request time, the
model's input row), built by :func:`impression_rows` and buffered by :class:`ImpressionLog`,
which writes a Parquet file under ``data/logs/impressions/`` in the background every
``serving.log_flush_records`` rows, and whenever :meth:`ImpressionLog.flush` is called (the
server does every ``serving.log_flush_s``). Files are written atomically (temporary file,
fsync, rename, fsync of the folder: :func:`components.core.io.atomic_write_parquet`).

Nothing is lost to a failing write: its rows go back to the front of the buffer and the next
flush writes them. Memory stays bounded all the same: at most :data:`MAX_PENDING` writes are
queued (beyond, full buffers simply wait in the buffer), and a disk that refuses writes for long
makes the buffer drop its oldest rows beyond ``serving.log_buffer_max``, counted in
``dropped`` and logged."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from components.core.io import atomic_write_parquet
from components.serving.feed import FeedItem

log = logging.getLogger(__name__)

#: background writes queued at most; further full buffers wait in the buffer
MAX_PENDING = 2

LOG_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("user_id", pa.string()),
        ("content_id", pa.string()),
        ("position", pa.int32()),
        ("model_version", pa.string()),
        ("arm", pa.string()),
        ("propensity", pa.float64()),
        ("score", pa.float64()),
        ("model_score", pa.float64()),
        ("exploration", pa.bool_()),
        ("source", pa.string()),
        ("shadow_version", pa.string()),
        ("shadow_score", pa.float64()),
        ("degraded", pa.bool_()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        # the served model's input row (its feature_cols order): the log-and-join training data
        ("features", pa.list_(pa.float32())),
    ]
)


class ImpressionLog:
    """In-memory buffer of impression rows written as one Parquet file per flush.

    A full buffer (``flush_every`` rows) is handed to a background writer, so no request waits
    for a Parquet write (~15 ms for 1,000 rows with their feature snapshots); :meth:`flush`
    writes what is buffered and waits for the writer."""

    def __init__(
        self,
        directory: Path,
        flush_every: int = 1000,
        clock: Callable[[], float] = time.time,
        max_rows: int = 100_000,
    ) -> None:
        self.directory = Path(directory)
        self.flush_every = int(flush_every)
        self.max_rows = max(int(max_rows), self.flush_every)
        self.dropped = 0  # rows dropped because writes kept failing and the buffer was full
        self._clock = clock
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="impressions")
        self._pending: list[Any] = []
        self.files: list[Path] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(dict(r) for r in rows)
            if len(self._rows) < self.flush_every:
                return
            self._pending = [f for f in self._pending if not f.done()]
            if len(self._pending) >= MAX_PENDING:  # the disk is slow: wait in the buffer
                self._bound()
                return
            full, self._rows = self._rows, []
            self._pending.append(self._writer.submit(self._write_or_keep, full))

    def _bound(self) -> None:
        """Drop the oldest rows beyond ``max_rows`` (under the lock)."""
        extra = len(self._rows) - self.max_rows
        if extra > 0:
            del self._rows[:extra]
            self.dropped += extra
            log.error("impression log: writes keep failing; dropped the %d oldest rows (%d in all)", extra, self.dropped)

    def discard(self) -> None:
        """Drop the buffered rows (the warm-up's)."""
        with self._lock:
            self._rows.clear()

    def flush(self) -> Path | None:
        """Wait for the background writes, then write what is buffered (atomically: temporary
        file, fsync, rename); the file, None when nothing was buffered. Rows of a write that
        failed, in the background or here, are back in the buffer for the next flush (and this
        call raises), so a failing disk loses nothing that is still in memory."""
        with self._lock:
            pending, self._pending = self._pending, []
        for f in pending:
            with contextlib.suppress(Exception):  # logged by _write_or_keep; its rows are buffered again
                f.result()
        with self._lock:
            rows, self._rows = self._rows, []
        return self._write_or_keep(rows) if rows else None

    def _write_or_keep(self, rows: list[dict[str, Any]]) -> Path:
        """Write ``rows``; on failure put them back at the front of the buffer, log and raise."""
        try:
            return self._write(rows)
        except Exception:
            log.exception("impression log: writing %d rows failed; they stay buffered", len(rows))
            with self._lock:
                self._rows[:0] = rows
                self._bound()
            raise

    @staticmethod
    def _table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
        """Column by column (the feature snapshots as one flat float32 buffer)."""
        columns = []
        for f in LOG_SCHEMA:
            if f.name == "features":
                feats = [r.get("features") for r in rows]
                lengths = np.array([0 if v is None else len(v) for v in feats], dtype=np.int32)
                offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
                present = [np.asarray(v, dtype=np.float32) for v in feats if v is not None]
                values = np.concatenate(present) if present else np.zeros(0, dtype=np.float32)
                columns.append(
                    pa.ListArray.from_arrays(
                        pa.array(offsets), pa.array(values), mask=pa.array([v is None for v in feats])
                    )
                )
            else:
                columns.append(pa.array([r.get(f.name) for r in rows], type=f.type))
        return pa.Table.from_arrays(columns, schema=LOG_SCHEMA)

    def _write(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        table = self._table(rows)
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"impressions-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        atomic_write_parquet(path, table)
        self.files.append(path)
        log.debug("impression log: %d rows -> %s", len(rows), path)
        return path


def impression_rows(
    request_id: str,
    user_id: str,
    items: Sequence[FeedItem],
    timestamp: pd.Timestamp,
    *,
    arm: str,
    degraded: bool,
    model_version: str | None = None,
    shadow_version: str | None = None,
    rows: Sequence[int] | None = None,
    scores: np.ndarray | None = None,
    shadow_scores: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> Iterator[dict[str, Any]]:
    """The log rows of a feed's items; ``rows`` (default: the items' own order) index each
    item's candidate row in ``scores`` (the served model's), ``shadow_scores`` and ``features``
    (the model's input matrix)."""
    for j, it in enumerate(items):
        i = rows[j] if rows is not None else j
        yield {
            "request_id": request_id,
            "user_id": user_id,
            "content_id": it.content_id,
            "position": it.position,
            "model_version": model_version,
            "arm": arm,
            "propensity": it.propensity,
            "score": it.score,
            "model_score": float(scores[i]) if scores is not None else None,
            "exploration": it.exploration,
            "source": it.source,
            "shadow_version": shadow_version,
            "shadow_score": float(shadow_scores[i]) if shadow_scores is not None else None,
            "degraded": degraded,
            "timestamp": timestamp,
            "features": features[i] if features is not None else None,
        }
