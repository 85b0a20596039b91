"""Whole-drop passes made before processing: the event files, uploaded content ids, repeated ids.

Each pass reads only the columns (or lines) it needs, so memory stays at one file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson
import pyarrow as pa_arrow
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.core.frames import repeated_rows


def scan_uploads(files: Sequence[Path]) -> set[str]:
    """Content ids uploaded anywhere in a drop (so events before the upload's file are known).

    Parquet files are read for two columns only; JSON Lines files only for lines that mention
    ``content_upload`` (the full validation happens later, file by file).
    """
    found: set[str] = set()
    for path in files:
        if path.suffix == ".parquet":
            t = pq.read_table(path, columns=["event_type", "content_id"])
            ups = t.filter(pc.equal(t["event_type"], "content_upload"))["content_id"]
            found.update(v for v in ups.to_pylist() if isinstance(v, str))
        else:
            for line in path.read_bytes().split(b"\n"):
                if b"content_upload" not in line:
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(obj, dict) and obj.get("event_type") == "content_upload" and isinstance(obj.get("content_id"), str):
                    found.add(obj["content_id"])
    return found


def list_drop_files(events_dir: Path) -> list[Path]:
    files = [p for p in events_dir.rglob("*") if p.is_file() and p.suffix in {".parquet", ".jsonl", ".json", ".ndjson"}]
    return sorted(files)


def repeated_ids(files: Sequence[Path]) -> pa_arrow.Array:
    """Event ids that occur more than once across a drop's records (valid or not).

    One hash pass over the id column; every other id is unique in the drop, so per-file
    deduplication only has to track these few exactly.
    """
    chunks: list[pa_arrow.Array] = []
    for path in files:
        if path.suffix == ".parquet":
            chunks.extend(pq.read_table(path, columns=["event_id"])["event_id"].chunks)
        else:
            ids = []
            for line in path.read_bytes().split(b"\n"):
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(obj, dict) and isinstance(obj.get("event_id"), str):
                    ids.append(obj["event_id"])
            chunks.append(pa_arrow.array(ids, type=pa_arrow.string()))
    if not chunks:
        return pa_arrow.array([], type=pa_arrow.string())
    ids = pa_arrow.concat_arrays([c.cast(pa_arrow.string()) for c in chunks])
    return pc.unique(pc.take(ids, pa_arrow.array(repeated_rows(ids))))
