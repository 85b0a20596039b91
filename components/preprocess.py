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

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components import schema
from components.config import load_params
from components.frames import codes_of as _codes
from components.frames import first_occurrence
from components.ingest import read_events
from components.paths import DataPaths

log = logging.getLogger(__name__)

CONSUMPTION = ("view", "complete_view", "replay")

#: Spellings seen in the wild, mapped to the project's vocabulary.
DEVICE_ALIASES: dict[str, str] = {
    "iphone": "ios", "ipad": "ios", "ios": "ios", "apple": "ios",
    "android": "android", "andriod": "android",
    "web": "web", "desktop": "web", "browser": "web", "pc": "web",
}
OS_ALIASES: dict[str, str] = {
    "ios": "ios", "iphone os": "ios", "ipados": "ios",
    "android": "android",
    "windows": "windows", "win": "windows", "win10": "windows", "win11": "windows",
    "macos": "macos", "mac os x": "macos", "osx": "macos", "mac": "macos",
    "linux": "linux",
}
NETWORK_ALIASES: dict[str, str] = {
    "wifi": "wifi", "wi-fi": "wifi", "wlan": "wifi",
    "5g": "5g", "nr": "5g",
    "4g": "4g", "lte": "4g", "4g lte": "4g",
    "3g": "3g", "umts": "3g", "hspa": "3g",
    "2g": "2g", "edge": "2g",
}


@dataclass(frozen=True)
class PreprocessParams:
    session_gap_minutes: float = 30.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PreprocessParams:
        section = params.get("preprocess", {}) or {}
        return cls(session_gap_minutes=float(section.get("session_gap_minutes", 30.0)))


def normalise_vocab(values: pd.Series, aliases: dict[str, str]) -> pd.Series:
    """Lower-case and trim; known aliases map to the vocabulary, anything else becomes 'other'."""
    codes, uniques = _codes(values)
    mapped = [aliases.get(str(u).strip().lower(), "other") for u in uniques]
    lookup = np.array([*mapped, None], dtype=object)
    return pd.Series(lookup[codes], index=values.index, dtype="string[pyarrow]")


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


def attach_content(events: pd.DataFrame, content: pd.DataFrame) -> pd.DataFrame:
    """Add the content's (imputed) duration, its flag, category and the watch ratio."""
    idx = pd.Index(content["content_id"].astype(str))
    pos = idx.get_indexer(pd.Index(events["content_id"].astype("string").fillna("\x00")))
    has = pos >= 0
    safe = np.where(has, pos, 0)
    dur = content["duration_s"].to_numpy(dtype="float64")[safe]
    imp = content["duration_imputed"].to_numpy(dtype=bool)[safe]
    cat = content["category"].astype(str).to_numpy(dtype=object)[safe] if len(content) else np.array([], dtype=object)
    events = events.copy()
    events["content_duration_s"] = np.where(has, dur, np.nan)
    events["duration_imputed"] = np.where(has, imp, False)
    events["category"] = pd.Series(np.where(has, cat, "unknown"), index=events.index, dtype="string[pyarrow]")
    wd = events["watch_duration_s"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = wd / events["content_duration_s"].to_numpy()
    events["watch_ratio"] = np.where(np.isfinite(ratio), ratio, np.nan)
    return events


def sessionise(events: pd.DataFrame, gap_minutes: float) -> pd.DataFrame:
    """Sort by (user, time) and number sessions; a gap over ``gap_minutes`` starts a new one.

    Ties keep their stored order (stable sort), so the result is deterministic.
    """
    codes, uniques = _codes(events["user_id"])
    rank = np.empty(len(uniques), dtype="int64")
    rank[np.argsort(np.array(uniques, dtype=object), kind="stable")] = np.arange(len(uniques))
    user_rank = rank[codes] if len(codes) else codes
    ts = events["timestamp"].to_numpy(dtype="datetime64[ms]").astype("int64")
    order = np.lexsort((ts, user_rank))
    events = events.iloc[order].reset_index(drop=True)
    ts, user_rank = ts[order], user_rank[order]
    new = np.ones(len(events), dtype=bool)
    if len(events) > 1:
        gap_ms = gap_minutes * 60_000.0
        new[1:] = (user_rank[1:] != user_rank[:-1]) | ((ts[1:] - ts[:-1]) > gap_ms)
    events["session_id"] = np.cumsum(new, dtype="int64") - 1
    return events


def session_table(events: pd.DataFrame) -> pd.DataFrame:
    """One row per session from sessionised (sorted) events."""
    sid = events["session_id"].to_numpy()
    if len(sid) == 0:
        return pd.DataFrame({f.name: pd.Series(dtype="object") for f in schema.SESSION_SCHEMA})
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    ends = np.r_[starts[1:], len(sid)] - 1
    ts = events["timestamp"]
    consumption = events["event_type"].isin(CONSUMPTION).to_numpy()
    watch = np.where(events["event_type"].to_numpy() == "view", events["watch_duration_s"].fillna(0.0).to_numpy(), 0.0)
    viewed = events.loc[consumption, ["session_id", "content_id"]].drop_duplicates()
    n_contents = viewed.groupby("session_id").size().reindex(sid[starts], fill_value=0).to_numpy()
    out = pd.DataFrame(
        {
            "session_id": sid[starts],
            "user_id": events["user_id"].to_numpy()[starts],
            "start": ts.iloc[starts].to_numpy(),
            "end": ts.iloc[ends].to_numpy(),
            "n_events": (ends - starts + 1).astype("int64"),
            "n_contents": n_contents.astype("int64"),
            "watch_time_s": np.add.reduceat(watch, starts),
        }
    )
    out["start"] = pd.to_datetime(out["start"], utc=True)
    out["end"] = pd.to_datetime(out["end"], utc=True)
    out["duration_s"] = (out["end"] - out["start"]).dt.total_seconds()
    return out[[f.name for f in schema.SESSION_SCHEMA]]


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


def preprocess(
    events: pd.DataFrame, content: pd.DataFrame, p: PreprocessParams
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """The pure core: (clean events, sessions, clean content, duplicates removed)."""
    keep = first_occurrence(events["event_id"])
    n_dups = int((~keep).sum())
    events = events.loc[keep].reset_index(drop=True) if n_dups else events.copy()
    for col, aliases in (("device_type", DEVICE_ALIASES), ("os", OS_ALIASES), ("network", NETWORK_ALIASES)):
        events[col] = normalise_vocab(events[col], aliases)
    content = clean_content(content)
    events = attach_content(events, content)
    events = sessionise(events, p.session_gap_minutes)
    sessions = session_table(events)
    return events, sessions, content, n_dups


CLEAN_EVENT_COLUMNS = [c for c in schema.EVENT_COLUMNS if c != "event_date"] + [
    f.name for f in schema.CLEAN_EVENT_EXTRA
]
CLEAN_EVENT_SCHEMA = pa.schema(
    [schema.EVENT_SCHEMA.field(c) for c in schema.EVENT_COLUMNS if c != "event_date"]
    + list(schema.CLEAN_EVENT_EXTRA)
)
CLEAN_CONTENT_SCHEMA = schema.CONTENT_SCHEMA.append(pa.field("duration_imputed", pa.bool_()))


def run(params: dict[str, Any], paths: DataPaths) -> PreprocessResult:
    p = PreprocessParams.from_params(params)
    t0 = time.perf_counter()
    cols = [c for c in schema.EVENT_COLUMNS if c != "event_date"]
    events = read_events(paths.raw_events, columns=cols)
    content = pq.read_table(paths.raw / "content.parquet").to_pandas()
    n_in = len(events)
    events, sessions, content, n_dups = preprocess(events, content, p)

    paths.interim.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pandas(events[CLEAN_EVENT_COLUMNS], schema=CLEAN_EVENT_SCHEMA, preserve_index=False),
        paths.interim / "events.parquet",
        row_group_size=1 << 20,
    )
    pq.write_table(
        pa.Table.from_pandas(sessions, schema=schema.SESSION_SCHEMA, preserve_index=False),
        paths.interim / "sessions.parquet",
    )
    pq.write_table(
        pa.Table.from_pandas(content, schema=CLEAN_CONTENT_SCHEMA, preserve_index=False),
        paths.interim / "content.parquet",
    )
    users = pq.read_table(paths.raw / "users.parquet")
    pq.write_table(users, paths.interim / "users.parquet")
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
        events_unknown_content=int(events["unknown_content"].sum()),
        seconds=round(seconds, 3),
        events_per_second=round(n_in / seconds, 1) if seconds > 0 else 0.0,
    )
    metrics = asdict(result)
    timing = {"seconds": metrics.pop("seconds"), "events_per_second": metrics.pop("events_per_second")}
    paths.metrics.mkdir(parents=True, exist_ok=True)
    (paths.metrics / "preprocess.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (paths.metrics / "preprocess_throughput.json").write_text(json.dumps(timing, indent=2) + "\n")
    log.info("preprocessed %d events into %d sessions (%.1f s)", len(events), len(sessions), seconds)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--root", default=None, help="project root for inputs/outputs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_params(args.params)
    paths = DataPaths(Path(args.root)) if args.root else DataPaths()
    r = run(params, paths)
    print(
        f"preprocess: {r.events_out} events ({r.duplicates_removed} duplicates removed), "
        f"{r.sessions} sessions of {r.users} users, {r.contents_duration_imputed} durations imputed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "PreprocessParams",
    "attach_content",
    "clean_content",
    "normalise_vocab",
    "preprocess",
    "session_table",
    "sessionise",
]
