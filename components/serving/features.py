"""The ranker's input (:class:`FeatureAssembler`): the user's features from the Feast online
store, the items' from the exported rows, the pair features of the candidates and the request's
context, as the model's ``feature_cols`` matrix; and the online store's circuit breaker (after
a failure, requests fall back for ``serving.store_retry_s`` without trying the store)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components.serving.artifacts import ArtifactSet

if TYPE_CHECKING:
    from components.features.context import RequestContext
    from components.features.online import ServingFeatureFetcher
    from components.ranking.model import RankerModel

log = logging.getLogger(__name__)


def _scalar(v: Any) -> float | None:
    """A user / context value as a float; None for lists, strings and ids (not model inputs)."""
    if v is None:
        return float("nan")
    if isinstance(v, bool | int | float | np.integer | np.floating):
        return float(v)
    return None


def model_matrix(
    model: RankerModel, columns: Mapping[str, Any], n: int
) -> tuple[np.ndarray, list[str]]:
    """``[n, len(model.feature_cols)]`` float32 matrix from per-column arrays or scalars (NaN for
    a column no source produced) and the names of those missing columns."""
    x = np.full((n, len(model.feature_cols)), np.nan, dtype=np.float32)
    missing = []
    for j, name in enumerate(model.feature_cols):
        v = columns.get(name)
        if v is None:
            missing.append(name)
        else:
            x[:, j] = v
    return x, missing


class FeatureAssembler:
    """The online store connection (``fetcher``, None while unavailable) and the exported
    arrays: every column serving produces for a request's rows."""

    def __init__(
        self,
        artifacts: ArtifactSet,
        fetcher: ServingFeatureFetcher | None,
        *,
        store_factory: Callable[[], ServingFeatureFetcher] | None,
        store_retry_s: float,
    ) -> None:
        self.artifacts = artifacts
        self.fetcher = fetcher
        self.store_retry_s = store_retry_s
        self.store_down_until = 0.0  # monotonic s: the online store failed; retry after this
        self._store_factory = store_factory
        self._warned: set[str] = set()
        self._rows_of: tuple[Any, np.ndarray] | None = None  # (item cache, catalogue -> its rows)

    def store_ready(self) -> bool:
        """Whether the online store answers a lookup (False without trying while the circuit is
        open)."""
        if self.fetcher is None or time.monotonic() < self.store_down_until:
            return False
        try:
            self.fetcher.user_features("__readiness__")
            return True
        except Exception:
            self.store_down_until = time.monotonic() + self.store_retry_s
            return False

    def refresh(self) -> bool:
        """Open the store if it was unavailable, else reload the item features after a
        materialisation; True when anything changed (raises what the store raised)."""
        if self.fetcher is None and self._store_factory is not None:
            self.fetcher = self._store_factory()
            return True
        if self.fetcher is not None:
            return bool(self.fetcher.refresh_items())
        return False

    def _item_rows(self, fetcher: ServingFeatureFetcher) -> np.ndarray:
        """Catalogue position -> row of the fetcher's item matrix (-1: no features; one extra
        trailing -1 for position -1), recomputed when a refresh swapped the matrix or uploads
        grew the catalogue."""
        items = fetcher.items
        cached = self._rows_of
        if cached is None or cached[0] is not items or len(cached[1]) != len(self.artifacts.content_ids) + 1:
            rows = items.positions(self.artifacts.content_ids)
            cached = (items, np.append(rows, -1).astype(np.int64))
            self._rows_of = cached
        return cached[1]

    def pair_features(self, row: int, positions: np.ndarray, stats: np.ndarray) -> dict[str, np.ndarray]:
        """The pair features of the user of snapshot ``row`` and the contents at catalogue
        ``positions`` from the exported arrays
        (:meth:`~components.retrieval.pair_features.PairState.features_at`, the maths the batch
        trains on)."""
        art = self.artifacts
        return art.pair.features_at(int(art.model_rows[row]), art.queries[row], positions, stats)

    def columns(
        self,
        user_id: str,
        row: int,
        pos: np.ndarray,
        content_ids: Sequence[str],
        context: RequestContext,
        stats: np.ndarray,
    ) -> dict[str, Any]:
        """Every column serving produces for these rows: pair features (arrays), item features
        (arrays), user and context features (scalars)."""
        if self.fetcher is None:
            raise ConnectionError("feature store unavailable")
        wait = self.store_down_until - time.monotonic()
        if wait > 0:  # circuit open: do not tie up a thread on a store known to be down
            raise ConnectionError(f"feature store unavailable (next try in {wait:.1f} s)")
        try:
            fetcher = self.fetcher
            rf = fetcher.fetch(user_id, content_ids, context, rows=self._item_rows(fetcher)[pos])
        except Exception:
            self.store_down_until = time.monotonic() + self.store_retry_s
            raise
        cols: dict[str, Any] = {}
        for name, value in rf.user.items():
            v = _scalar(value)
            if v is not None and name != "user_id":
                cols[name] = v
        for j, name in enumerate(rf.item_columns):
            cols[name] = rf.items[:, j]
        for name, value in rf.context.items():
            v = _scalar(value)
            if v is not None:
                cols[name] = v
        cols.update(self.pair_features(row, pos, stats))
        return cols

    def matrix(self, model: RankerModel, cols: Mapping[str, Any], n: int) -> np.ndarray:
        """The model's input matrix; the columns no source produces are logged once per model
        version."""
        x, missing = model_matrix(model, cols, n)
        if missing and model.version not in self._warned:
            self._warned.add(model.version)
            log.warning(
                "model %s: %d feature columns not served (NaN): %s",
                model.version,
                len(missing),
                missing[:10],
            )
        return x
