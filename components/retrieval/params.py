"""The ``candidates`` section of params.yaml, typed: the sources and their quotas
(:class:`CandidateParams`), the FAISS index (:class:`IndexParams`) and the hold-out evaluation
(:class:`EvalParams`); plus the names of the sources and of the popularity baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.core.config import Params
from components.retrieval.pair_features import KNN_SCORING

SOURCES: tuple[str, ...] = (
    "content", "item_knn", "user_knn", "hybrid", "mf", "graph", "ease", "trending", "recent", "fresh", "followed",
)
BASELINE = "popularity"
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivf", "ivfpq")


@dataclass(frozen=True)
class IndexParams:
    """``candidates.index`` (plus ``base.seed``: the training sample and k-means seed)."""

    type: str
    hnsw_m: int
    ef_construction: int
    ef_search: int
    nlist: int  # 0: about 4 sqrt(n), with at least 39 training points per list
    nprobe: int
    pq_m: int  # sub-quantisers: the largest divisor of the dimension not above this
    pq_bits: int
    refine_factor: int  # IVF-PQ: re-rank refine_factor * k PQ hits with exact vectors (0: off)
    build_threads: int  # 1 keeps HNSW / k-means builds reproducible; 0 = all threads
    max_train_per_list: int  # IVF training sample: at most this many vectors per list
    seed: int
    recall_k: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.type not in INDEX_TYPES:
            raise ValueError(f"candidates.index.type must be one of {INDEX_TYPES}, got {self.type!r}")
        if min(self.hnsw_m, self.ef_construction, self.ef_search, self.nprobe, self.pq_m, self.pq_bits) < 1:
            raise ValueError("candidates.index: sizes must be >= 1")

    @classmethod
    def from_mapping(cls, s: Mapping[str, Any]) -> IndexParams:
        """From a saved index manifest (every field written by ``asdict``)."""
        return cls(**{**s, "recall_k": tuple(int(k) for k in s["recall_k"])})


@dataclass(frozen=True)
class CandidateParams:
    """The ``candidates`` section of params.yaml for one data set (plus ``base.seed``)."""

    similarity_threshold: float
    alpha: float
    knn_k: int
    knn_shrinkage: float
    knn_bias_reg: float
    knn_scoring: str  # global | normalised | aggregate
    trending_window_hours: float
    recent_window_hours: float  # "recent": most engaged contents of this last window
    trending_min_engagements: int
    fresh_max_age_hours: float
    per_source: int  # contents each source returns at most
    per_user: int  # merged candidates written per user
    ease_lambda: float  # EASE ridge strength; 0 turns the source off
    ease_max_items: int  # EASE inverts an items x items Gram matrix: only small catalogues
    ease_window: int  # EASE's Gram also counts pairs consumed within this many steps (0: off)
    ease_window_weight: float  # weight of those pairs
    item_windows_hours: tuple[float, ...]  # item activity features
    mix: Mapping[str, float]
    index: IndexParams
    seed: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("candidates.alpha must be in [0, 1]")
        if not -1.0 <= self.similarity_threshold <= 1.0:
            raise ValueError("candidates.similarity_threshold must be a cosine in [-1, 1]")
        if self.knn_scoring not in KNN_SCORING:
            raise ValueError(f"candidates.knn.scoring must be one of {KNN_SCORING}")
        unknown = set(self.mix) - set(SOURCES)
        if unknown:
            raise ValueError(f"candidates.mix: unknown sources {sorted(unknown)}")
        if any(q < 0 for q in self.mix.values()) or sum(self.mix.values()) > 1.0 + 1e-9:
            raise ValueError("candidates.mix: quotas must be >= 0 and sum to at most 1")
        if self.knn_k < 1 or self.per_source < 1 or self.per_user < 1:
            raise ValueError("candidates: knn.k, per_source and per_user must be >= 1")

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any], dataset: str | None = None) -> CandidateParams:
        """The section with ``overrides.<dataset>`` (default: ``data.source``) applied."""
        cfg = Params.of(params).for_dataset(dataset)
        c, seed = cfg.candidates, cfg.base.seed
        return cls(
            similarity_threshold=c.similarity_threshold,
            alpha=c.alpha,
            knn_k=c.knn.k,
            knn_shrinkage=c.knn.shrinkage,
            knn_bias_reg=c.knn.bias_reg,
            knn_scoring=c.knn.scoring,
            trending_window_hours=c.trending.window_hours,
            recent_window_hours=c.recent.window_hours,
            trending_min_engagements=c.trending.min_engagements,
            fresh_max_age_hours=c.fresh.max_age_hours,
            per_source=c.per_source,
            per_user=c.per_user,
            ease_lambda=c.ease.lambda_,
            ease_max_items=c.ease.max_items,
            ease_window=c.ease.window,
            ease_window_weight=c.ease.window_weight,
            item_windows_hours=c.item_windows_hours,
            mix=dict(c.mix),
            index=IndexParams(seed=seed, **c.index.model_dump()),
            seed=seed,
        )


@dataclass(frozen=True)
class EvalParams:
    """``candidates.evaluation`` for one data set: the hold-out recall of the sources."""

    cut_quantile: float
    ks: tuple[int, ...]
    positive_types: tuple[str, ...]
    max_users: int  # 0: every test user

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any], dataset: str | None = None) -> EvalParams:
        return cls(**Params.of(params).for_dataset(dataset).candidates.evaluation.model_dump())
