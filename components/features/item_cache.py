"""The serving side's item features: a FeatureService's content and creator views held in memory
as one float64 matrix, with the views' TTLs applied at request time.

Feast's online lookups return an entity's latest value however old it is, while the offline join
drops rows older than the view's TTL; :class:`ItemFeatureCache` keeps each row's feature
timestamp per view so that :meth:`ItemFeatureCache.gather` blanks what a training row at the same
time would not see. It is loaded after each materialisation from the offline files as of the
materialised end (what the online store holds) or from the online store itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from feast import FeatureService, FeatureStore, FeatureView

from components.features.feast_repo import (
    latest_end,
    odfv_names,
    service_of,
    source_path,
    ttl_s,
    utc,
)

#: One view's block of the matrix: (view name, TTL in s, rows aligned to the ids, feature names).
ViewBlock = tuple[str, int, pd.DataFrame, list[str]]
ITEM_KEYS = ("content_id", "creator_id")


def is_missing(v: Any) -> bool:
    """None or a float NaN (a feature without a value)."""
    return v is None or (isinstance(v, float) and np.isnan(v))


def _expand(name: str, values: pd.Series) -> tuple[list[str], np.ndarray]:
    """A feature column as float64 matrix columns (a list feature becomes ``name_0..name_k``,
    padded with NaN to the longest list). float64 keeps every value exactly as in training."""
    first = next((v for v in values if not is_missing(v)), None)
    if isinstance(first, list | tuple | np.ndarray):
        width = max((len(v) for v in values if not is_missing(v)), default=0)
        out = np.full((len(values), width), np.nan, dtype="float64")
        for i, v in enumerate(values):
            if not is_missing(v) and len(v):
                out[i, : len(v)] = np.asarray(v, dtype="float64")
        return [f"{name}_{j}" for j in range(width)], out
    return [name], pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64").reshape(-1, 1)


def _latest_rows(
    store: FeatureStore, fv: FeatureView, columns: list[str], asof: datetime | None
) -> pd.DataFrame:
    """A view's latest row per entity with ``event_timestamp <= asof`` (default: the view's last
    materialised end) from its file, indexed by the entity key, ``_ts`` in epoch seconds."""
    key = fv.join_keys[0]
    until = asof or fv.most_recent_end_time
    t = pq.read_table(source_path(store, fv), columns=[key, "event_timestamp", *columns]).to_pandas()
    if until is not None:
        t = t[t["event_timestamp"] <= pd.Timestamp(utc(until))]
    t = t.sort_values([key, "event_timestamp"], kind="stable").drop_duplicates(key, keep="last")
    t["_ts"] = t["event_timestamp"].astype("datetime64[ms, UTC]").astype("int64") // 1000
    return t.set_index(key)


def _feature_refs(projs: Sequence[tuple[Any, FeatureView]], key: str) -> list[str]:
    """``view:feature`` references of the projections whose view is keyed by ``key``."""
    return [
        f"{p.name_to_use()}:{f.name}" for p, fv in projs if fv.join_keys[0] == key for f in p.features
    ]


@dataclass
class ItemFeatureCache:
    """Item features of a FeatureService (content views + the creator's) as one float64 matrix.

    ``view_ts`` holds, per view, each row's feature timestamp (epoch s, -1 when absent) so that
    :meth:`gather` can apply the views' TTLs at request time exactly as the offline join does.
    """

    ids: pd.Index
    matrix: np.ndarray
    columns: list[str]
    asof: datetime | None = None
    creators: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    view_cols: dict[str, np.ndarray] = field(default_factory=dict)
    view_ts: dict[str, np.ndarray] = field(default_factory=dict)
    view_ttl_s: dict[str, int] = field(default_factory=dict)

    def positions(self, content_ids: Sequence[str]) -> np.ndarray:
        """Matrix rows of the contents (-1 for unknown ones)."""
        return self.ids.get_indexer(pd.Index(content_ids))

    def gather(self, content_ids: Sequence[str], at_s: int | None = None) -> np.ndarray:
        """Rows for the candidates (NaN for unknown contents and, with ``at_s``, for views whose
        row is older than the view's TTL at that time)."""
        return self.gather_rows(self.ids.get_indexer(pd.Index(content_ids)), at_s)

    def gather_rows(self, pos: np.ndarray, at_s: int | None = None) -> np.ndarray:
        """:meth:`gather` by matrix rows (``positions`` of the contents; -1 for unknown ones):
        for callers that map their catalogue to rows once instead of per request."""
        safe = np.maximum(pos, 0)
        out = self.matrix.take(safe, axis=0)
        unknown = pos < 0
        if unknown.any():
            out[unknown] = np.nan
        if at_s is not None:
            for view, ttl in self.view_ttl_s.items():
                if ttl > 0:
                    stale = (at_s - self.view_ts[view][safe]) > ttl
                    if stale.any():
                        out[np.ix_(stale, self.view_cols[view])] = np.nan
        return out

    @staticmethod
    def item_projections(
        store: FeatureStore, service: FeatureService
    ) -> list[tuple[Any, FeatureView]]:
        """The service's batch projections keyed by content or creator, with their views."""
        odfvs = odfv_names(store)
        out = []
        for p in service.feature_view_projections:
            if p.name in odfvs:
                continue
            fv = store.get_feature_view(p.name)
            if fv.join_keys[0] in ITEM_KEYS:
                out.append((p, fv))
        return out

    @classmethod
    def from_offline(
        cls, store: FeatureStore, service: str | FeatureService, asof: datetime | None = None
    ) -> ItemFeatureCache:
        """Latest row per entity with ``event_timestamp <= asof`` (default: each view's last
        materialised end, i.e. what materialisation wrote online) from the views' files."""
        svc = service_of(store, service)
        projs = cls.item_projections(store, svc)
        owners = _latest_rows(store, store.get_feature_view("content_profile"), ["c_creator_id"], asof)
        ids = pd.Index(owners.index.astype(str), name="content_id")
        for _, fv in projs:
            if fv.join_keys[0] == "content_id":
                ids = ids.union(pd.Index(_latest_rows(store, fv, [], asof).index.astype(str)))
        creators = owners["c_creator_id"].reindex(ids).to_numpy(dtype=object)
        views: list[ViewBlock] = []
        for p, fv in projs:
            names = [f.name for f in p.features]
            index = ids if fv.join_keys[0] == "content_id" else pd.Index(creators)
            aligned = _latest_rows(store, fv, names, asof).reindex(index).reset_index(drop=True)
            views.append((p.name, ttl_s(fv), aligned, names))
        return cls._build(ids, views, creators, asof or latest_end(store, [fv for _, fv in projs]))

    @classmethod
    def from_online(
        cls,
        store: FeatureStore,
        service: str | FeatureService,
        content_ids: Sequence[str],
        chunk: int = 1000,
    ) -> ItemFeatureCache:
        """Read the items' features back from the online store (in chunks)."""
        svc = service_of(store, service)
        projs = cls.item_projections(store, svc)
        ids = pd.Index([str(c) for c in content_ids], name="content_id")
        content_refs = _feature_refs(projs, "content_id")
        creator_refs = _feature_refs(projs, "creator_id")
        parts = [
            _online_chunk(store, list(ids[i : i + chunk]), content_refs, creator_refs)
            for i in range(0, len(ids), chunk)
        ]
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        views = []
        for p, fv in projs:
            names = [f.name for f in p.features]
            block = frame[names].copy()
            present = frame[names].notna().any(axis=1).to_numpy()
            block["_ts"] = np.where(present, frame[f"{names[0]}__ts"].to_numpy(dtype="int64"), -1)
            views.append((p.name, ttl_s(fv), block, names))
        return cls._build(
            ids,
            views,
            frame["c_creator_id"].to_numpy(dtype=object),
            latest_end(store, [fv for _, fv in projs]),
        )

    @classmethod
    def _build(
        cls,
        ids: pd.Index,
        views: Sequence[ViewBlock],
        creators: np.ndarray,
        asof: datetime | None,
    ) -> ItemFeatureCache:
        columns: list[str] = []
        blocks: list[np.ndarray] = []
        view_cols: dict[str, np.ndarray] = {}
        view_ts: dict[str, np.ndarray] = {}
        view_ttl: dict[str, int] = {}
        for view, ttl, frame, names in views:
            first = len(columns)
            for name in names:
                cols, block = _expand(name, frame[name])
                columns += cols
                blocks.append(block)
            view_cols[view] = np.arange(first, len(columns))
            view_ts[view] = (
                pd.to_numeric(frame["_ts"], errors="coerce").fillna(-1).to_numpy(dtype="int64")
            )
            view_ttl[view] = ttl
        matrix = (
            np.ascontiguousarray(np.hstack(blocks))
            if blocks
            else np.zeros((len(ids), 0), dtype="float64")
        )
        return cls(ids, matrix, columns, asof, creators, view_cols, view_ts, view_ttl)

    def is_stale(self, store: FeatureStore) -> bool:
        """True when a materialisation finished after this cache was loaded."""
        item_views = [fv for fv in store.list_feature_views() if fv.join_keys[0] in ITEM_KEYS]
        end = latest_end(store, item_views)
        return end is not None and (self.asof is None or end > self.asof)


def _online_chunk(
    store: FeatureStore, batch: list[str], content_refs: list[str], creator_refs: list[str]
) -> pd.DataFrame:
    """One chunk of contents' online features (with timestamps), their creators' joined on."""
    got = store.get_online_features(
        features=[*content_refs, "content_profile:c_creator_id"],
        entity_rows=[{"content_id": c} for c in batch],
    ).to_dict(include_event_timestamps=True)
    part = pd.DataFrame(got)
    if creator_refs:
        owners = [o if o is not None else "" for o in part["c_creator_id"]]
        cr = store.get_online_features(
            features=creator_refs, entity_rows=[{"creator_id": o} for o in owners]
        ).to_dict(include_event_timestamps=True)
        for k, v in cr.items():
            if k != "creator_id":
                part[k] = v
    return part
