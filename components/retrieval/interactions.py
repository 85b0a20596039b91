"""What the embeddings and the candidate sources are fitted on: the interim tables, the catalogue
of contents available at a time, and the users × contents interaction matrices.

Every (user, content) pair gets a net engagement weight: the sum over the pair's events of
``event_weights[type]`` plus ``watch_ratio_weight * min(watch_ratio, watch_ratio_cap)`` for
``view`` events. Positive types (like, share, save, ...) add, negative ones (skip, hide,
report) subtract, so a skipped video weighs less than a watched one and a hidden one
becomes a dislike. ``content_upload`` events are supply, not interactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

from components.core.catalog import DataPaths
from components.core.frames import arrow_string_mapper
from components.core.schema import BLOCKING_TYPES
from components.retrieval.embedding_params import EmbeddingParams

#: the data's sentinel for a missing category (and, from the real-data adapters, creator)
UNKNOWN = "unknown"

EVENT_COLUMNS: tuple[str, ...] = (
    "event_type", "user_id", "content_id", "creator_id", "timestamp", "watch_ratio", "category",
)


@dataclass(frozen=True)
class Interactions:
    """Users × contents matrices over fixed vocabularies (rows / columns sorted by id)."""

    user_ids: np.ndarray  # object, sorted
    item_ids: np.ndarray  # object, sorted: the catalogue
    weights: sp.csr_matrix  # float32 net engagement weight (may be negative)
    seen: sp.csr_matrix  # 1 where the user had any event with the content
    blocked: sp.csr_matrix  # 1 where the user hid or reported the content

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def positive(self) -> sp.csr_matrix:
        """Net-positive weights only (explicit zeros removed)."""
        pos = self.weights.copy()
        pos.data = np.maximum(pos.data, 0.0).astype(np.float32)
        pos.eliminate_zeros()
        return pos

    def user_index(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        return {str(c): i for i, c in enumerate(self.item_ids)}


def interaction_events(events: pd.DataFrame) -> pd.DataFrame:
    """Events that are user–content interactions (uploads and content-less events dropped)."""
    keep = events["content_id"].notna() & (events["event_type"] != "content_upload")
    return events.loc[keep]


def event_weights(events: pd.DataFrame, p: EmbeddingParams) -> np.ndarray:
    """Per-event engagement weight: type weight plus the capped watch ratio of views."""
    etype = events["event_type"].astype(str)
    w = etype.map(dict(p.event_weights)).fillna(0.0).to_numpy(dtype="float64")
    ratio = pd.to_numeric(events["watch_ratio"], errors="coerce").fillna(0.0).to_numpy(dtype="float64")
    w += np.where(etype.to_numpy() == "view", p.watch_ratio_weight * np.clip(ratio, 0.0, p.watch_ratio_cap), 0.0)
    return w


def build_interactions(
    events: pd.DataFrame,
    p: EmbeddingParams,
    item_ids: Sequence[str] | np.ndarray | None = None,
    user_ids: Sequence[str] | np.ndarray | None = None,
) -> Interactions:
    """Aggregate events into the net-weight, seen and blocked matrices.

    ``item_ids`` fixes the catalogue (contents without events get empty columns); events on
    contents outside it are dropped. Without ``user_ids`` the users are those with interactions.
    """
    ev = interaction_events(events)
    items = np.array(sorted({str(c) for c in (item_ids if item_ids is not None else ev["content_id"].unique())}), dtype=object)
    users = np.array(
        sorted({str(u) for u in (user_ids if user_ids is not None else ev["user_id"].unique())}), dtype=object
    )
    ui = pd.Index(users).get_indexer(ev["user_id"].astype(str))
    ii = pd.Index(items).get_indexer(ev["content_id"].astype(str))
    ok = (ui >= 0) & (ii >= 0)
    ui, ii = ui[ok], ii[ok]
    w = event_weights(ev, p)[ok]
    shape = (len(users), len(items))
    weights = sp.csr_matrix((w, (ui, ii)), shape=shape, dtype=np.float64)
    weights.sum_duplicates()
    seen = sp.csr_matrix((np.ones(len(ui), dtype=np.float32), (ui, ii)), shape=shape)
    seen.sum_duplicates()
    seen.data[:] = 1.0
    blk = ev["event_type"].astype(str).isin(BLOCKING_TYPES).to_numpy()[ok]
    blocked = sp.csr_matrix((np.ones(int(blk.sum()), dtype=np.float32), (ui[blk], ii[blk])), shape=shape)
    blocked.sum_duplicates()
    blocked.data[:] = 1.0
    # Keep structural entries whose weights cancel to exactly 0 distinguishable: nudge to tiny positive.
    weights.data[weights.data == 0.0] = 1e-6
    return Interactions(users, items, weights.astype(np.float32).tocsr(), seen.tocsr(), blocked.tocsr())


def catalogue(content: pd.DataFrame, events: pd.DataFrame, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Contents available at ``now``: uploaded (or, without an upload time, first seen) before it.

    Contents seen in events but missing from the content table get a row with no metadata.
    """
    c = content.drop_duplicates("content_id", keep="first").copy()
    c["content_id"] = c["content_id"].astype(str)
    ev = interaction_events(events)
    first_seen = ev.groupby(ev["content_id"].astype(str))["timestamp"].min()
    missing = sorted(set(first_seen.index) - set(c["content_id"]))
    if missing:
        c = pd.concat([c, pd.DataFrame({"content_id": missing})], ignore_index=True)
    upload = pd.to_datetime(c["upload_timestamp"], utc=True) if "upload_timestamp" in c else pd.Series(pd.NaT, index=c.index)
    avail = upload.fillna(c["content_id"].map(first_seen))
    c["available_at"] = avail
    if now is not None:
        c = c[c["available_at"].notna() & (c["available_at"] <= now)]
    return c.sort_values("content_id", kind="stable").reset_index(drop=True)


def read_interim(paths: DataPaths) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Clean events (interaction columns), content and users from ``data/interim``."""
    events = pq.read_table(paths.of("interim_events"), columns=list(EVENT_COLUMNS)).to_pandas(
        types_mapper=arrow_string_mapper
    )
    content = pq.read_table(paths.of("interim_content")).to_pandas(types_mapper=arrow_string_mapper)
    users_path = paths.of("interim_users")
    users = pq.read_table(users_path).to_pandas(types_mapper=arrow_string_mapper) if users_path.exists() else pd.DataFrame({"user_id": []})
    return events, content, users
