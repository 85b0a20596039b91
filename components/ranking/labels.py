"""Outcome labels of (user, content, start) rows from the user's later events on the content.

The labels (:data:`LABEL_COLUMNS`), from the events in ``(start, start + window]``:

* ``label_engaged``: like / share / comment / save / follow / complete_view / replay;
* ``label_like``, ``label_share``, ``label_complete_view``;
* ``label_watch_ratio``: the largest watch ratio of the window's views (NaN if not viewed);
* ``label_negative``: skip / hide / report;
* ``relevance``: 3 share / comment / save / follow, 2 complete_view / like / replay, 1 viewed,
  0 nothing or only negative events.

The training set (:mod:`components.ranking.dataset`) labels candidates at a cut with them;
log-and-join (:func:`join_outcomes`) labels logged impressions with the same rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from components.core.schema import (
    CONSUMPTION_TYPES,
    CONTENT_NEGATIVE_TYPES,
    LIGHT_POSITIVE_TYPES,
    POSITIVE_TYPES,
    STRONG_POSITIVE_TYPES,
)

LABEL_COLUMNS: tuple[str, ...] = (
    "label_engaged",
    "label_like",
    "label_share",
    "label_complete_view",
    "label_watch_ratio",
    "label_negative",
    "relevance",
)
#: the 0/1 labels (any matching event in the window)
BINARY_LABELS: tuple[str, ...] = (
    "label_engaged",
    "label_like",
    "label_share",
    "label_complete_view",
    "label_negative",
)


def utc(ts: Any) -> pd.Timestamp:
    """``ts`` as a UTC timestamp (a naive one is taken as UTC)."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def utc_series(s: pd.Series) -> pd.Series:
    """Times as ``datetime64[ns, UTC]``."""
    return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")


def _naive_utc(s: pd.Series) -> np.ndarray:
    """UTC instants as a plain ``datetime64[ns]`` array (tz-aware ``to_numpy`` gives objects)."""
    return utc_series(s).dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _label_keys(keys: pd.DataFrame, start_col: str) -> pd.DataFrame:
    """The rows to label: position, user, content and window start (naive UTC)."""
    return pd.DataFrame(
        {
            "_row": np.arange(len(keys)),
            "user_id": keys["user_id"].astype(str).to_numpy(),
            "content_id": keys["content_id"].astype(str).to_numpy(),
            "_start": _naive_utc(keys[start_col]),
        }
    )


def _nearby_events(events: pd.DataFrame, k: pd.DataFrame, window: pd.Timedelta) -> pd.DataFrame:
    """The content events that can fall in some row's window (user, content, type, time,
    watch ratio)."""
    ts = utc_series(events["timestamp"])
    near = events["content_id"].notna()
    if len(k):
        lo = pd.Timestamp(k["_start"].min()).tz_localize("UTC")
        hi = pd.Timestamp(k["_start"].max()).tz_localize("UTC") + window
        near &= (ts >= lo) & (ts <= hi)
    ev = events.loc[near, ["user_id", "content_id", "event_type", "timestamp"]]
    return pd.DataFrame(
        {
            "user_id": ev["user_id"].astype(str).to_numpy(),
            "content_id": ev["content_id"].astype(str).to_numpy(),
            "event_type": ev["event_type"].astype(str).to_numpy(),
            "_t": _naive_utc(ev["timestamp"]),
            "watch_ratio": (
                events.loc[ev.index, "watch_ratio"].to_numpy(dtype="float64", na_value=np.nan)
                if "watch_ratio" in events
                else np.nan
            ),
        }
    )


def _event_flags(m: pd.DataFrame) -> pd.DataFrame:
    """Per (row, event) pair: which label each event sets."""
    typ = m["event_type"]
    return pd.DataFrame(
        {
            "_row": m["_row"].to_numpy(),
            "label_engaged": typ.isin(POSITIVE_TYPES).to_numpy(),
            "label_like": (typ == "like").to_numpy(),
            "label_share": (typ == "share").to_numpy(),
            "label_complete_view": (typ == "complete_view").to_numpy(),
            "label_negative": typ.isin(CONTENT_NEGATIVE_TYPES).to_numpy(),
            "_viewed": typ.isin(CONSUMPTION_TYPES).to_numpy(),
            "_g3": typ.isin(STRONG_POSITIVE_TYPES).to_numpy(),
            "_g2": typ.isin(LIGHT_POSITIVE_TYPES).to_numpy(),
            "label_watch_ratio": m["watch_ratio"].where(typ.isin(CONSUMPTION_TYPES)).to_numpy(),
        }
    )


def _labels_of(agg: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """The label columns from the per-row maxima of the flags."""
    out = pd.DataFrame(index=index)
    for c in BINARY_LABELS:
        out[c] = (agg[c].fillna(0.0).to_numpy() > 0).astype(np.int8)
    out["label_watch_ratio"] = agg["label_watch_ratio"].to_numpy(dtype="float64")
    g3 = agg["_g3"].fillna(0.0).to_numpy() > 0
    g2 = agg["_g2"].fillna(0.0).to_numpy() > 0
    viewed = agg["_viewed"].fillna(0.0).to_numpy() > 0
    out["relevance"] = np.select([g3, g2, viewed], [3, 2, 1], 0).astype(np.int8)
    return out[list(LABEL_COLUMNS)]


def outcome_labels(
    keys: pd.DataFrame,
    events: pd.DataFrame,
    window: pd.Timedelta,
    *,
    start_col: str = "start",
    include_start: bool = False,
) -> pd.DataFrame:
    """Labels of each ``keys`` row (user_id, content_id, ``start_col``) from the user's events on
    that content in ``(start, start + window]`` (``[start, ...]`` with ``include_start``).

    Returns a frame aligned with ``keys`` (same index) holding :data:`LABEL_COLUMNS`.
    """
    k = _label_keys(keys, start_col)
    m = k.merge(_nearby_events(events, k, window), on=["user_id", "content_id"], how="inner")
    after = m["_t"] >= m["_start"] if include_start else m["_t"] > m["_start"]
    flags = _event_flags(m[after & (m["_t"] <= m["_start"] + window)])
    agg = (
        flags.astype({c: "float64" for c in flags.columns if c != "_row"})
        .groupby("_row")
        .max()
        .reindex(np.arange(len(keys)))
    )
    return _labels_of(agg, keys.index)


def join_outcomes(
    impressions: pd.DataFrame, events: pd.DataFrame, window: pd.Timedelta
) -> pd.DataFrame:
    """Logged impressions with the labels of the user's events on the content within
    ``[timestamp, timestamp + window]`` (log-and-join training data; the impression columns,
    feature snapshot included, are kept as logged)."""
    missing = [c for c in ("user_id", "content_id", "timestamp") if c not in impressions]
    if missing:
        raise KeyError(f"impressions need columns {missing}")
    labels = outcome_labels(impressions, events, window, start_col="timestamp", include_start=True)
    out = impressions.drop(columns=[c for c in LABEL_COLUMNS if c in impressions])
    return pd.concat([out, labels], axis=1)


def head_labels(rows: pd.DataFrame, col: str) -> np.ndarray:
    """The labels a head learns from, as floats (NaN: the row does not count for that head).

    ``label_negative`` counts only on rows the user reacted to at all (any event on the content in
    the window: a view, an engagement or the negative event itself). Over every candidate, "was
    skipped / hidden / reported" is mostly "was seen", and seen contents are the ones users also
    engage with: a head learning it, weighted negatively, pushed down the very contents users
    engage with (synthetic evaluation: NDCG@10 0.0775 with it, 0.1344 with the engagement head
    alone). Conditioned on a reaction it learns how likely a content is to be rejected once
    seen, the quality signal the negative weight is meant for. ``label_watch_ratio`` is already
    NaN on unviewed rows; the other labels count everywhere.
    """
    y = rows[col].to_numpy(dtype="float64", na_value=np.nan)
    if col != "label_negative":
        return y
    reacted = np.nan_to_num(y) > 0
    for c in ("label_engaged", "relevance"):
        if c in rows:
            reacted |= rows[c].to_numpy(dtype="float64", na_value=0.0) > 0
    if "label_watch_ratio" in rows:
        reacted |= rows["label_watch_ratio"].notna().to_numpy()
    return np.where(reacted, y, np.nan)
