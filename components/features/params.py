"""The features stage's parameters: the ``features`` section of params.yaml, checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.core.config import Params
from components.core.schema import USER_EVENT_TYPES
from components.features.columns import MS_PER_HOUR


@dataclass(frozen=True)
class FeatureParams:
    """The ``features`` section of params.yaml (plus ``base.seed``)."""

    snapshot_hours: float
    lambda_decay: float  # per day: weight = exp(-lambda_decay * age_days)
    decay_unit: str
    growth_window_hours: float
    creator_rate_window_days: float
    last_n_viewed: int
    max_categories: int
    text_dim: int
    tfidf_max_features: int
    engagement_weights: Mapping[str, float]
    seed: int

    def __post_init__(self) -> None:
        if self.decay_unit != "days":
            raise ValueError(f"features.decay_unit must be 'days', got {self.decay_unit!r}")
        if self.lambda_decay < 0 or self.snapshot_hours <= 0 or self.growth_window_hours <= 0:
            raise ValueError("features: lambda_decay must be >= 0, snapshot/growth windows > 0")
        if self.last_n_viewed < 0 or self.text_dim < 1 or self.max_categories < 1:
            raise ValueError("features: last_n_viewed >= 0, text_dim >= 1, max_categories >= 1")
        unknown = set(self.engagement_weights) - set(USER_EVENT_TYPES)
        if unknown:
            raise ValueError(f"features.engagement_weights: unknown event types {sorted(unknown)}")

    @property
    def period_ms(self) -> int:
        """The snapshot period in milliseconds."""
        return round(self.snapshot_hours * MS_PER_HOUR)

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> FeatureParams:
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.features.model_dump())
