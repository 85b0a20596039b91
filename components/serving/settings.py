"""The engine's settings (:class:`ServingSettings`): the ``serving`` keys of params.yaml, the
canary split, the seed and the exploration parameters, checked once at load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from components.core.config import Experiments, Params
from components.retrieval.exploration import ExplorationParams


@dataclass(frozen=True)
class ServingSettings:
    """What the engine reads from params.yaml: ``serving`` keys, the canary split, the seed."""

    moderation_report_threshold: int  # serving.moderation_report_threshold
    moderation_min_user_events: int  # serving.moderation_min_user_events
    moderation_min_user_age_s: float  # serving.moderation_min_user_age_s
    moderation_track_users: int  # serving.moderation_track_users
    trend_beta: float  # serving.trend_beta
    rerank_pool: int  # serving.rerank_pool: boosted candidates the DPP picks the slate from
    budget_ms: float  # serving.budget_ms: no stage starts after
    log_flush_records: int  # serving.log_flush_records
    faiss_threads: int  # serving.faiss_threads: OpenMP threads of FAISS searches (process-wide)
    gc_freeze: bool  # serving.gc_freeze: move what load built out of the cyclic GC's way
    realtime_weight: float  # serving.realtime_weight: pull of fresh engagements (0 = off)
    realtime_candidates: int  # serving.realtime_candidates: ANN neighbours of the fresh interest
    fresh_candidates: int  # serving.fresh_candidates: uploads since the export added to the candidates
    fresh_uploads_kept: int  # serving.fresh_uploads_kept: the recent uploads those are chosen from
    explore_uploads: float  # serving.explore_uploads: share of exploration slots for uploads since the export
    store_retry_s: float  # serving.store_retry_s: after an online-store failure, fall back this long
    compile_ranker: bool  # serving.compile_ranker: LightGBM heads as native code (lleaves)
    stream_users: int  # serving.stream_users: users whose streamed state is kept
    stream_seen_per_user: int  # serving.stream_seen_per_user: contents noted as seen per user
    log_buffer_max: int  # serving.log_buffer_max: impression rows held while writes fail
    canary_share: float  # promote.canary.share
    canary_salt: str  # promote.canary.salt
    seed: int  # base.seed
    exploration: ExplorationParams
    experiments: Experiments | None = None  # experiments.running: per-user configuration arms

    def __post_init__(self) -> None:
        if self.moderation_report_threshold < 0:
            raise ValueError("serving.moderation_report_threshold must be >= 0")
        if self.trend_beta < 0:
            raise ValueError("serving.trend_beta must be >= 0")
        if self.rerank_pool < 1 or self.log_flush_records < 1:
            raise ValueError("serving.rerank_pool and serving.log_flush_records must be >= 1")
        if self.budget_ms <= 0:
            raise ValueError("serving.budget_ms must be > 0")
        if not 0.0 <= self.canary_share <= 1.0:
            raise ValueError("promote.canary.share must be in [0, 1]")

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> ServingSettings:
        cfg = Params.of(params)
        s = cfg.serving
        return cls(
            moderation_report_threshold=s.moderation_report_threshold,
            moderation_min_user_events=s.moderation_min_user_events,
            moderation_min_user_age_s=s.moderation_min_user_age_s,
            moderation_track_users=s.moderation_track_users,
            trend_beta=s.trend_beta,
            rerank_pool=s.rerank_pool,
            budget_ms=s.budget_ms,
            log_flush_records=s.log_flush_records,
            faiss_threads=s.faiss_threads,
            gc_freeze=s.gc_freeze,
            realtime_weight=s.realtime_weight,
            realtime_candidates=s.realtime_candidates,
            fresh_candidates=s.fresh_candidates,
            fresh_uploads_kept=s.fresh_uploads_kept,
            explore_uploads=s.explore_uploads,
            store_retry_s=s.store_retry_s,
            compile_ranker=s.compile_ranker,
            stream_users=s.stream_users,
            stream_seen_per_user=s.stream_seen_per_user,
            log_buffer_max=s.log_buffer_max,
            canary_share=cfg.promote.canary.share,
            canary_salt=cfg.promote.canary.salt,
            seed=cfg.base.seed,
            exploration=ExplorationParams.from_params(cfg),
            experiments=cfg.experiments,
        )

    def for_user(self, user_id: str) -> tuple[float, ExplorationParams]:
        """(trend_beta, exploration) for ``user_id``: params.yaml's, with the keys of the user's
        arms in the running experiments (``experiments.running``) laid over them."""
        if self.experiments is None or not self.experiments.running:
            return self.trend_beta, self.exploration
        from components.experiments.assign import serving_overrides

        over = serving_overrides(self.experiments, user_id)
        beta = float(over.pop("trend_beta", self.trend_beta))
        return beta, replace(self.exploration, **over) if over else self.exploration
