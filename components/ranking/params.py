"""The ranking model's tunables and head vocabulary: which heads exist, how each is trained,
which label column it learns from (``params.yaml``: the ``ranking`` section).

Parameter mapping
    ``l2_lambda`` → LightGBM ``lambda_l2`` / XGBoost ``reg_lambda``; ``num_leaves`` and
    ``max_depth`` → LightGBM ``num_leaves`` + ``max_depth`` (a depth cap on leaf-wise growth),
    XGBoost ``max_depth`` (depth-wise growth); ``min_child_samples`` → LightGBM
    ``min_data_in_leaf`` only: XGBoost has no row-count minimum (``min_child_weight`` is a
    Hessian sum) and keeps its default (:mod:`components.ranking.boosting`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import model_validator

from components.core.config import TRAINING_SET_KEYS, Params, RankingModel, Seed

HEADS: tuple[str, ...] = ("engaged", "like", "share", "complete_view", "watch_ratio", "negative")
BACKENDS = ("lightgbm", "xgboost")
OBJECTIVES = ("lambdarank", "binary")
MAX_RELEVANCE = 30  # LightGBM's default label_gain covers grades 0..30

HeadKind = Literal["lambdarank", "binary", "regression"]
HeadOutput = Literal["natural", "margin", "standardised"]


class RankerParams(RankingModel):
    """Tunables of the ranking model (``params.yaml``: ``ranking`` section, seed from ``base``);
    :class:`RankingModel` checks the ranges, this the backend, objective and head names."""

    seed: Seed

    @model_validator(mode="after")
    def _known_names(self) -> Self:
        if self.backend not in BACKENDS:
            raise ValueError(f"ranking.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"ranking.objective must be one of {OBJECTIVES}, got {self.objective!r}"
            )
        unknown = sorted(set(self.heads) - set(HEADS))
        if unknown:
            raise ValueError(f"ranking.heads: unknown heads {unknown}; known: {list(HEADS)}")
        if "engaged" not in self.heads or self.heads["engaged"] == 0:
            raise ValueError("ranking.heads must give the main head 'engaged' a non-zero weight")
        return self

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> RankerParams:
        """The model keys of ``ranking`` (the training-set keys are ``TrainingSetParams``')."""
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.ranking.model_dump(exclude=TRAINING_SET_KEYS))

    def learning_rate_at(self, round_: int) -> float:
        """The scheduled learning rate of boosting round ``round_`` (0-based)."""
        return float(self.learning_rate * self.lr_decay**round_)


def head_kind(head: str, objective: str) -> HeadKind:
    """How a head is trained."""
    if head == "engaged":
        return "lambdarank" if objective == "lambdarank" else "binary"
    return "regression" if head == "watch_ratio" else "binary"


def label_column(head: str, objective: str) -> str:
    """The frame column a head learns from."""
    return "relevance" if head_kind(head, objective) == "lambdarank" else f"label_{head}"

