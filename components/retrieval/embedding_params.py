"""The ``embeddings`` section of params.yaml, typed (:class:`EmbeddingParams`), and the blocks of
the unified content embedding (:data:`BLOCKS`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.core.config import Params

BLOCKS: tuple[str, ...] = ("collaborative", "text", "category", "visual", "audio")


@dataclass(frozen=True)
class EmbeddingParams:
    """The ``embeddings`` section of params.yaml (plus ``base.seed``)."""

    factors: int
    regularization: float
    alpha: float
    negative_alpha: float
    iterations: int
    threads: int
    event_weights: Mapping[str, float]
    watch_ratio_weight: float
    watch_ratio_cap: float
    graph_dim: int
    graph_window: int
    graph_negative: float
    graph_rank: int
    graph_max_nodes: int
    text_dim: int
    tfidf_max_features: int
    ridge_alpha: float
    cold_blend: float
    min_ridge_interactions: int
    block_weights: Mapping[str, float]
    seed: int

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1 or self.graph_dim < 1 or self.text_dim < 1:
            raise ValueError("embeddings: factors, iterations, graph_dim and text_dim must be >= 1")
        if self.alpha <= 0 or self.negative_alpha < 0 or self.regularization < 0:
            raise ValueError("embeddings: alpha > 0, negative_alpha >= 0, regularization >= 0")
        if self.graph_window < 1 or self.graph_negative <= 0 or self.graph_rank < 1:
            raise ValueError("embeddings: graph_window >= 1, graph_negative > 0, graph_rank >= 1")
        unknown = set(self.block_weights) - set(BLOCKS)
        if unknown or any(w < 0 for w in self.block_weights.values()):
            raise ValueError(f"embeddings.block_weights: blocks {BLOCKS}, weights >= 0 (got {dict(self.block_weights)})")

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> EmbeddingParams:
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.embeddings.model_dump())
