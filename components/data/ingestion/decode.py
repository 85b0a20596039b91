"""Decoding drop files (JSON Lines, Parquet) into a frame of candidate events plus early rejects.

A JSON Lines line can fail before validation (not UTF-8, cut off, not JSON, not an object);
such lines are rejected here with their reason. Parquet drops are typed and decode as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq

from components.core import schema
from components.core.frames import arrow_string_mapper
from components.data.ingestion.rules import IngestError, quarantine_frame

#: The keys an event may carry; any other key is dropped (and counted) before the record
#: becomes a frame row, so unknown keys never become columns.
KNOWN_KEYS: frozenset[str] = frozenset(schema.DROP_EVENT_SCHEMA.names)
#: Records nested deeper than this are refused (``too_deep``), one record at a time.
MAX_DEPTH = 32


@dataclass(frozen=True)
class Decoded:
    """Records decoded from one drop file: a frame of candidates and the records that failed."""

    source: str
    frame: pd.DataFrame  # one row per decoded record, column ``_record_no``
    rejected: pd.DataFrame  # QUARANTINE_SCHEMA columns
    n_in: int
    n_blank: int = 0
    dropped_keys: int = 0  # unknown keys removed from the records (never stored)
    dropped_names: tuple[str, ...] = ()  # a few of them, for the log


def _depth_and_text(obj: Any, max_depth: int) -> tuple[str, str] | None:
    """``(reason, detail)`` when ``obj`` nests deeper than ``max_depth`` or holds text that is
    not valid Unicode (a lone surrogate); None when it is fine. Iterative: no recursion limit."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > max_depth:
                return "too_deep", f"record nests deeper than {max_depth} levels"
            for k, v in value.items():
                if isinstance(k, str) and not _is_unicode(k):
                    return "invalid_unicode", "a key is not valid Unicode (lone surrogate)"
                stack.append((v, depth + 1))
        elif isinstance(value, list):
            if depth > max_depth:
                return "too_deep", f"record nests deeper than {max_depth} levels"
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str) and not _is_unicode(value):
            return "invalid_unicode", "a text value is not valid Unicode (lone surrogate)"
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_raw(obj: Any, max_depth: int = 4, max_chars: int = 4096) -> str:
    """``obj`` as JSON text for a quarantine record, whatever it holds: containers below
    ``max_depth`` shown as ``"…"``, lone surrogates escaped, at most ``max_chars`` characters."""

    def cut(value: Any, depth: int) -> Any:
        if isinstance(value, dict | list) and depth >= max_depth:
            return "…"
        if isinstance(value, dict):
            return {str(k): cut(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(v, depth + 1) for v in value]
        return value

    return json.dumps(cut(obj, 0), ensure_ascii=True, default=str)[:max_chars]


def check_record(obj: Any, max_depth: int = MAX_DEPTH) -> tuple[dict[str, Any], list[str]] | tuple[str, str]:
    """One decoded record: ``(its known keys, the dropped unknown keys)``, or
    ``(reason, detail)`` when it is not an object, nests too deep or holds invalid Unicode."""
    if not isinstance(obj, dict):
        return "not_an_object", f"expected a JSON object, got {type(obj).__name__}"
    bad = _depth_and_text(obj, max_depth)
    if bad is not None:
        return bad
    if KNOWN_KEYS.issuperset(obj):
        return obj, []
    return {k: v for k, v in obj.items() if k in KNOWN_KEYS}, [str(k) for k in obj if k not in KNOWN_KEYS]


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


class _Collector:
    """The records of one drop as they are checked: kept ones, rejects, dropped keys."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.records: list[dict[str, Any]] = []
        self.record_nos: list[int] = []
        self.rejected: list[dict[str, Any]] = []
        self.dropped = 0
        self.dropped_names: dict[str, None] = {}

    def reject(self, record_no: int, reason: str, detail: str, raw: str) -> None:
        self.rejected.append({"source": self.source, "record_no": record_no, "reason": reason, "detail": detail, "raw": raw})

    def add(self, record_no: int, obj: Any) -> None:
        checked = check_record(obj)
        if isinstance(checked[0], str):
            reason, detail = checked
            self.reject(record_no, str(reason), str(detail), safe_raw(obj))
            return
        record, dropped = checked
        if dropped:
            self.dropped += len(dropped)
            if len(self.dropped_names) < 5:
                self.dropped_names.update(dict.fromkeys(dropped[:5]))
        self.records.append(record)  # type: ignore[arg-type]
        self.record_nos.append(record_no)

    def decoded(self, n_in: int, n_blank: int = 0) -> Decoded:
        # only known keys: the frame has at most len(KNOWN_KEYS) columns whatever was posted
        frame = pd.DataFrame.from_records(self.records) if self.records else pd.DataFrame()
        frame["_record_no"] = np.asarray(self.record_nos, dtype="int64")
        return Decoded(
            self.source, frame, quarantine_frame(self.rejected), n_in=n_in, n_blank=n_blank,
            dropped_keys=self.dropped, dropped_names=tuple(list(self.dropped_names)[:5]),
        )


def decode_records(records: Sequence[Any], source: str) -> Decoded:
    """Records already parsed (the API's JSON body): each checked on its own (see
    :func:`check_record`), so one bad record never costs its siblings."""
    out = _Collector(source)
    for i, obj in enumerate(records):
        out.add(i + 1, obj)
    return out.decoded(len(records))


def decode_jsonl(data: bytes, source: str) -> Decoded:
    """Split JSON Lines bytes into records; undecodable lines are rejected with a reason.

    A last line without its newline that does not parse is a *truncated* line (the producer
    was cut off), which is reported apart from other malformed JSON. Blank lines are not events
    and are only counted. Each decoded record then goes through :func:`check_record`.
    """
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    if ends_with_newline:
        lines = lines[:-1]
    out = _Collector(source)
    n_blank = 0
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        if not raw.strip():
            n_blank += 1
            continue
        decoded = _decode_line(raw, is_cut=i == last and not ends_with_newline)
        if isinstance(decoded, tuple):
            reason, detail, text = decoded
            out.reject(i + 1, reason, detail, text)
        else:
            out.add(i + 1, decoded)
    return out.decoded(len(lines) - n_blank, n_blank)


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
