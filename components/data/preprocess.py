"""Preprocessing: deduplicate, impute, normalise and sessionise the raw events.

* dedupe by ``event_id`` (the first stored copy wins; guards against overlapping drops);
* content: unknown or non-positive durations are imputed with the category median (else the
  global median) and flagged ``duration_imputed``; categories are normalised;
* events: device / OS / network spellings normalised to a small vocabulary, timestamps UTC,
  ``watch_ratio = watch_duration_s / content_duration_s`` for consumption events;
* sessions: a user's new session starts after ``session_gap_minutes`` of inactivity; the
  sessions table holds start, end, duration, events, distinct contents viewed and watch time.

Sessionisation works on sorted arrays (``np.lexsort`` and ``reduceat``) rather than a
per-user group-by, which keeps five million events within seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.core import schema
from components.core.catalog import DataPaths
from components.core.config import Params, Preprocess, stage_context, stage_parser
from components.core.frames import arrow_string_mapper, first_occurrence_arrow
from components.core.io import write_metrics
from components.data.ingestion.store import read_event_table

log = logging.getLogger(__name__)

CLEAN_EVENT_COLUMNS = [c for c in schema.EVENT_COLUMNS if c != "event_date"] + [
    f.name for f in schema.CLEAN_EVENT_EXTRA
]
CLEAN_EVENT_SCHEMA = pa.schema(
    [schema.EVENT_SCHEMA.field(c) for c in schema.EVENT_COLUMNS if c != "event_date"]
    + list(schema.CLEAN_EVENT_EXTRA)
)
CLEAN_CONTENT_SCHEMA = schema.CONTENT_SCHEMA.append(pa.field("duration_imputed", pa.bool_()))

class PreprocessParams(Preprocess):
    """The ``preprocess`` section of params.yaml."""

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> PreprocessParams:
        return cls(**Params.of(params).preprocess.model_dump())


def _text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def normalise_vocab_arrow(values: pa.Array | pa.ChunkedArray, aliases: dict[str, str]) -> pa.Array:
    """Lower-case and trim; known aliases map to the vocabulary, anything else becomes 'other'."""
    enc = pc.dictionary_encode(_text(values))
    mapped = pa.array(
        [aliases.get(str(u).strip().lower(), "other") for u in enc.dictionary.to_pylist()], type=pa.string()
    )
    return pc.take(mapped, enc.indices)


def normalise_vocab(values: pd.Series, aliases: dict[str, str]) -> pd.Series:
    arr = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    return pd.Series(pd.arrays.ArrowStringArray(normalise_vocab_arrow(arr, aliases)), index=values.index)


def clean_content(content: pd.DataFrame) -> pd.DataFrame:
    """Normalise categories and impute unknown durations (flagged)."""
    out = content.drop_duplicates("content_id", keep="first").copy()
    cat = out["category"].astype("string").str.strip().str.lower()
    out["category"] = cat.where(cat.notna() & (cat != ""), "unknown")
    dur = pd.to_numeric(out["duration_s"], errors="coerce")
    known = dur.where(dur > 0)
    by_cat = known.groupby(out["category"]).transform("median")
    global_median = float(known.median()) if known.notna().any() else np.nan
    out["duration_imputed"] = known.isna()
    out["duration_s"] = known.fillna(by_cat).fillna(global_median)
    return out.reset_index(drop=True)


def content_columns(content_ids: pa.Array | pa.ChunkedArray, content: pd.DataFrame) -> dict[str, pa.Array]:
    """Per event: the content's (imputed) duration, its imputation flag and its category."""
    ids = pa.array(content["content_id"].astype(str).tolist(), type=pa.string())
    pos = pc.index_in(_text(content_ids), value_set=ids)
    dur = pa.array(content["duration_s"].to_numpy(dtype="float64"), type=pa.float64())
    imp = pa.array(content["duration_imputed"].to_numpy(dtype=bool))
    cat = pa.array(content["category"].astype(str).tolist(), type=pa.string())
    return {
        "content_duration_s": pc.take(dur, pos),
        "duration_imputed": pc.fill_null(pc.take(imp, pos), False),
        "category": pc.fill_null(pc.take(cat, pos), "unknown"),
    }


def session_ids(user_ids: pa.Array | pa.ChunkedArray, ts_ms: np.ndarray, gap_minutes: float) -> tuple[np.ndarray, np.ndarray]:
    """Session numbers for events in any order: (session_id per event, order by user then time).

    Users are ranked by id and events by time (stable), so numbering is deterministic; a new
    session starts at a new user or after a gap over ``gap_minutes``.
    """
    enc = pc.dictionary_encode(_text(user_ids))
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype="int64")
    uniques = np.array(enc.dictionary.to_pylist(), dtype=object)
    rank = np.empty(len(uniques), dtype="int64")
    rank[np.argsort(uniques, kind="stable")] = np.arange(len(uniques))
    user_rank = rank[codes] if len(codes) else codes
    order = np.lexsort((ts_ms, user_rank))
    ts_s, ur_s = ts_ms[order], user_rank[order]
    new = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        new[1:] = (ur_s[1:] != ur_s[:-1]) | ((ts_s[1:] - ts_s[:-1]) > gap_minutes * 60_000.0)
    sid = np.empty(len(order), dtype="int64")
    sid[order] = np.cumsum(new, dtype="int64") - 1
    return sid, order


def sessionise(events: pd.DataFrame, gap_minutes: float) -> pd.DataFrame:
    """Pandas view of :func:`session_ids`: events sorted by (user, time) with ``session_id``."""
    arr = pa.array(events["user_id"].to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    ts = events["timestamp"].to_numpy(dtype="datetime64[ms]").astype("int64")
    sid, order = session_ids(arr, ts, gap_minutes)
    out = events.iloc[order].reset_index(drop=True)
    out["session_id"] = sid[order]
    return out


def sessions_from_arrays(
    sid: np.ndarray,
    user_ids: pa.Array | pa.ChunkedArray,
    ts_ms: np.ndarray,
    content_ids: pa.Array | pa.ChunkedArray,
    event_types: pa.Array | pa.ChunkedArray,
    watch_s: np.ndarray,
) -> pd.DataFrame:
    """The sessions table from per-event arrays in any order (numeric work only)."""
    if len(sid) == 0:
        return schema.SESSION_SCHEMA.empty_table().to_pandas()
    order = np.argsort(sid, kind="stable")
    s_sorted = sid[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], len(s_sorted)]
    ts_sorted = ts_ms[order]
    et = _text(event_types)
    is_view = np.asarray(pc.fill_null(pc.equal(et, "view"), False).to_numpy(zero_copy_only=False))
    consumption = np.asarray(pc.fill_null(pc.is_in(et, value_set=pa.array(schema.CONSUMPTION_TYPES)), False).to_numpy(zero_copy_only=False))
    watch = np.where(is_view, np.nan_to_num(watch_s, nan=0.0), 0.0)[order]
    cenc = pc.dictionary_encode(_text(content_ids))
    ccodes = np.asarray(pc.fill_null(cenc.indices, -1).to_numpy(zero_copy_only=False), dtype="int64")
    sel = consumption & (ccodes >= 0)
    base = len(cenc.dictionary) + 1
    pairs = np.sort(sid[sel] * base + ccodes[sel])  # distinct (session, content) by sort, not hash
    if len(pairs):
        pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]
    per_session = np.bincount(pairs // base, minlength=int(sid.max()) + 1)
    first_rows = order[starts]
    out = pd.DataFrame(
        {
            "session_id": s_sorted[starts],
            "user_id": pd.arrays.ArrowStringArray(pa.chunked_array([pc.take(_text(user_ids), pa.array(first_rows))])),
            "start": pd.to_datetime(np.minimum.reduceat(ts_sorted, starts), unit="ms", utc=True),
            "end": pd.to_datetime(np.maximum.reduceat(ts_sorted, starts), unit="ms", utc=True),
            "n_events": (ends - starts).astype("int64"),
            "n_contents": per_session[s_sorted[starts]].astype("int64"),
            "watch_time_s": np.add.reduceat(watch, starts),
        }
    )
    out["duration_s"] = (out["end"] - out["start"]).dt.total_seconds()
    return out[[f.name for f in schema.SESSION_SCHEMA]]


def session_table(events: pd.DataFrame) -> pd.DataFrame:
    """The sessions table of sessionised pandas events."""
    def arr(col: str) -> pa.Array:
        return pa.array(events[col].to_numpy(dtype=object), type=pa.string(), from_pandas=True)

    return sessions_from_arrays(
        events["session_id"].to_numpy(dtype="int64"),
        arr("user_id"),
        events["timestamp"].to_numpy(dtype="datetime64[ms]").astype("int64"),
        arr("content_id"),
        arr("event_type"),
        events["watch_duration_s"].to_numpy(dtype="float64"),
    )


@dataclass(frozen=True)
class PreprocessResult:
    events_in: int
    duplicates_removed: int
    events_out: int
    users: int
    sessions: int
    mean_session_events: float
    median_session_duration_s: float
    contents: int
    contents_duration_imputed: int
    events_unknown_content: int
    seconds: float
    events_per_second: float


def preprocess_table(
    events: pa.Table, content: pd.DataFrame, p: PreprocessParams
) -> tuple[pa.Table, pd.DataFrame, pd.DataFrame, int]:
    """The pure core on Arrow: (clean events, sessions, clean content, duplicates removed).

    Clean events keep their stored order (by day, then arrival); ``session_id`` numbers the
    sessions in (user, time) order.
    """
    keep = first_occurrence_arrow(events["event_id"])
    n_dups = int((~keep).sum())
    if n_dups:
        events = events.filter(pa.array(keep))
    for col, aliases in (("device_type", schema.DEVICE_ALIASES), ("os", schema.OS_ALIASES), ("network", schema.NETWORK_ALIASES)):
        events = events.set_column(events.schema.get_field_index(col), col, normalise_vocab_arrow(events[col], aliases))
    content = clean_content(content)
    extra = content_columns(events["content_id"], content)
    ts = np.asarray(events["timestamp"].cast(pa.int64()).to_numpy(), dtype="int64")
    watch = np.asarray(pc.fill_null(events["watch_duration_s"], np.nan).to_numpy(), dtype="float64")
    sid, _ = session_ids(events["user_id"], ts, p.session_gap_minutes)
    dur = np.asarray(pc.fill_null(extra["content_duration_s"], np.nan).to_numpy(zero_copy_only=False), dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = watch / dur
    ratio = np.where(np.isfinite(ratio), ratio, np.nan)
    sessions = sessions_from_arrays(sid, events["user_id"], ts, events["content_id"], events["event_type"], watch)
    for name, arr in (
        ("session_id", pa.array(sid)),
        ("content_duration_s", extra["content_duration_s"]),
        ("duration_imputed", extra["duration_imputed"]),
        ("watch_ratio", pa.array(ratio, from_pandas=True)),
        ("category", extra["category"]),
    ):
        events = events.append_column(CLEAN_EVENT_SCHEMA.field(name), arr)
    return events.select(CLEAN_EVENT_COLUMNS).cast(CLEAN_EVENT_SCHEMA), sessions, content, n_dups


def preprocess(
    events: pd.DataFrame, content: pd.DataFrame, p: PreprocessParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Pandas wrapper of :func:`preprocess_table` (for small frames and tests)."""
    cols = [c for c in schema.EVENT_COLUMNS if c != "event_date"]
    frame = events.copy()
    for c in cols:
        if c not in frame:
            frame[c] = None
    table = pa.Table.from_pandas(
        frame[cols], schema=pa.schema([schema.EVENT_SCHEMA.field(c) for c in cols]), preserve_index=False
    )
    clean, sessions, content, n_dups = preprocess_table(table, content, p)
    return clean.to_pandas(types_mapper=arrow_string_mapper), sessions, content, n_dups


def run(params: dict[str, Any], paths: DataPaths) -> PreprocessResult:
    p = PreprocessParams.from_params(params)
    t0 = time.perf_counter()
    cols = [c for c in schema.EVENT_COLUMNS if c != "event_date"]
    events = read_event_table(paths.raw_events, columns=cols)
    content = pq.read_table(paths.of("raw_content")).to_pandas()
    n_in = len(events)
    events, sessions, content, n_dups = preprocess_table(events, content, p)

    paths.interim.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        events,
        paths.of("interim_events"),
        row_group_size=1 << 20,
        use_dictionary=["event_type", "user_id", "content_id", "creator_id", "device_type", "os", "network", "category", "platform", "reason"],
    )
    pq.write_table(
        pa.Table.from_pandas(sessions, schema=schema.SESSION_SCHEMA, preserve_index=False),
        paths.of("interim_sessions"),
    )
    pq.write_table(
        pa.Table.from_pandas(content, schema=CLEAN_CONTENT_SCHEMA, preserve_index=False),
        paths.of("interim_content"),
    )
    users = pq.read_table(paths.of("raw_users"))
    pq.write_table(users, paths.of("interim_users"))
    seconds = time.perf_counter() - t0
    result = PreprocessResult(
        events_in=n_in,
        duplicates_removed=n_dups,
        events_out=len(events),
        users=int(sessions["user_id"].nunique()) if len(sessions) else 0,
        sessions=len(sessions),
        mean_session_events=round(float(sessions["n_events"].mean()), 4) if len(sessions) else 0.0,
        median_session_duration_s=round(float(sessions["duration_s"].median()), 3) if len(sessions) else 0.0,
        contents=len(content),
        contents_duration_imputed=int(content["duration_imputed"].sum()),
        events_unknown_content=int(pc.sum(events["unknown_content"]).as_py() or 0),
        seconds=round(seconds, 3),
        events_per_second=round(n_in / seconds, 1) if seconds > 0 else 0.0,
    )
    metrics = asdict(result)
    timing = {"seconds": metrics.pop("seconds"), "events_per_second": metrics.pop("events_per_second")}
    write_metrics(paths.of("metrics_preprocess"), metrics)
    write_metrics(paths.of("metrics_preprocess_throughput"), timing, sort_keys=False)
    log.info("preprocessed %d events into %d sessions (%.1f s)", len(events), len(sessions), seconds)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    r = run(params, paths)
    print(
        f"preprocess: {r.events_out} events ({r.duplicates_removed} duplicates removed), "
        f"{r.sessions} sessions of {r.users} users, {r.contents_duration_imputed} durations imputed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
