"""The features stage's parameters: the ``features`` section of params.yaml (checked by
:class:`components.core.config.Features`) with ``base.seed``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.core.config import Features, Params, Seed
from components.features.columns import MS_PER_HOUR


class FeatureParams(Features):
    """The ``features`` section of params.yaml (plus ``base.seed``)."""

    seed: Seed

    @property
    def period_ms(self) -> int:
        """The snapshot period in milliseconds."""
        return round(self.snapshot_hours * MS_PER_HOUR)

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> FeatureParams:
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.features.model_dump())
