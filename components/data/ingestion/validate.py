"""Validation, declared once as a pandera schema over a frame of events.

JSON Lines and Parquet drops both become such a frame, so the batch job and the serving API
share the same rules; each check's name is its quarantine reason code, and a record failing
several checks is quarantined once under the reason of highest precedence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc

from components.core import schema
from components.core.frames import arrow_text, codes_of
from components.data.ingestion.rawjson import iso_utc, json_objects
from components.data.ingestion.rules import REASON_ORDER, IngestError, Limits, quarantine_frame


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


def _utc(value: str) -> pd.Timestamp:
    """A bound from params as a UTC timestamp (one without a zone is taken as UTC)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def build_schema(limits: Limits, now: pd.Timestamp, typed: frozenset[str] = frozenset()) -> pa.DataFrameSchema:
    """The event validation schema; each check's name is the quarantine reason code.

    ``typed`` names columns whose storage type already guarantees the value type (a typed
    Parquet column), so their per-value type checks are left out.
    """
    min_ts = _utc(limits.min_timestamp) if limits.min_timestamp is not None else None
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
            *([] if min_ts is None else [pa.Check(lambda s: s.isna() | (s >= min_ts), name="timestamp_before_2000")]),
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


def _raw_json(rows: pd.DataFrame) -> pa_arrow.Array:
    """Each record as it came (its non-internal columns) as JSON text."""
    return json_objects(rows[[c for c in rows.columns if not str(c).startswith("_")]])


def failed_checks(frame: pd.DataFrame, schema_: pa.DataFrameSchema) -> dict[str, np.ndarray]:
    """Each check of ``schema_`` that some row fails, with the mask of the rows failing it.

    The checks are called one by one on whole columns (a lazy ``schema.validate`` builds a
    failure-case frame row by row, far too slow when most of a drop fails). A check that
    raises is an :class:`IngestError`: ``validate`` would have dropped it silently (a naive
    ``min_timestamp`` compared with UTC times once disabled the bound that way).
    """
    calls = [(check, frame[name]) for name, col in schema_.columns.items() for check in col.checks]
    calls += [(check, frame) for check in schema_.checks]
    failed: dict[str, np.ndarray] = {}
    for check, obj in calls:
        try:
            out = check(obj).check_output
        except Exception as exc:  # a check that cannot run validates nothing: fail closed
            raise IngestError(f"validation check {check.name!r} could not run: {exc!r}") from exc
        if isinstance(out, pd.Series):  # a column check sees the non-null values only: nulls pass
            bad = ~out.reindex(frame.index, fill_value=True).to_numpy(dtype=bool)
        else:
            bad = np.full(len(frame), not bool(out))
        if bad.any():
            name = str(check.name)
            failed[name] = failed[name] | bad if name in failed else bad
    return failed


def validate_events(frame: pd.DataFrame, source: str, now: pd.Timestamp, limits: Limits) -> Validated:
    """Validate a frame of candidate events; return the typed valid rows and the rejects.

    A record failing several checks is quarantined once, under the highest-precedence reason
    (see :data:`REASON_ORDER`); the detail lists every failed check. Reasons, details and raw
    text are built column-wise over the rejects, never row by row.
    """
    frame = _ensure_columns(frame.reset_index(drop=True))
    frame["_ts"] = parse_timestamps(frame["timestamp"])
    failed: dict[str, np.ndarray] = {}
    if len(frame):
        typed = frozenset(
            c
            for c in frame.columns
            if isinstance(frame[c].dtype, pd.StringDtype)
            or pd.api.types.is_float_dtype(frame[c].dtype)
            or pd.api.types.is_integer_dtype(frame[c].dtype)
        )
        failed = failed_checks(frame, build_schema(limits, now, typed))
    ok = ~np.logical_or.reduce(list(failed.values())) if failed else np.ones(len(frame), dtype=bool)
    bad = np.flatnonzero(~ok)
    rows = frame.iloc[bad].reset_index(drop=True)
    reason = np.full(len(bad), None, dtype=object)
    detail = np.full(len(bad), None, dtype=object)
    for check in sorted(failed, key=lambda c: (_precedence(c), c)):
        hit = np.flatnonzero(failed[check][bad])
        if len(hit) == 0:
            continue
        text = _describe(check, rows.iloc[hit], limits)
        first = pd.isna(reason[hit])
        reason[hit[first]] = check.split(":", 1)[0]
        detail[hit[first]] = text[first]
        later = hit[~first]
        detail[later] = detail[later] + "; " + text[~first]
    rejected = pd.DataFrame(
        {
            "source": np.full(len(bad), source, dtype=object),
            "record_no": frame["_record_no"].to_numpy(dtype="int64")[bad],
            "reason": reason,
            "detail": detail,
            "raw": _raw_json(rows).to_numpy(zero_copy_only=False),
        }
    )
    return Validated(valid=_typed_table(frame, ok), rejected=rejected if len(bad) else quarantine_frame([]))


def _precedence(check: str) -> int:
    code = check.split(":", 1)[0]
    return REASON_ORDER.index(code) if code in REASON_ORDER else len(REASON_ORDER)


def _reprs(values: pd.Series) -> np.ndarray:
    """``repr`` of each value, computed once per distinct value (numpy scalars as Python ones)."""
    try:
        codes, uniques = codes_of(values)
    except (TypeError, ValueError):  # unhashable values (a JSON object where text was due)
        return np.array([repr(_py(v)) for v in values.to_numpy(dtype=object)], dtype=object)
    table = np.array([*(repr(_py(v)) for v in uniques), "None"], dtype=object)
    return table[codes]  # code -1 (null) takes the last entry


def _py(v: Any) -> Any:
    return None if v is pd.NA or v is pd.NaT else (v.item() if isinstance(v, np.generic) else v)


def _texts(values: pd.Series) -> np.ndarray:
    """Timestamps as ISO-8601 UTC text, as an object array."""
    return np.asarray(iso_utc(values).to_numpy(zero_copy_only=False), dtype=object)


def _describe(check: str, rows: pd.DataFrame, limits: Limits) -> np.ndarray:
    """The human-readable detail of one failed check for each of ``rows`` (object array)."""
    code, _, fld = check.partition(":")
    n = len(rows)
    if code == "missing_field":
        return f"required field '{fld}' is missing or empty for event_type=" + _reprs(rows["event_type"])
    if code == "wrong_type":
        want = "a number" if fld in schema.NUMBER_FIELDS else "text"
        vals = rows[fld].to_numpy(dtype=object)
        return np.array([f"field '{fld}' must be {want}, got {type(v).__name__} {v!r}"[:300] for v in vals], dtype=object)
    if code == "unknown_event_type":
        return "event_type " + _reprs(rows["event_type"].astype(str).str.slice(0, 64)) + f" is not one of {', '.join(schema.EVENT_TYPES)}"
    if code == "unparsable_timestamp":
        text = "timestamp " + _reprs(rows["timestamp"]) + " is neither ISO-8601 nor epoch milliseconds"
        return np.array([t[:300] for t in text], dtype=object)
    if code == "timestamp_before_2000":
        return "timestamp " + _texts(rows["_ts"]) + f" is before {limits.min_timestamp}"
    if code == "timestamp_in_future":
        return "timestamp " + _texts(rows["_ts"]) + f" is in the future (tolerance {limits.future_tolerance_s:g} s)"
    if code == "negative_watch_duration":
        return "watch_duration_s " + _reprs(rows["watch_duration_s"]) + " is negative"
    if code == "absurd_watch_duration":
        return "watch_duration_s " + _reprs(rows["watch_duration_s"]) + f" exceeds {limits.max_watch_duration_s:g} s"
    if code == "invalid_rating":
        return "rating " + _reprs(rows["rating"]) + f" outside [{limits.min_rating:g}, {limits.max_rating:g}]"
    if code in ("text_too_long", "id_too_long", "field_too_long"):
        caps = {"text_too_long": limits.max_text_chars, "id_too_long": limits.max_id_chars}
        cap = caps.get(code, limits.max_field_chars)
        lengths = _str_len(rows[fld]).astype(str).to_numpy(dtype=object)
        return f"field '{fld}' has " + lengths + f" characters (max {cap})"
    return np.full(n, check, dtype=object)


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
