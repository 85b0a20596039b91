"""Ingestion: read event drops, validate every event, pseudonymise users, store or quarantine.

Every input record ends in exactly one place, so ``in = stored + quarantined + duplicates``
holds and is checked on every run:

* valid events go to the raw store (Parquet, partitioned by ``event_date``);
* invalid ones go to the quarantine file with a reason code and a human-readable detail;
* repeats of an ``event_id`` already accepted are counted as duplicates (and logged in the
  quarantine file with reason ``duplicate_event_id``, so nothing disappears).

Events about a content id that is in neither the content table nor an upload event are kept
and flagged (``unknown_content``), not lost.

Validation is declared once as a pandera schema over a frame of events (JSON Lines and Parquet
drops both become such a frame), so the batch job and the serving API share the same rules.
User ids are replaced at this point by a keyed HMAC; no raw user id is written past ingestion.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from components.core import schema
from components.core.config import Params, Settings, stage_context, stage_parser
from components.core.io import atomic_write_json, write_metrics
from components.core.frames import (
    arrow_string_mapper,
    arrow_text,
    repeated_rows,
)
from components.core.catalog import DataPaths

log = logging.getLogger(__name__)

HMAC_ENV = "RECO_HMAC_KEY"
#: Only for ``RECO_DEMO=1`` runs on generated or public data; never for real users.
DEMO_HMAC_KEY = b"demo-key-not-secret"

# Reason codes, in order of precedence when a record fails several checks.
REASON_ORDER: tuple[str, ...] = (
    "invalid_utf8",
    "truncated_line",
    "malformed_json",
    "not_an_object",
    "unknown_event_type",
    "missing_field",
    "wrong_type",
    "unparsable_timestamp",
    "timestamp_before_2000",
    "timestamp_in_future",
    "negative_watch_duration",
    "absurd_watch_duration",
    "invalid_rating",
    "text_too_long",
    "id_too_long",
)
DUPLICATE = "duplicate_event_id"


class IngestError(RuntimeError):
    """A problem that stops ingestion as a whole (configuration, reconciliation)."""


@dataclass(frozen=True)
class Limits:
    """Validation bounds, from ``params.yaml`` (``ingest`` section)."""

    max_watch_duration_s: float
    max_text_chars: int
    max_id_chars: int
    future_tolerance_s: float
    min_timestamp: str
    min_rating: float
    max_rating: float

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> Limits:
        """The ``ingest`` section for ``data.source`` (``ingest.overrides``: MovieLens ratings
        start in 1996, before the short-video bound of 2000)."""
        section = Params.of(params).for_dataset().ingest
        return cls(**section.model_dump(exclude={"overrides"}))


# --------------------------------------------------------------------------------------------
# Decoding drops into a frame of candidate events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """Records decoded from one drop file: a frame of candidates and the records that failed."""

    source: str
    frame: pd.DataFrame  # one row per decoded record, column ``_record_no``
    rejected: pd.DataFrame  # QUARANTINE_SCHEMA columns
    n_in: int
    n_blank: int = 0


def _quarantine_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    cols = [f.name for f in schema.QUARANTINE_SCHEMA]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "record_no" else "object") for c in cols})
    return pd.DataFrame.from_records(list(rows), columns=cols)


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
        line_no = i + 1
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            rejected.append(
                {
                    "source": source,
                    "record_no": line_no,
                    "reason": "invalid_utf8",
                    "detail": f"line is not valid UTF-8: {exc.reason} at byte {exc.start}",
                    "raw": raw.decode("utf-8", errors="backslashreplace"),
                }
            )
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            truncated = i == last and not ends_with_newline
            rejected.append(
                {
                    "source": source,
                    "record_no": line_no,
                    "reason": "truncated_line" if truncated else "malformed_json",
                    "detail": (
                        "last line of the file is incomplete (no newline, JSON cut off)"
                        if truncated
                        else f"not valid JSON: {exc}"
                    ),
                    "raw": raw.decode("utf-8"),
                }
            )
            continue
        if not isinstance(obj, dict):
            rejected.append(
                {
                    "source": source,
                    "record_no": line_no,
                    "reason": "not_an_object",
                    "detail": f"expected a JSON object, got {type(obj).__name__}",
                    "raw": raw.decode("utf-8"),
                }
            )
            continue
        records.append(obj)
        record_nos.append(line_no)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    frame["_record_no"] = np.asarray(record_nos, dtype="int64")
    n_in = len(lines) - n_blank
    return Decoded(source, frame, _quarantine_frame(rejected), n_in=n_in, n_blank=n_blank)


def decode_parquet(path: Path, source: str) -> Decoded:
    """Read a Parquet drop; string columns stay Arrow-backed to keep memory low."""
    table = pq.read_table(path)
    frame = table.to_pandas(types_mapper=arrow_string_mapper, self_destruct=True)
    frame["_record_no"] = np.arange(1, len(frame) + 1, dtype="int64")
    return Decoded(source, frame, _quarantine_frame([]), n_in=len(frame))


def decode_file(path: Path, source: str | None = None) -> Decoded:
    src = source or path.name
    if path.suffix == ".parquet":
        return decode_parquet(path, src)
    if path.suffix in {".jsonl", ".json", ".ndjson"}:
        return decode_jsonl(path.read_bytes(), src)
    raise IngestError(f"{path}: unsupported drop format (expected .parquet or .jsonl)")


# --------------------------------------------------------------------------------------------
# Validation (the one place the rules live)
# --------------------------------------------------------------------------------------------


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse timestamps given as datetimes, epoch milliseconds or ISO-8601 text to UTC.

    Unparsable values become NaT; the caller reports them.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[ms, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC").astype("datetime64[ms, UTC]")
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ms, UTC]")
    is_num = values.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool))
    if is_num.any():
        num = pd.to_numeric(values[is_num], errors="coerce")
        ok = num.notna() & np.isfinite(num) & (num.abs() < 1e15)
        out.loc[num[ok].index] = pd.to_datetime(num[ok].astype("int64"), unit="ms", utc=True)
    is_str = values.map(lambda v: isinstance(v, str))
    if is_str.any():
        parsed = pd.to_datetime(values[is_str], errors="coerce", utc=True, format="ISO8601")
        out.loc[parsed.index] = parsed
    return out


def _is_str_or_null(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.StringDtype):
        return pd.Series(True, index=s.index)
    return s.map(lambda v: v is None or (isinstance(v, float) and np.isnan(v)) or isinstance(v, str))


def _is_number_or_null(s: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(s.dtype) or pd.api.types.is_integer_dtype(s.dtype):
        return pd.Series(True, index=s.index)
    return s.map(
        lambda v: v is None
        or (isinstance(v, int | float) and not isinstance(v, bool))
    )


def _present(s: pd.Series) -> pd.Series:
    """Non-null and, for text, not blank."""
    arr = arrow_text(s)
    if arr is not None:
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(arr)), 0)
        ok = pc.and_(pc.is_valid(arr), pc.invert(pc.fill_null(blank, True)))
        return pd.Series(ok.to_numpy(zero_copy_only=False), index=s.index)
    ok = s.notna()
    if s.dtype == object:
        ok &= s.map(lambda v: not isinstance(v, str) or v.strip() != "")
    return ok


def _str_len(s: pd.Series) -> pd.Series:
    arr = arrow_text(s)
    if arr is not None:
        return pd.Series(pc.fill_null(pc.utf8_length(arr), 0).to_numpy(zero_copy_only=False), index=s.index)
    return s.map(lambda v: len(v) if isinstance(v, str) else 0)


def build_schema(limits: Limits, now: pd.Timestamp, typed: frozenset[str] = frozenset()) -> pa.DataFrameSchema:
    """The event validation schema; each check's name is the quarantine reason code.

    ``typed`` names columns whose storage type already guarantees the value type (a typed
    Parquet column), so their per-value type checks are left out.
    """
    min_ts = pd.Timestamp(limits.min_timestamp)
    max_ts = now + pd.Timedelta(seconds=limits.future_tolerance_s)
    types = list(schema.EVENT_TYPES)

    def required_by_type(field_name: str) -> pa.Check:
        needs = [t for t, f in schema.REQUIRED_FIELDS.items() if field_name in f]

        def check(df: pd.DataFrame) -> pd.Series:
            return ~df["event_type"].isin(needs) | _present(df[field_name])

        return pa.Check(check, name=f"missing_field:{field_name}")

    columns: dict[str, pa.Column] = {}
    for name in schema.STRING_FIELDS:
        checks = [] if name in typed else [pa.Check(_is_str_or_null, name=f"wrong_type:{name}")]
        if name in schema.TEXT_FIELDS:
            checks.append(
                pa.Check(lambda s: _str_len(s) <= limits.max_text_chars, name=f"text_too_long:{name}")
            )
        if name in schema.ID_FIELDS:
            checks.append(
                pa.Check(lambda s: _str_len(s) <= limits.max_id_chars, name=f"id_too_long:{name}")
            )
        columns[name] = pa.Column(checks=checks, nullable=True, coerce=False, required=True)
    for name in schema.NUMBER_FIELDS:
        columns[name] = pa.Column(
            checks=[] if name in typed else [pa.Check(_is_number_or_null, name=f"wrong_type:{name}")],
            nullable=True,
            required=True,
        )
    columns["_ts"] = pa.Column(
        checks=[
            pa.Check(lambda s: s.isna() | (s >= min_ts), name="timestamp_before_2000"),
            pa.Check(lambda s: s.isna() | (s <= max_ts), name="timestamp_in_future"),
        ],
        nullable=True,
    )

    def wd(df: pd.DataFrame) -> pd.Series:
        return pd.to_numeric(df["watch_duration_s"].where(_is_number_or_null(df["watch_duration_s"])), errors="coerce")

    def rating(df: pd.DataFrame) -> pd.Series:
        return pd.to_numeric(df["rating"].where(_is_number_or_null(df["rating"])), errors="coerce")

    frame_checks = [
        pa.Check(lambda df: df["event_type"].isna() | df["event_type"].isin(types), name="unknown_event_type"),
        *[pa.Check(lambda df, f=f: _present(df[f]), name=f"missing_field:{f}") for f in schema.BASE_REQUIRED],
        *[
            required_by_type(f)
            for f in sorted({f for fs in schema.REQUIRED_FIELDS.values() for f in fs})
        ],
        pa.Check(lambda df: df["timestamp"].isna() | df["_ts"].notna(), name="unparsable_timestamp"),
        pa.Check(lambda df: ~(wd(df) < 0), name="negative_watch_duration"),
        pa.Check(
            lambda df: ~(wd(df) > limits.max_watch_duration_s) & ~np.isinf(wd(df)),
            name="absurd_watch_duration",
        ),
        pa.Check(
            lambda df: rating(df).isna() | rating(df).between(limits.min_rating, limits.max_rating),
            name="invalid_rating",
        ),
    ]
    return pa.DataFrameSchema(columns=columns, checks=frame_checks, strict=False, coerce=False)


@dataclass(frozen=True)
class Validated:
    valid: pa_arrow.Table  # typed event columns (raw user ids) and ``_record_no``
    rejected: pd.DataFrame  # QUARANTINE_SCHEMA columns


def _ensure_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Give every schema column a place (absent in a JSON drop means null for every record)."""
    for name in (*schema.STRING_FIELDS, *schema.NUMBER_FIELDS, "timestamp"):
        if name not in frame.columns:
            frame[name] = pd.Series([None] * len(frame), index=frame.index, dtype="object")
    return frame


def _raw_json(row: pd.Series) -> str:
    d = {k: (None if _isnull(v) else v) for k, v in row.items() if not str(k).startswith("_")}
    return json.dumps(d, default=str, ensure_ascii=False)


def _isnull(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def validate_events(frame: pd.DataFrame, source: str, now: pd.Timestamp, limits: Limits) -> Validated:
    """Validate a frame of candidate events; return the typed valid rows and the rejects.

    A record failing several checks is quarantined once, under the highest-precedence reason
    (see :data:`REASON_ORDER`); the detail lists every failed check.
    """
    frame = _ensure_columns(frame.reset_index(drop=True))
    frame["_ts"] = parse_timestamps(frame["timestamp"])
    failed: dict[int, list[str]] = {}
    if len(frame):
        try:
            typed = frozenset(
                c
                for c in frame.columns
                if isinstance(frame[c].dtype, pd.StringDtype)
                or pd.api.types.is_float_dtype(frame[c].dtype)
                or pd.api.types.is_integer_dtype(frame[c].dtype)
            )
            build_schema(limits, now, typed).validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            fc = exc.failure_cases
            fc = fc[fc["index"].notna()]
            for idx, check in zip(fc["index"].astype("int64"), fc["check"].astype(str), strict=True):
                failed.setdefault(int(idx), []).append(check)
    record_nos = frame["_record_no"].to_numpy(dtype="int64")
    rejected_rows = []
    for idx in sorted(failed):
        row = frame.iloc[idx]
        checks = sorted(set(failed[idx]), key=_precedence)
        code = checks[0].split(":", 1)[0]
        rejected_rows.append(
            {
                "source": source,
                "record_no": int(record_nos[idx]),
                "reason": code,
                "detail": "; ".join(_describe(c, row, limits) for c in checks),
                "raw": _raw_json(row),
            }
        )
    ok = np.ones(len(frame), dtype=bool)
    ok[list(failed)] = False
    return Validated(valid=_typed_table(frame, ok), rejected=_quarantine_frame(rejected_rows))


def _precedence(check: str) -> int:
    code = check.split(":", 1)[0]
    return REASON_ORDER.index(code) if code in REASON_ORDER else len(REASON_ORDER)


def _describe(check: str, row: pd.Series, limits: Limits) -> str:
    code, _, fld = check.partition(":")
    if code == "missing_field":
        return f"required field '{fld}' is missing or empty for event_type={row.get('event_type')!r}"
    if code == "wrong_type":
        v = row.get(fld)
        want = "a number" if fld in schema.NUMBER_FIELDS else "text"
        return f"field '{fld}' must be {want}, got {type(v).__name__} {v!r}"[:300]
    if code == "unknown_event_type":
        return f"event_type {row.get('event_type')!r} is not one of {', '.join(schema.EVENT_TYPES)}"
    if code == "unparsable_timestamp":
        return f"timestamp {row.get('timestamp')!r} is neither ISO-8601 nor epoch milliseconds"[:300]
    if code == "timestamp_before_2000":
        return f"timestamp {row.get('_ts')} is before {limits.min_timestamp}"
    if code == "timestamp_in_future":
        return f"timestamp {row.get('_ts')} is in the future (tolerance {limits.future_tolerance_s:g} s)"
    if code == "negative_watch_duration":
        return f"watch_duration_s {_plain(row.get('watch_duration_s'))} is negative"
    if code == "absurd_watch_duration":
        return (
            f"watch_duration_s {_plain(row.get('watch_duration_s'))} exceeds "
            f"{limits.max_watch_duration_s:g} s"
        )
    if code == "invalid_rating":
        return f"rating {_plain(row.get('rating'))} outside [{limits.min_rating:g}, {limits.max_rating:g}]"
    if code == "text_too_long":
        return f"field '{fld}' has {len(str(row.get(fld)))} characters (max {limits.max_text_chars})"
    if code == "id_too_long":
        return f"field '{fld}' has {len(str(row.get(fld)))} characters (max {limits.max_id_chars})"
    return check


def _plain(v: Any) -> str:
    return repr(v.item() if isinstance(v, np.generic) else v)


#: Stored columns before ingestion adds its own (``unknown_content``, ``event_date``).
_TYPED_SCHEMA = pa_arrow.schema(
    [*schema.DROP_EVENT_SCHEMA, pa_arrow.field("_record_no", pa_arrow.int64(), nullable=False)]
)


def _typed_table(frame: pd.DataFrame, ok: np.ndarray) -> pa_arrow.Table:
    """The validated rows (``ok``) as an Arrow table with the stored types, without pandas copies."""
    mask = pa_arrow.array(ok)
    arrays: list[pa_arrow.Array | pa_arrow.ChunkedArray] = []
    for f in _TYPED_SCHEMA:
        col = frame[f.name] if f.name != "timestamp" else frame["_ts"]
        if f.name in schema.STRING_FIELDS:
            arr = arrow_text(col)
            if arr is None:
                arrays.append(pa_arrow.array(col.to_numpy(dtype=object)[ok], type=pa_arrow.string(), from_pandas=True))
            else:
                arrays.append(arr.filter(mask))
        elif f.name in schema.NUMBER_FIELDS:
            num = pd.to_numeric(col[ok], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            arrays.append(pa_arrow.array(num, type=pa_arrow.float64(), from_pandas=True))
        elif f.name == "timestamp":
            ts = col.to_numpy(dtype="datetime64[ms]")[ok]
            arrays.append(pa_arrow.array(ts, type=pa_arrow.timestamp("ms")).cast(schema.EVENT_TIMESTAMP))
        else:
            arrays.append(pa_arrow.array(col.to_numpy(dtype="int64")[ok]))
    return pa_arrow.Table.from_arrays(arrays, schema=_TYPED_SCHEMA)


# --------------------------------------------------------------------------------------------
# Pseudonymisation, deduplication, unknown content
# --------------------------------------------------------------------------------------------


def hmac_key_from_env(env: Settings | Mapping[str, str] | None = None) -> bytes:
    """The pseudonymisation key from ``RECO_HMAC_KEY``; the demo key only when ``RECO_DEMO=1``."""
    settings = env if isinstance(env, Settings) else Settings.from_env(env)
    if settings.hmac_key is not None:
        return settings.hmac_key.get_secret_value().encode("utf-8")
    if settings.demo:
        log.warning("%s not set: using the built-in demo key (RECO_DEMO=1); not for real users", HMAC_ENV)
        return DEMO_HMAC_KEY
    raise IngestError(
        f"{HMAC_ENV} is not set. User ids are pseudonymised with a keyed HMAC at ingestion; "
        f"set {HMAC_ENV} to a secret (e.g. `export {HMAC_ENV}=$(openssl rand -hex 32)`), "
        "or set RECO_DEMO=1 to use the built-in demo key on generated or public data."
    )


def pseudonym(raw: str, key: bytes) -> str:
    """``u_`` + the first 24 hex digits of HMAC-SHA256(key, raw id)."""
    return "u_" + hmac.new(key, raw.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


def pseudonymise_arrow(
    ids: pa_arrow.Array | pa_arrow.ChunkedArray, key: bytes, cache: dict[str, str] | None = None
) -> pa_arrow.Array:
    """Pseudonymise an Arrow text column, hashing each distinct id once (cost ~ users, not events).

    ``cache`` (raw id → pseudonym) carries work over between files of one run.
    """
    memo: dict[str, str] = {} if cache is None else cache
    enc = pc.dictionary_encode(ids)
    if isinstance(enc, pa_arrow.ChunkedArray):
        enc = enc.combine_chunks() if enc.num_chunks else pa_arrow.array([], type=pa_arrow.dictionary(pa_arrow.int32(), pa_arrow.string()))
    values = enc.dictionary.to_pylist()
    for u in values:
        if u not in memo:
            memo[u] = pseudonym(u, key)
    mapped = pa_arrow.array([memo[u] for u in values], type=pa_arrow.string())
    return pc.take(mapped, enc.indices)


def pseudonymise(ids: pd.Series, key: bytes) -> pd.Series:
    """Pseudonymise a pandas column of ids (nulls stay null)."""
    arr = arrow_text(ids)
    if arr is None:
        arr = pa_arrow.chunked_array([pa_arrow.array(ids.to_numpy(dtype=object), type=pa_arrow.string(), from_pandas=True)])
    out = pseudonymise_arrow(arr, key)
    return pd.Series(pd.arrays.ArrowStringArray(out), index=ids.index)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileReport:
    source: str
    n_in: int
    stored: int
    quarantined: int
    duplicates: int
    blank_lines: int = 0


@dataclass(frozen=True)
class IngestResult:
    n_in: int
    stored: int
    quarantined: int
    duplicates: int
    unknown_content: int
    users: int
    contents: int
    empty_files: int
    seconds: float
    events_per_second: float
    reasons: dict[str, int] = field(default_factory=dict)
    files: list[FileReport] = field(default_factory=list)

    def reconciles(self) -> bool:
        return self.n_in == self.stored + self.quarantined + self.duplicates


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


@dataclass(frozen=True)
class FileOutcome:
    """One drop file after validation, dedupe and pseudonymisation."""

    events: pa_arrow.Table  # EVENT_SCHEMA without ``event_date``
    quarantine: pd.DataFrame  # QUARANTINE_SCHEMA columns, duplicates included
    report: FileReport


_STORED_SCHEMA = pa_arrow.schema([f for f in schema.EVENT_SCHEMA if f.name != "event_date"])


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
        columns = {c: table[c] for c in _STORED_SCHEMA.names if c in table.column_names}
        columns["user_id"] = pseudonymise_arrow(table["user_id"], key, pseudonyms)
        columns["unknown_content"] = unknown
        events = pa_arrow.Table.from_arrays([columns[c] for c in _STORED_SCHEMA.names], schema=_STORED_SCHEMA)
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
    tables = [o.events for o in outcomes] or [_STORED_SCHEMA.empty_table()]
    events = pa_arrow.concat_tables(tables).to_pandas(types_mapper=arrow_string_mapper)
    quarantine = (
        pd.concat([o.quarantine for o in outcomes], ignore_index=True) if outcomes else _quarantine_frame([])
    )
    return events, quarantine, [o.report for o in outcomes]


#: Low-cardinality columns worth dictionary-encoding in Parquet (ids like event_id are not).
_DICTIONARY_COLUMNS = [
    "event_type", "user_id", "content_id", "platform", "creator_id", "reason", "device_type", "os", "network",
]


def write_events(events: pa_arrow.Table, out_dir: Path, basename: str = "part") -> int:
    """Write events as Parquet partitioned by ``event_date`` (Hive style); returns files written.

    Rows are grouped by day with one stable sort on the (integer) date, then each day's
    contiguous slice is written as ``event_date=YYYY-MM-DD/<basename>.parquet``.
    """
    if len(events) == 0:
        return 0
    days = pc.cast(events["timestamp"], pa_arrow.date32()).to_numpy(zero_copy_only=False).astype("datetime64[D]")
    day_int = days.astype("int64")
    if np.any(day_int[1:] < day_int[:-1]):
        order = np.argsort(day_int, kind="stable")
        events, days, day_int = events.take(pa_arrow.array(order)), days[order], day_int[order]
    starts = np.flatnonzero(np.r_[True, day_int[1:] != day_int[:-1]])
    ends = np.r_[starts[1:], len(day_int)]
    for a, b in zip(starts, ends, strict=True):
        folder = out_dir / f"event_date={days[a]}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            events.slice(int(a), int(b - a)),
            folder / f"{basename}.parquet",
            row_group_size=1 << 20,
            use_dictionary=_DICTIONARY_COLUMNS,
        )
    return len(starts)


def read_event_table(events_dir: Path, columns: Sequence[str] | None = None) -> pa_arrow.Table:
    """Read the partitioned raw event store as one Arrow table (partitions in date order)."""
    dataset = ds.dataset(
        events_dir,
        format="parquet",
        partitioning=ds.partitioning(pa_arrow.schema([pa_arrow.field("event_date", pa_arrow.date32())]), flavor="hive"),
    )
    return dataset.to_table(columns=list(columns) if columns else None)


def read_events(events_dir: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read the partitioned raw event store back as pandas (strings Arrow-backed)."""
    return read_event_table(events_dir, columns).to_pandas(types_mapper=arrow_string_mapper)


def _prepare_users(users: pd.DataFrame, key: bytes) -> pd.DataFrame:
    users = users.copy()
    users["user_id"] = pseudonymise(users["user_id"].astype("string"), key)
    return users.drop_duplicates("user_id", keep="first")


def run(
    params: dict[str, Any],
    drop_dir: Path,
    paths: DataPaths,
    *,
    now: pd.Timestamp | None = None,
    key: bytes | None = None,
) -> IngestResult:
    """Ingest one drop folder into the raw store, quarantine and ``metrics/ingest.json``."""
    limits = Limits.from_params(params)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    key = key if key is not None else hmac_key_from_env()
    t0 = time.perf_counter()

    content_path = drop_dir / "content.parquet"
    content = pq.read_table(content_path).to_pandas() if content_path.exists() else pd.DataFrame({"content_id": []})
    users_path = drop_dir / "users.parquet"
    users = pq.read_table(users_path).to_pandas() if users_path.exists() else pd.DataFrame({"user_id": []})

    files = list_drop_files(drop_dir / "events")
    if not files:
        raise IngestError(f"{drop_dir / 'events'}: no event files (*.parquet, *.jsonl) to ingest")
    known = set(content["content_id"].astype(str)) | scan_uploads(files)

    for d in (paths.raw_events, paths.quarantine):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
    decoded = (decode_file(p, str(p.relative_to(drop_dir))) for p in files)
    reports: list[FileReport] = []
    rejected: list[pd.DataFrame] = []
    user_ids: list[pa_arrow.Array] = []
    content_ids: list[pa_arrow.Array] = []
    n_unknown = 0
    candidates = repeated_ids(files)
    outcomes = process_drops(decoded, known_content=known, key=key, now=now, limits=limits, candidates=candidates)
    for i, outcome in enumerate(outcomes):
        write_events(outcome.events, paths.raw_events, basename=f"part-{i:05d}")
        reports.append(outcome.report)
        rejected.append(outcome.quarantine)
        user_ids.append(pc.unique(outcome.events["user_id"].combine_chunks()))
        content_ids.append(pc.unique(outcome.events["content_id"].combine_chunks()))
        n_unknown += int(pc.sum(outcome.events["unknown_content"]).as_py() or 0)
    quarantine = pd.concat(rejected, ignore_index=True)
    pq.write_table(
        pa_arrow.Table.from_pandas(quarantine, schema=schema.QUARANTINE_SCHEMA, preserve_index=False),
        paths.of("quarantine_records"),
    )
    pq.write_table(
        pa_arrow.Table.from_pandas(_prepare_users(users, key), schema=schema.USER_SCHEMA, preserve_index=False),
        paths.of("raw_users"),
    )
    pq.write_table(
        pa_arrow.Table.from_pandas(content, schema=schema.CONTENT_SCHEMA, preserve_index=False),
        paths.of("raw_content"),
    )
    seconds = time.perf_counter() - t0
    reasons = quarantine["reason"].value_counts().sort_index().to_dict() if len(quarantine) else {}
    n_in = sum(r.n_in for r in reports)
    result = IngestResult(
        n_in=n_in,
        stored=sum(r.stored for r in reports),
        quarantined=sum(r.quarantined for r in reports),
        duplicates=sum(r.duplicates for r in reports),
        unknown_content=n_unknown,
        users=len(pc.unique(pa_arrow.concat_arrays(user_ids))) if user_ids else 0,
        contents=len(pc.drop_null(pc.unique(pa_arrow.concat_arrays(content_ids)))) if content_ids else 0,
        empty_files=sum(1 for r in reports if r.n_in == 0),
        seconds=round(seconds, 3),
        events_per_second=round(n_in / seconds, 1) if seconds > 0 else 0.0,
        reasons={str(k): int(v) for k, v in reasons.items()},
        files=reports,
    )
    if not result.reconciles():
        raise IngestError(
            f"counts do not reconcile: in={result.n_in} != stored={result.stored} + "
            f"quarantined={result.quarantined} + duplicates={result.duplicates}"
        )
    metrics = asdict(result)
    metrics.pop("files")
    timing = {"seconds": metrics.pop("seconds"), "events_per_second": metrics.pop("events_per_second")}
    metrics["reconciled"] = True
    # Counts are deterministic (compared across runs); timings are not, so they live apart.
    write_metrics(paths.of("metrics_ingest"), metrics)
    write_metrics(paths.of("metrics_ingest_throughput"), timing, sort_keys=False)
    atomic_write_json(paths.of("ingest_report"), [asdict(f) for f in result.files], sort_keys=False)
    log.info(
        "ingested %d records: %d stored, %d quarantined, %d duplicates, %d unknown-content (%.1f s)",
        result.n_in, result.stored, result.quarantined, result.duplicates, result.unknown_content, seconds,
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--drop", required=True, help="drop folder with events/, users.parquet, content.parquet")
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    try:
        r = run(params, Path(args.drop), paths)
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"ingest: {r.n_in} in = {r.stored} stored + {r.quarantined} quarantined + {r.duplicates} duplicates"
        f" ({r.unknown_content} flagged unknown content; {r.events_per_second:,.0f} events/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
