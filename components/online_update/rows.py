"""The online update's training rows: impressions from the log with their logged feature
snapshot, joined to the events that followed them (:func:`components.ranking.labels.join_outcomes`).

The impression log holds, per shown item, the serving model's version and its feature vector
(``features``, in that model's ``feature_cols`` order). Rows without a snapshot (degraded /
fallback feeds), from a model version the registry does not know, or whose model lacks one of
production's features are dropped and counted; a snapshot of another model is re-ordered to
production's ``feature_cols`` by name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from components.core.io import quarantine_file
from components.ranking.labels import join_outcomes

log = logging.getLogger(__name__)

#: where unreadable impression files go (under the impression log's folder), with a reason

#: event columns the outcome join reads (``watch_ratio`` only when the events carry it)
EVENT_COLUMNS: tuple[str, ...] = ("user_id", "content_id", "event_type", "timestamp", "watch_ratio")
#: impression log columns the update reads
IMPRESSION_COLUMNS: tuple[str, ...] = (
    "request_id",
    "user_id",
    "content_id",
    "position",
    "model_version",
    "degraded",
    "timestamp",
    "features",
)


def utc(values: pd.Series) -> pd.Series:
    """Timestamps as UTC datetimes."""
    return pd.to_datetime(values, utc=True)


def iso(ts: pd.Timestamp | None) -> str | None:
    """A timestamp as ISO text (None stays None)."""
    return None if ts is None else pd.Timestamp(ts).isoformat()


def snapshot_matrix(
    impressions: pd.DataFrame,
    feature_cols: Sequence[str],
    cols_by_version: Mapping[str, Sequence[str] | None],
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The feature matrix (float32, ``feature_cols`` order) of the impressions whose logged
    snapshot can be read as that model's features, the mask of those rows, and the number of
    dropped rows per reason. ``cols_by_version`` maps each logged model version to its
    ``feature_cols`` (None when the version is unknown)."""
    n = len(impressions)
    X = np.full((n, len(feature_cols)), np.nan, dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    dropped: dict[str, int] = {}

    def drop(reason: str, count: int) -> None:
        if count:
            dropped[reason] = dropped.get(reason, 0) + int(count)

    if n == 0:
        return X, ok, dropped
    if "features" not in impressions:
        drop("no_features", n)
        return X, ok, dropped
    feats = impressions["features"].to_numpy(dtype=object)
    has = np.array([f is not None and not (isinstance(f, float) and np.isnan(f)) for f in feats])
    drop("no_features", int((~has).sum()))
    if "degraded" in impressions:
        degraded = impressions["degraded"].fillna(False).to_numpy(dtype=bool)
        drop("degraded", int((degraded & has).sum()))
        has &= ~degraded
    versions = (
        impressions["model_version"].astype(object).where(impressions["model_version"].notna(), "")
    )
    for version, idx in pd.Series(np.arange(n)).groupby(versions.to_numpy(), sort=True):
        rows = idx.to_numpy()[has[idx.to_numpy()]]
        if len(rows) == 0:
            continue
        cols = cols_by_version.get(str(version)) if version else None
        if cols is None:
            drop("unknown_model_version", len(rows))
            continue
        cols = list(cols)
        if not set(feature_cols) <= set(cols):
            drop("model_lacks_features", len(rows))
            continue
        take = np.array([cols.index(c) for c in feature_cols], dtype=np.int64)
        lengths = np.array([len(feats[i]) for i in rows])
        good = rows[lengths == len(cols)]
        drop("snapshot_length", int((lengths != len(cols)).sum()))
        if len(good):
            M = np.stack([np.asarray(feats[i], dtype=np.float32) for i in good])
            X[good] = M[:, take]
            ok[good] = True
    return X, ok, dropped


def training_rows(
    impressions: pd.DataFrame,
    events: pd.DataFrame,
    feature_cols: Sequence[str],
    cols_by_version: Mapping[str, Sequence[str] | None],
    window: pd.Timedelta,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """The labelled training rows of these impressions (sorted by request, then position), their
    feature matrix in ``feature_cols`` order, and the dropped rows per reason. Labels are
    :func:`components.ranking.labels.join_outcomes`' (the user's events on the content within ``window``
    of the impression)."""
    X, ok, dropped = snapshot_matrix(impressions, feature_cols, cols_by_version)
    keep = impressions[ok].reset_index(drop=True)
    X = X[ok]
    position = pd.to_numeric(keep["position"], errors="coerce") if "position" in keep else 0
    keep = keep.assign(
        request_id=keep["request_id"].astype(str),
        timestamp=utc(keep["timestamp"]),
        _pos=position,
        _row=np.arange(len(keep)),
    )
    keep = keep.sort_values(["request_id", "_pos", "_row"], kind="mergesort")
    X = X[keep["_row"].to_numpy()]
    keep = keep.drop(columns=["_pos", "_row"]).reset_index(drop=True)
    if len(keep) == 0:
        return keep, X, dropped
    ev = (
        events
        if len(events)
        else pd.DataFrame(columns=["user_id", "content_id", "event_type", "timestamp"])
    )
    rows = join_outcomes(keep.drop(columns=["features"], errors="ignore"), ev, window)
    return rows, X, dropped


def read_impressions(
    folder: Path,
    done_files: set[str],
    file_max: dict[str, pd.Timestamp],
    lo: pd.Timestamp,
    lo_inclusive: bool,
    hi: pd.Timestamp,
) -> pd.DataFrame:
    """Impression log rows of ``folder`` with ``lo < timestamp <= hi`` (``>=`` with
    ``lo_inclusive``), skipping ``done_files``; records each file's newest impression in
    ``file_max`` and adds the files nothing can be used from to ``done_files``. An unreadable file
    is moved aside with its reason (:func:`quarantine_impressions`) rather than failing this and
    every later update; it is logged as an error, and the quarantine folder keeps it for a look."""
    parts = []
    for path in sorted(folder.glob("impressions-*.parquet")):
        if path.name in done_files:
            continue
        try:
            table = pq.read_table(path)
        except Exception as exc:
            quarantine_impressions(path, f"{type(exc).__name__}: {exc}")
            continue
        frame = table.select([c for c in IMPRESSION_COLUMNS if c in table.column_names]).to_pandas()
        ts = utc(frame["timestamp"])
        if len(ts):
            file_max[path.name] = ts.max()
        if len(ts) == 0 or ts.max() < lo:
            done_files.add(path.name)  # nothing in it can ever be used
            continue
        keep = ((ts >= lo) if lo_inclusive else (ts > lo)) & (ts <= hi)
        if keep.any():
            parts.append(frame[keep.to_numpy()].assign(_file=path.name))
    if not parts:
        return pd.DataFrame(columns=[*IMPRESSION_COLUMNS, "_file"])
    return pd.concat(parts, ignore_index=True)


def quarantine_impressions(path: Path, reason: str) -> Path:
    """Move the unreadable impression file ``path`` into ``quarantine/`` next to it, with
    ``<name>.reason.json`` saying why and when (:func:`~components.core.io.quarantine_file`);
    returns its new path."""
    target = quarantine_file(path, reason)
    log.error("impression log %s is unreadable (%s): moved to %s", path.name, reason, target)
    return target
