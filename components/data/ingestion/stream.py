"""Served traffic back into the batch pipeline: the API's event stream as an ingest input.

The stream (``data/stream/events/<batch>/event_date=.../*.parquet``) holds committed batches
only: a batch is written in ``data/stream/.staging`` and renamed into ``events/`` in one step
after its commit (:mod:`components.serving.commits`), so reading the ``events`` folder reads
what the API acknowledged. Its events were validated and pseudonymised by the same code when
they were accepted (:class:`components.serving.events.EventSink` runs
:func:`~components.data.ingestion.process.process_drops`); here every file is validated again
with the same checks (:func:`~components.data.ingestion.validate.validate_events`: the rules
may have changed, and a file could have been altered), without pseudonymising again (the user
ids already are pseudonyms). Exactly once by ``event_id``: an id already stored from the drop,
or earlier in the stream, is a duplicate (quarantined with reason ``duplicate_event_id``).

A ``content_upload`` in the stream adds its content to the content table from its metadata
(category, tags, description, duration), so uploads made through the API reach training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc

from components.core import schema
from components.data.ingestion.decode import decode_parquet
from components.data.ingestion.process import STORED_SCHEMA
from components.data.ingestion.rules import DUPLICATE, Limits, quarantine_frame
from components.data.ingestion.validate import validate_events


@dataclass(frozen=True)
class StreamOutcome:
    """The stream's events to store, its quarantine rows, counts and the contents it uploaded."""

    events: pa_arrow.Table  # STORED_SCHEMA
    quarantine: pd.DataFrame
    n_in: int
    stored: int
    quarantined: int
    duplicates: int
    batches: int
    content: pd.DataFrame  # CONTENT_SCHEMA rows of the stream's uploads


def stream_files(stream_dir: Path) -> list[Path]:
    """The stream's Parquet files, batch by batch (batch names sort in commit order), then day."""
    if not stream_dir.is_dir():
        return []
    return sorted(stream_dir.glob("*/event_date=*/*.parquet"), key=lambda p: (p.parent.parent.name, p.parent.name, p.name))


def ingest_stream(
    stream_dir: Path, *, stored_ids: set[str], known_content: set[str], now: pd.Timestamp, limits: Limits
) -> StreamOutcome:
    """Validate and deduplicate the stream's committed events against ``stored_ids`` (the drop's)."""
    files = stream_files(stream_dir)
    seen = set(stored_ids)
    parts: list[pa_arrow.Table] = []
    rejected: list[pd.DataFrame] = []
    n_in = n_bad = n_dup = 0
    for path in files:
        source = f"stream:{path.relative_to(stream_dir)}"
        d = decode_parquet(path, source)
        n_in += d.n_in
        v = validate_events(d.frame.drop(columns=["unknown_content"], errors="ignore"), source, now, limits)
        n_bad += len(v.rejected)
        table = v.valid
        ids = table["event_id"].to_pylist()
        keep = np.ones(len(ids), dtype=bool)
        for i, e in enumerate(ids):
            if e in seen:
                keep[i] = False
            else:
                seen.add(e)
        dup_no = np.asarray(table["_record_no"].to_numpy(), dtype="int64")[~keep]
        dup_ids = [e for e, k in zip(ids, keep, strict=True) if not k]
        n_dup += len(dup_ids)
        rejected += [v.rejected, _duplicates(source, dup_no, dup_ids)]
        table = table.filter(pa_arrow.array(keep))
        parts.append(table)
    valid = [t for t in parts if len(t)]
    uploads = upload_content(valid)
    known = pa_arrow.array(sorted(known_content | set(uploads["content_id"])), type=pa_arrow.string())
    events = pa_arrow.concat_tables([_stored(t, known) for t in valid]) if valid else STORED_SCHEMA.empty_table()
    quarantine = pd.concat(rejected, ignore_index=True) if rejected else quarantine_frame([])
    return StreamOutcome(events, quarantine, n_in, len(events), n_bad, n_dup, len({p.parent.parent for p in files}), uploads)


def _duplicates(source: str, record_no: np.ndarray, ids: list[str]) -> pd.DataFrame:
    if not ids:
        return quarantine_frame([])
    return pd.DataFrame(
        {
            "source": [source] * len(ids),
            "record_no": record_no,
            "reason": [DUPLICATE] * len(ids),
            "detail": [f"event_id {e!r} was already ingested" for e in ids],
            "raw": [json.dumps({"event_id": e}) for e in ids],
        }
    )


def _stored(table: pa_arrow.Table, known: pa_arrow.Array) -> pa_arrow.Table:
    """The validated rows in the stored layout, ``unknown_content`` against the known contents."""
    cid = table["content_id"]
    unknown = pc.and_(pc.is_valid(cid), pc.invert(pc.fill_null(pc.is_in(cid, value_set=known), False)))
    cols = {c: table[c] for c in STORED_SCHEMA.names if c in table.column_names}
    cols["unknown_content"] = unknown
    return pa_arrow.Table.from_arrays(
        [cols[f.name].cast(f.type) if f.name in cols else pa_arrow.nulls(len(table), f.type) for f in STORED_SCHEMA],
        schema=STORED_SCHEMA,
    )


def upload_content(tables: list[pa_arrow.Table]) -> pd.DataFrame:
    """Content rows (CONTENT_SCHEMA) from the ``content_upload`` events' metadata."""
    rows = []
    for t in tables:
        ups = t.filter(pc.equal(t["event_type"], "content_upload"))
        for r in ups.select(["content_id", "creator_id", "timestamp", "metadata"]).to_pylist():
            try:
                meta = json.loads(r["metadata"] or "{}")
            except ValueError:
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
            tags = meta.get("tags")
            rows.append({
                "content_id": r["content_id"], "creator_id": r["creator_id"], "upload_timestamp": r["timestamp"],
                "tags": [str(x) for x in tags] if isinstance(tags, list) else None,
                "description": meta.get("description"), "category": meta.get("category"),
                "duration_s": float(meta["duration_s"]) if isinstance(meta.get("duration_s"), int | float) else None,
                "audio_id": None, "visual_embedding": None, "audio_embedding": None,
            })  # fmt: skip
    cols = schema.CONTENT_SCHEMA.names
    if not rows:
        return pd.DataFrame({c: [] for c in cols})
    return pd.DataFrame(rows, columns=cols).drop_duplicates("content_id", keep="first")
