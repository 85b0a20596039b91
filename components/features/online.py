"""The serving side of the feature store: one request's features, and pushes of fresh values.

:class:`ServingFeatureFetcher` reads the fast-changing user features from the online store per
request (applying the views' TTLs at the request time, as the offline join does), gathers the
candidates' rows from the in-memory :class:`~components.features.item_cache.ItemFeatureCache`
and computes the on-demand features with the same functions the on-demand views run
(:mod:`components.features.context`). 1 user + 500 candidates take ~1.5 ms (p99 ~2.2 ms) on
SQLite and Redis (``benchmarks/bench_feature_fetch.py``), against ~0.4 s for the same
FeatureService through Feast's ``get_online_features``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureService, FeatureStore
from feast.data_source import PushMode
from feast.types import Array

from components.features.context import RequestContext, context_arrays, recency_hours
from components.features.feast_repo import PUSH_SOURCE, odfv_names, service_of, ttl_s
from components.features.item_cache import ItemFeatureCache


def push_user_realtime(store: FeatureStore, rows: pd.DataFrame) -> None:
    """Write fresh ``rt_*`` user features to the online store (serving-side event consumer)."""
    df = rows.copy()
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    store.push(PUSH_SOURCE, df, to=PushMode.ONLINE)


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


@dataclass(frozen=True)
class RankingFeatures:
    """Features for one request: user values, candidate rows, context values."""

    user: dict[str, Any]
    items: np.ndarray
    item_columns: list[str]
    context: dict[str, Any]
    content_ids: Sequence[str]
    user_columns: Sequence[str] = ()  # the service's scalar user features, in order

    def matrix(
        self,
        user_columns: Sequence[str] | None = None,
        context_columns: Sequence[str] | None = None,
    ) -> np.ndarray:
        """[n_candidates, user + item + context] float64 matrix; by default the service's scalar
        user features and every context value (list-valued user features are left to the caller)."""
        ucols = user_columns if user_columns is not None else self.user_columns
        ccols = context_columns if context_columns is not None else list(self.context)
        u = np.array([_num(self.user.get(c)) for c in ucols], dtype="float64")
        cx = np.array([_num(self.context.get(c)) for c in ccols], dtype="float64")
        n = self.items.shape[0]
        return np.hstack(
            [np.broadcast_to(u, (n, len(u))), self.items, np.broadcast_to(cx, (n, len(cx)))]
        )


class ServingFeatureFetcher:
    """One request's features: user from the online store, items from memory, context computed.

    Views' TTLs are applied at the request time (the online stores return the latest value
    however old), so a request sees what a training row at the same time would see.
    """

    def __init__(
        self, store: FeatureStore, service: str | FeatureService, items: ItemFeatureCache
    ) -> None:
        self.store = store
        self.service = service_of(store, service)
        self.items = items
        odfvs = odfv_names(store)
        self.odfvs = [p.name for p in self.service.feature_view_projections if p.name in odfvs]
        self.user_refs: list[str] = []
        self.user_ttl_s: dict[str, int] = {}
        self.user_columns: list[str] = []  # the service's scalar user features
        self._add_service_user_features(odfvs)
        self._add_on_demand_inputs()

    def _add_service_user_features(self, odfvs: set[str]) -> None:
        """The service's user-keyed batch features (scalar ones also as matrix columns)."""
        for p in self.service.feature_view_projections:
            if p.name in odfvs:
                continue
            fv = self.store.get_feature_view(p.name)
            if "user_id" in fv.join_keys:
                for f in p.features:
                    self.user_refs.append(f"{p.name_to_use()}:{f.name}")
                    self.user_ttl_s[f.name] = ttl_s(fv)
                    if not isinstance(f.dtype, Array):
                        self.user_columns.append(f.name)

    def _add_on_demand_inputs(self) -> None:
        """Inputs of the on-demand views that the service itself does not list."""
        for name in self.odfvs:
            odfv = self.store.get_on_demand_feature_view(name)
            for src in odfv.source_feature_view_projections.values():
                for f in src.features:
                    ref = f"{src.name}:{f.name}"
                    if (
                        ref not in self.user_refs
                        and "user_id" in self.store.get_feature_view(src.name).join_keys
                    ):
                        self.user_refs.append(ref)
                        self.user_ttl_s[f.name] = ttl_s(self.store.get_feature_view(src.name))

    def user_features(self, user_id: str, at_s: int | None = None) -> dict[str, Any]:
        """The user's online features; with ``at_s``, values past their view's TTL are None."""
        got = self.store.get_online_features(
            features=self.user_refs, entity_rows=[{"user_id": user_id}]
        ).to_dict(include_event_timestamps=at_s is not None)
        out = {k: v[0] for k, v in got.items() if not k.endswith("__ts")}
        if at_s is not None:
            for name, ttl in self.user_ttl_s.items():
                ts = got.get(f"{name}__ts", [0])[0]
                if ttl > 0 and ts and at_s - ts > ttl:
                    out[name] = None
        return out

    def context_features(self, user: Mapping[str, Any], request: RequestContext) -> dict[str, Any]:
        """The service's on-demand features for this request."""
        out: dict[str, Any] = {}
        if "context" in self.odfvs:
            arrays = context_arrays(
                [request.request_ts_s],
                [request.utc_offset_min],
                [request.device_type],
                [request.network],
            )
            out.update({k: v[0].item() for k, v in arrays.items()})
        if "user_recency" in self.odfvs:
            out["rt_hours_since_last_event"] = float(
                recency_hours(request.request_ts_s, user.get("rt_last_event_ts_s"))[0]
            )
        return out

    def fetch(
        self,
        user_id: str,
        content_ids: Sequence[str],
        request: RequestContext,
        rows: np.ndarray | None = None,
    ) -> RankingFeatures:
        """``rows``: the contents' rows in ``items`` when the caller already knows them."""
        user = self.user_features(user_id, request.request_ts_s)
        items = (
            self.items.gather(content_ids, request.request_ts_s)
            if rows is None
            else self.items.gather_rows(rows, request.request_ts_s)
        )
        return RankingFeatures(
            user=user,
            items=items,
            item_columns=self.items.columns,
            context=self.context_features(user, request),
            content_ids=content_ids,
            user_columns=self.user_columns,
        )

    def refresh_items(self) -> bool:
        """Reload the item matrix if a materialisation finished since it was loaded."""
        if not self.items.is_stale(self.store):
            return False
        self.items = ItemFeatureCache.from_offline(self.store, self.service)
        return True
