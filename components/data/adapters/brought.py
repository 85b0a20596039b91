"""Splits brought as files: ``user,item,rating,timestamp`` tables onto one drop, parts kept in the ids."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from components.data.adapters.drop import (
    UNKNOWN,
    Drop,
    assemble_events,
    base_events,
    complete_content,
    emit,
    empty_users,
    null_timestamps,
    type_counts,
    validate_drop,
)
from components.data.adapters.movielens import HIDE_MAX_RATING, LIKE_MIN_RATING


def table_to_drop(
    parts: Mapping[str, pd.DataFrame],
    content: pd.DataFrame | None = None,
    *,
    like_min_rating: float = LIKE_MIN_RATING,
    hide_max_rating: float = HIDE_MAX_RATING,
) -> Drop:
    """Map ``user,item,rating,timestamp`` tables (a split brought as files) onto one drop.

    Each part (e.g. ``{"train": ..., "test": ...}``) keeps its name in its event ids
    (``<part>-<row>-<type>``), so the split survives ingestion. A row is a ``complete_view``
    carrying the rating, plus ``like`` / ``hide`` by the MovieLens thresholds when the rating is
    known. Ids are kept as given; ``content`` (``content_id`` plus any content column) describes
    the items, otherwise only their ids are known.
    """
    if hide_max_rating >= like_min_rating:
        raise ValueError("hide_max_rating must be below like_min_rating")
    frames = []
    for name, rows in parts.items():
        missing = {"user", "item", "timestamp"} - set(rows.columns)
        if missing:
            raise ValueError(f"{name}: missing column(s) {sorted(missing)}")
        rating = pd.to_numeric(rows["rating"], errors="coerce") if "rating" in rows else pd.Series(np.nan, index=rows.index)
        base = base_events(
            rows["user"].astype(str).to_numpy(),
            rows["item"].astype(str).to_numpy(),
            pd.to_datetime(rows["timestamp"], utc=True).astype("datetime64[ms, UTC]").to_numpy(),
        )
        r = pd.Series(rating.to_numpy(dtype="float64"), index=base.index)
        events = assemble_events(
            [
                emit(base, "complete_view", rating=r),
                emit(base, "like", r >= like_min_rating),
                emit(base, "hide", r <= hide_max_rating),
            ],
            str(name),
        )
        frames.append(events)
    events = pd.concat(frames, ignore_index=True)
    items = pd.Series(sorted(events["content_id"].unique()), dtype=object)
    if content is None:
        table = pd.DataFrame({"content_id": items, "creator_id": UNKNOWN, "category": UNKNOWN})
    else:
        table = content.copy()
        table["content_id"] = table["content_id"].astype(str)
        extra = items[~items.isin(table["content_id"])]
        table = pd.concat([table, pd.DataFrame({"content_id": extra})], ignore_index=True)
        for col in ("creator_id", "category"):
            table[col] = table[col].fillna(UNKNOWN) if col in table else UNKNOWN
    if "upload_timestamp" not in table:
        table["upload_timestamp"] = null_timestamps(len(table))
    users = empty_users(pd.Series(sorted(events["user_id"].unique()), dtype=object))
    reconciliation = {
        **{f"{name}_rows": len(rows) for name, rows in parts.items()},
        **type_counts(events, ("complete_view", "like", "hide")),
        "events": len(events),
        "users": len(users),
        "content": len(table),
    }
    drop = Drop(events, users, complete_content(table), reconciliation)
    validate_drop(drop)
    return drop
