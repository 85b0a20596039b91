"""Decoding drop files (JSON Lines, Parquet) into a frame of candidate events plus early rejects.

A JSON Lines line can fail before validation (not UTF-8, cut off, not JSON, not an object);
such lines are rejected here with their reason. Parquet drops are typed and decode as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq

from components.core.frames import arrow_string_mapper
from components.data.ingestion.rules import IngestError, quarantine_frame


@dataclass(frozen=True)
class Decoded:
    """Records decoded from one drop file: a frame of candidates and the records that failed."""

    source: str
    frame: pd.DataFrame  # one row per decoded record, column ``_record_no``
    rejected: pd.DataFrame  # QUARANTINE_SCHEMA columns
    n_in: int
    n_blank: int = 0


def _decode_line(raw: bytes, is_cut: bool) -> dict[str, Any] | tuple[str, str, str]:
    """One JSON Lines line: its object, or ``(reason, detail, raw text)`` when it does not decode.

    ``is_cut`` says the line is the file's last and has no newline (a cut-off producer).
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            "invalid_utf8",
            f"line is not valid UTF-8: {exc.reason} at byte {exc.start}",
            raw.decode("utf-8", errors="backslashreplace"),
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if is_cut:
            return (
                "truncated_line",
                "last line of the file is incomplete (no newline, JSON cut off)",
                raw.decode("utf-8"),
            )
        return "malformed_json", f"not valid JSON: {exc}", raw.decode("utf-8")
    if not isinstance(obj, dict):
        return (
            "not_an_object",
            f"expected a JSON object, got {type(obj).__name__}",
            raw.decode("utf-8"),
        )
    return obj


def decode_jsonl(data: bytes, source: str) -> Decoded:
    """Split JSON Lines bytes into records; undecodable lines are rejected with a reason.

    A last line without its newline that does not parse is a *truncated* line (the producer
    was cut off), which is reported apart from other malformed JSON. Blank lines are not events
    and are only counted.
    """
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    if ends_with_newline:
        lines = lines[:-1]
    records: list[dict[str, Any]] = []
    record_nos: list[int] = []
    rejected: list[dict[str, Any]] = []
    n_blank = 0
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        if not raw.strip():
            n_blank += 1
            continue
        decoded = _decode_line(raw, is_cut=i == last and not ends_with_newline)
        if isinstance(decoded, dict):
            records.append(decoded)
            record_nos.append(i + 1)
            continue
        reason, detail, text = decoded
        rejected.append(
            {"source": source, "record_no": i + 1, "reason": reason, "detail": detail, "raw": text}
        )
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame["_record_no"] = np.asarray(record_nos, dtype="int64")
    n_in = len(lines) - n_blank
    return Decoded(source, frame, quarantine_frame(rejected), n_in=n_in, n_blank=n_blank)


def decode_parquet(path: Path, source: str) -> Decoded:
    """Read a Parquet drop; string columns stay Arrow-backed to keep memory low."""
    table = pq.read_table(path)
    frame = table.to_pandas(types_mapper=arrow_string_mapper, self_destruct=True)
    frame["_record_no"] = np.arange(1, len(frame) + 1, dtype="int64")
    return Decoded(source, frame, quarantine_frame([]), n_in=len(frame))


def decode_file(path: Path, source: str | None = None) -> Decoded:
    """Decode one drop file by its suffix (``source`` names it in quarantine records)."""
    src = source or path.name
    if path.suffix == ".parquet":
        return decode_parquet(path, src)
    if path.suffix in {".jsonl", ".json", ".ndjson"}:
        return decode_jsonl(path.read_bytes(), src)
    raise IngestError(f"{path}: unsupported drop format (expected .parquet or .jsonl)")
