"""The drift gate's settings (the ``drift`` section of params.yaml) and shared names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import model_validator

from components.core.config import Drift, Params, Seed

FAMILIES = ("feature", "target", "prediction")
FEATURE_TS = "event_timestamp"
EVENT_TS = "timestamp"
SCORE_COLUMNS = ("timestamp", "model_version", "score")
MISSING = "<missing>"  # categorical value standing for a missing one


class EmptyWindowError(ValueError):
    """The current window holds no data at all: no verdict can be given."""


class DriftConfig(Drift):
    """The ``drift`` section of params.yaml (its ranges checked by :class:`Drift`) plus
    ``base.seed``; ``retrain_on`` names only :data:`FAMILIES`."""

    seed: Seed

    @model_validator(mode="after")
    def _known_families(self) -> Self:
        unknown = set(self.retrain_on) - set(FAMILIES)
        if unknown:
            raise ValueError(
                f"drift.retrain_on: unknown families {sorted(unknown)}; expected {FAMILIES}"
            )
        return self

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> DriftConfig:
        """Build from the whole params (``drift`` section, ``base.seed``)."""
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.drift.model_dump())

    def settings(self) -> dict[str, Any]:
        """The configuration as a JSON-friendly mapping (recorded in the verdict)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_dump().items()}
