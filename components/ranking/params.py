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
from dataclasses import dataclass
from typing import Any, Literal

from components.core.config import TRAINING_SET_KEYS, Params

HEADS: tuple[str, ...] = ("engaged", "like", "share", "complete_view", "watch_ratio", "negative")
BACKENDS = ("lightgbm", "xgboost")
OBJECTIVES = ("lambdarank", "binary")
MAX_RELEVANCE = 30  # LightGBM's default label_gain covers grades 0..30

HeadKind = Literal["lambdarank", "binary", "regression"]
HeadOutput = Literal["natural", "margin", "standardised"]


@dataclass(frozen=True)
class RankerParams:
    """Tunables of the ranking model (``params.yaml``: ``ranking`` section, seed from ``base``)."""

    backend: str
    objective: str
    heads: dict[str, float]
    l2_lambda: float
    learning_rate: float
    lr_decay: float
    n_estimators: int
    early_stopping_rounds: int  # 0 disables early stopping (validation is still scored)
    num_leaves: int
    max_depth: int
    min_child_samples: int
    validation_fraction: float
    eval_at: int
    n_threads: int
    base_feature: str  # main head boosts from this feature ("auto": best z_* on training groups; "": off)
    base_weight: float
    seed: int

    def __post_init__(self) -> None:
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
        checks: list[tuple[bool, str]] = [
            (self.l2_lambda >= 0, "l2_lambda must be >= 0"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0 < self.lr_decay <= 1, "lr_decay must be in (0, 1]"),
            (self.n_estimators >= 1, "n_estimators must be >= 1"),
            (self.early_stopping_rounds >= 0, "early_stopping_rounds must be >= 0"),
            (self.num_leaves >= 2, "num_leaves must be >= 2"),
            (self.max_depth >= 1, "max_depth must be >= 1"),
            (self.min_child_samples >= 1, "min_child_samples must be >= 1"),
            (0 < self.validation_fraction < 1, "validation_fraction must be in (0, 1)"),
            (self.eval_at >= 1, "eval_at must be >= 1"),
            (self.n_threads >= 1, "n_threads must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"ranking.{message}")

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

