"""Per-file ingestion: validate, deduplicate by ``event_id`` and pseudonymise, file by file.

Every input record ends in exactly one place (stored, quarantined, or counted as a duplicate),
and events about a content id that is in neither the content table nor an upload event are kept
and flagged (``unknown_content``), not lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc

from components.core import schema
from components.core.frames import arrow_string_mapper
from components.data.ingestion.decode import Decoded
from components.data.ingestion.pseudonyms import pseudonymise_arrow, pseudonymise_raw
from components.data.ingestion.rules import DUPLICATE, Limits, quarantine_frame
from components.data.ingestion.validate import validate_events


@dataclass(frozen=True)
class FileReport:
    """Counts of one drop file: records in, stored, quarantined, duplicates, blank lines."""

    source: str
    n_in: int
    stored: int
    quarantined: int
    duplicates: int
    blank_lines: int = 0


@dataclass(frozen=True)
class FileOutcome:
    """One drop file after validation, dedupe and pseudonymisation."""

    events: pa_arrow.Table  # EVENT_SCHEMA without ``event_date``
    quarantine: pd.DataFrame  # QUARANTINE_SCHEMA columns, duplicates included
    report: FileReport


STORED_SCHEMA = pa_arrow.schema([f for f in schema.EVENT_SCHEMA if f.name != "event_date"])


def process_drops(
    decoded: Iterable[Decoded],
    *,
    known_content: set[str],
    key: bytes,
    now: pd.Timestamp,
    limits: Limits,
    candidates: pa_arrow.Array | None = None,
) -> Iterator[FileOutcome]:
    """Validate, deduplicate and pseudonymise drop files one at a time (memory ~ one file).

    The first valid occurrence of an ``event_id`` (file order, then record order) wins; later
    ones are duplicates. ``known_content`` should include content uploaded anywhere in the
    drop. ``candidates`` are the ids that occur more than once among the drop's records (see
    :func:`repeated_ids`); only those need exact tracking. ``None`` tracks every id.
    """
    known = pa_arrow.array(sorted(known_content), type=pa_arrow.string())
    seen: set[str] = set()
    pseudonyms: dict[str, str] = {}
    for d in decoded:
        v = validate_events(d.frame, d.source, now, limits)
        table = v.valid
        keep = _keep_first(table["event_id"], seen, candidates)
        dups = table.filter(pa_arrow.array(~keep)) if not keep.all() else table.slice(0, 0)
        if len(dups) != 0:
            table = table.filter(pa_arrow.array(keep))
        cid = table["content_id"]
        unknown = pc.and_(pc.is_valid(cid), pc.invert(pc.fill_null(pc.is_in(cid, value_set=known), False)))
        columns = {c: table[c] for c in STORED_SCHEMA.names if c in table.column_names}
        columns["user_id"] = pseudonymise_arrow(table["user_id"], key, pseudonyms)
        columns["unknown_content"] = unknown
        events = pa_arrow.Table.from_arrays([columns[c] for c in STORED_SCHEMA.names], schema=STORED_SCHEMA)
        dup_ids = dups["event_id"].to_pylist()
        dup_rows = pd.DataFrame(
            {
                "source": [d.source] * len(dup_ids),
                "record_no": np.asarray(dups["_record_no"].to_numpy(), dtype="int64"),
                "reason": [DUPLICATE] * len(dup_ids),
                "detail": [f"event_id {e!r} was already ingested" for e in dup_ids],
                "raw": [json.dumps({"event_id": e}) for e in dup_ids],
            }
        )
        quarantine = pd.concat([d.rejected, v.rejected, dup_rows], ignore_index=True)
        if len(quarantine):  # no raw user id reaches the quarantine either
            quarantine["raw"] = pseudonymise_raw(quarantine["raw"], key, pseudonyms)
        report = FileReport(
            source=d.source,
            n_in=d.n_in,
            stored=len(events),
            quarantined=len(d.rejected) + len(v.rejected),
            duplicates=len(dup_ids),
            blank_lines=d.n_blank,
        )
        yield FileOutcome(events=events, quarantine=quarantine, report=report)


def _keep_first(ids: pa_arrow.ChunkedArray, seen: set[str], candidates: pa_arrow.Array | None) -> np.ndarray:
    """Mask of rows to keep: ids not seen before (updates ``seen`` with the candidate ids kept)."""
    keep = np.ones(len(ids), dtype=bool)
    if len(ids) == 0:
        return keep
    if candidates is None:
        rows = np.arange(len(ids))
    else:
        if len(candidates) == 0:
            return keep
        rows = np.flatnonzero(pc.fill_null(pc.is_in(ids, value_set=candidates), False).to_numpy(zero_copy_only=False))
    values = pc.take(ids, pa_arrow.array(rows)).to_pylist()
    for r, e in zip(rows, values, strict=True):
        if e in seen:
            keep[r] = False
        else:
            seen.add(e)
    return keep


def uploads_in(frame: pd.DataFrame) -> set[str]:
    """Content ids introduced by ``content_upload`` events in a decoded frame."""
    if "event_type" not in frame or "content_id" not in frame:
        return set()
    ups = frame.loc[frame["event_type"] == "content_upload", "content_id"]
    return {v for v in ups.tolist() if isinstance(v, str)}


def ingest_frames(
    decoded: Iterable[Decoded],
    *,
    known_content: set[str],
    key: bytes,
    now: pd.Timestamp,
    limits: Limits,
) -> tuple[pd.DataFrame, pd.DataFrame, list[FileReport]]:
    """In-memory ingestion of decoded drops: (events, quarantine, per-file reports).

    Pure: no file I/O. Used by tests and by callers that hold a small batch in memory.
    """
    decoded = list(decoded)
    uploads = set().union(*(uploads_in(d.frame) for d in decoded)) if decoded else set()
    outcomes = list(
        process_drops(decoded, known_content=known_content | uploads, key=key, now=now, limits=limits)
    )
    tables = [o.events for o in outcomes] or [STORED_SCHEMA.empty_table()]
    events = pa_arrow.concat_tables(tables).to_pandas(types_mapper=arrow_string_mapper)
    quarantine = (
        pd.concat([o.quarantine for o in outcomes], ignore_index=True) if outcomes else quarantine_frame([])
    )
    return events, quarantine, [o.report for o in outcomes]
