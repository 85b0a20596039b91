"""Validation, declared once as a pandera schema over a frame of events.

JSON Lines and Parquet drops both become such a frame, so the batch job and the serving API
share the same rules; each check's name is its quarantine reason code, and a record failing
several checks is quarantined once under the reason of highest precedence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc

from components.core import schema
from components.core.frames import arrow_text
from components.data.ingestion.rules import REASON_ORDER, Limits, quarantine_frame


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
        if name in schema.SHORT_FIELDS:
            checks.append(
                pa.Check(lambda s: _str_len(s) <= limits.max_field_chars, name=f"field_too_long:{name}")
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
    return Validated(valid=_typed_table(frame, ok), rejected=quarantine_frame(rejected_rows))


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
        return f"event_type {str(row.get('event_type'))[:64]!r} is not one of {', '.join(schema.EVENT_TYPES)}"
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
    if code in ("text_too_long", "id_too_long", "field_too_long"):
        caps = {"text_too_long": limits.max_text_chars, "id_too_long": limits.max_id_chars}
        cap = caps.get(code, limits.max_field_chars)
        return f"field '{fld}' has {len(str(row.get(fld)))} characters (max {cap})"
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
