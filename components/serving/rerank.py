"""Re-ranking a request's scored candidates (:class:`Reranker`): the real-time interest's pull,
the trend boost, the DPP slate (:func:`~components.retrieval.exploration.dpp_rerank`) and
ε-greedy / UCB exploration (:func:`~components.retrieval.exploration.explore_slate`; the
candidates uploaded since the export get ``serving.explore_uploads`` of its slots), with the
pure helpers they use."""

from __future__ import annotations

import hashlib

import numpy as np

from components.retrieval.exploration import dpp_rerank, explore_slate
from components.serving.artifacts import ArtifactSet
from components.serving.bandit import ItemStats
from components.serving.catalogue import Catalogue
from components.serving.feed import FeedItem
from components.serving.settings import ServingSettings


def trend_factors(n_items: int, positions: np.ndarray, growth: np.ndarray) -> np.ndarray:
    """Per catalogue position, ``g / (1 + g)`` of the trending growth (0 when not trending)."""
    out = np.zeros(n_items, dtype=np.float64)
    g = np.clip(np.asarray(growth, dtype=np.float64), 0.0, None)
    out[np.asarray(positions, dtype=np.int64)] = g / (1.0 + g)
    return out


def boost(scores: np.ndarray, trend: np.ndarray, beta: float) -> np.ndarray:
    """``s (1 + beta t)`` for positive scores, ``s + beta t |s|`` in general (a boost never lowers)."""
    s = np.asarray(scores, dtype=np.float64)
    return s + beta * np.asarray(trend, dtype=np.float64) * np.abs(s)


def request_seed(seed: int, request_id: str) -> np.random.Generator:
    """The request's generator: the same request id explores the same way (reproducible logs)."""
    h = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big")
    return np.random.default_rng([seed, h])


class Reranker:
    """The catalogue's trend factors and item vectors, and the re-ranking settings."""

    def __init__(
        self,
        artifacts: ArtifactSet,
        catalogue: Catalogue,
        settings: ServingSettings,
        item_stats: ItemStats | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.settings = settings
        self.item_stats = item_stats  # UCB's per-item statistics from the stream
        self.catalogue = catalogue
        self.n_exported = len(catalogue)  # positions from here on: uploads since the export
        t = artifacts.trending
        self._trend = trend_factors(len(catalogue), t.items, t.scores)

    def trend_at(self, pos: np.ndarray) -> np.ndarray:
        """The trend factors of catalogue positions (0 for contents uploaded since the export)."""
        out = np.zeros(len(pos), dtype=np.float64)
        inside = pos < len(self._trend)
        out[inside] = self._trend[pos[inside]]
        return out

    def upload_weights(self, below: np.ndarray, ids: list[str]) -> dict[str, float] | None:
        """Exploration weights of the contents below the slate (catalogue positions ``below``,
        content ids ``ids``): the uploads since the export share ``serving.explore_uploads``
        of the exploration slots, the others the rest (None: no uploads, or a share of 0)."""
        share = self.settings.explore_uploads
        new = below >= self.n_exported
        if share <= 0 or not new.any():
            return None
        n_new, n_old = int(new.sum()), int((~new).sum())
        w_new = share / n_new if n_old else 1.0
        w_old = (1.0 - share) / n_old if n_old else 0.0
        return {c: (w_new if is_new else w_old) for c, is_new in zip(ids, new.tolist(), strict=True)}

    def interest_boost(self, fresh: tuple[np.ndarray, float], pos: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``weight · n/(n+2) · cos(content, interest) · std(scores)``: in the scores' own units,
        so the pull of fresh engagements does not depend on the model's scale."""
        vector, strength = fresh
        vecs = np.asarray(self.artifacts.item_vectors[pos], dtype=np.float64)
        norms = np.linalg.norm(vecs, axis=1)
        cos = np.divide(vecs @ vector.astype(np.float64), norms, out=np.zeros(len(vecs)), where=norms > 0)
        scale = float(np.std(scores)) or 1.0
        return np.asarray(self.settings.realtime_weight * strength * cos * scale)

    def rerank(
        self,
        pos: np.ndarray,
        cids: np.ndarray,
        sources: np.ndarray,
        scores: np.ndarray,
        k: int,
        request_id: str,
        user_id: str = "",
    ) -> tuple[list[FeedItem], list[int]]:
        """Trend boost, DPP slate, exploration (with the user's experiment arms' settings); the
        feed items and their candidate rows."""
        beta, explo = self.settings.for_user(user_id)
        trend = self.trend_at(pos)
        boosted = boost(scores, trend, beta)
        tie = self.catalogue.id_rank[pos]  # ties by content id, compared as integers
        order = np.lexsort((tie, -boosted))
        pool = order[: max(self.settings.rerank_pool, k)]
        vectors = np.asarray(self.artifacts.item_vectors[pos[pool]], dtype=np.float64)
        picked = pool[dpp_rerank(boosted[pool], vectors, k, explo.dpp_theta)]
        slate = picked[np.lexsort((tie[picked], -boosted[picked]))]
        rest = order[~np.isin(order, slate)]
        ranked = np.concatenate([slate, rest])
        ranked_ids = cids[ranked].tolist()
        ucb = explo.strategy == "ucb" and explo.epsilon > 0 and self.item_stats is not None
        # the ranker has no batch features of an upload since the export: exploration is how it
        # gets the impressions that teach the next training about it (cold start)
        shown = explore_slate(
            ranked_ids,
            k,
            explo,
            request_seed(self.settings.seed, request_id),
            scores=boosted[ranked].tolist(),
            weights=self.upload_weights(pos[ranked[k:]], ranked_ids[k:]),
            stats=self.item_stats.snapshot(ranked_ids[k:]) if ucb and self.item_stats else None,
        )
        where = {c: j for j, c in enumerate(ranked_ids[: k + 1])}
        row_of = {
            imp.content_id: int(ranked[where[imp.content_id]])
            if imp.content_id in where
            else int(ranked[ranked_ids.index(imp.content_id)])
            for imp in shown
        }
        items, rows = [], []
        for imp in shown:
            i = row_of[imp.content_id]
            rows.append(i)
            items.append(
                FeedItem(
                    content_id=imp.content_id,
                    score=float(boosted[i]),
                    source=str(sources[i]),
                    exploration=imp.slot == "explore",
                    propensity=float(imp.propensity),
                    position=int(imp.position),
                )
            )
        return items, rows
