"""Per-user outcomes of served feeds: the impression log joined with the events that followed
each impression (:func:`components.ranking.labels.join_outcomes`: the user's events on the
content within the label window), aggregated per user and arm.

Per user: ``impressions``, ``requests``, ``engaged`` / ``negative`` impressions and their
rates (``engagement_rate``: CTR from impression to any positive engagement; ``negative_rate``:
skip / hide / report). Rates are per user, so the user (the randomisation unit) is the unit of
every test."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from components.ranking.labels import join_outcomes

log = logging.getLogger(__name__)

#: per-user metrics an experiment or gate can test
METRICS: tuple[str, ...] = ("engagement_rate", "negative_rate", "impressions", "requests")
IMPRESSION_COLUMNS: tuple[str, ...] = (
    "request_id", "user_id", "content_id", "position", "model_version", "arm", "propensity",
    "score", "model_score", "shadow_version", "shadow_score", "degraded", "timestamp",
)  # fmt: skip


def read_impression_log(folder: Path, columns: Sequence[str] = IMPRESSION_COLUMNS) -> pd.DataFrame:
    """Every impression log file under ``folder`` (empty frame with ``columns`` when none).

    An unreadable file (torn by a crash, damaged on disk) is moved to ``quarantine/`` with its
    reason and logged as an error, so it cannot stop every later gate, monitor and KPI run. A
    file is a slice of time holding every arm's impressions, so leaving it out shrinks the
    sample without favouring an arm; the error names the file."""
    import pyarrow.parquet as pq

    from components.core.io import quarantine_file

    parts = []
    for path in sorted(Path(folder).glob("impressions-*.parquet")):
        try:
            table = pq.read_table(path)
        except Exception as exc:  # any reader failure: the file's bytes are not a Parquet table
            target = quarantine_file(path, f"{type(exc).__name__}: {exc}")
            log.error("impression log %s is unreadable (%s): moved to %s, left out of this analysis", path.name, exc, target)
            continue
        parts.append(table.select([c for c in columns if c in table.column_names]).to_pandas())
    if not parts:
        return pd.DataFrame(columns=list(columns))
    out = pd.concat(parts, ignore_index=True)
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    return out


def read_stream(folder: Path) -> pd.DataFrame:
    """Every event the API accepted (the stream's Parquet segments; empty frame when none)."""
    from components.data.ingestion.store import read_events

    folder = Path(folder)
    if not folder.exists() or not any(folder.rglob("*.parquet")):
        return pd.DataFrame(columns=["user_id", "content_id", "event_type", "timestamp"])
    return read_events(folder)


def labelled_impressions(
    impressions: pd.DataFrame, events: pd.DataFrame, window_s: float
) -> pd.DataFrame:
    """Impressions (one per request and content) with ``label_engaged`` and ``label_negative``
    from the user's events on the content in ``[timestamp, timestamp + window_s]``."""
    imp = impressions.drop_duplicates(["request_id", "content_id"]).reset_index(drop=True)
    imp = imp.assign(
        user_id=imp["user_id"].astype(str),
        content_id=imp["content_id"].astype(str),
        timestamp=pd.to_datetime(imp["timestamp"], utc=True),
    )
    if events.empty:
        return imp.assign(label_engaged=0, label_negative=0)
    ev = events[events["content_id"].notna()].assign(
        user_id=lambda f: f["user_id"].astype(str),
        content_id=lambda f: f["content_id"].astype(str),
        timestamp=lambda f: pd.to_datetime(f["timestamp"], utc=True),
    )
    return join_outcomes(imp, ev, pd.Timedelta(seconds=float(window_s)))


def per_user(labelled: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per (``by`` columns, user): impressions, requests, engaged, negative and their rates."""
    keys = [*by, "user_id"]
    f = labelled.assign(
        engaged=(labelled["label_engaged"] > 0).astype("int64"),
        negative=(labelled["label_negative"] > 0).astype("int64"),
    )
    out = f.groupby(keys, as_index=False, observed=True).agg(
        impressions=("content_id", "size"),
        requests=("request_id", "nunique"),
        engaged=("engaged", "sum"),
        negative=("negative", "sum"),
    )
    out["engagement_rate"] = out["engaged"] / out["impressions"]
    out["negative_rate"] = out["negative"] / out["impressions"]
    return out
