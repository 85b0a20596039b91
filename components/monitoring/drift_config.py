"""The drift gate's settings (the ``drift`` section of params.yaml) and shared names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from components.core.config import Params

FAMILIES = ("feature", "target", "prediction")
FEATURE_TS = "event_timestamp"
EVENT_TS = "timestamp"
SCORE_COLUMNS = ("timestamp", "model_version", "score")
MISSING = "<missing>"  # categorical value standing for a missing one


class EmptyWindowError(ValueError):
    """The current window holds no data at all: no verdict can be given."""


@dataclass(frozen=True)
class DriftConfig:
    """The ``drift`` section of params.yaml (plus ``base.seed``)."""

    current_days: float
    reference_days: float
    drift_share: float
    num_stattest: str | None
    cat_stattest: str | None
    stattest_threshold: float | None
    min_rows: int
    max_rows: int
    max_columns: int
    feature_tables: tuple[str, ...]
    exclude_columns: tuple[str, ...]
    engagement_types: tuple[str, ...]
    ignore_event_types: tuple[str, ...]
    score_log: str
    retrain_on: tuple[str, ...]
    seed: int

    def __post_init__(self) -> None:
        if self.current_days <= 0 or self.reference_days <= 0:
            raise ValueError("drift.current_days and drift.reference_days must be > 0")
        if not 0.0 < self.drift_share <= 1.0:
            raise ValueError(f"drift.drift_share must be in (0, 1], got {self.drift_share}")
        if self.min_rows < 1 or self.max_rows < self.min_rows:
            raise ValueError("drift: need 1 <= min_rows <= max_rows")
        if self.max_columns < 0:
            raise ValueError("drift.max_columns must be >= 0 (0 = every column)")
        unknown = set(self.retrain_on) - set(FAMILIES)
        if unknown:
            raise ValueError(
                f"drift.retrain_on: unknown families {sorted(unknown)}; expected {FAMILIES}"
            )

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> DriftConfig:
        """Build from the whole params (``drift`` section, ``base.seed``)."""
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.drift.model_dump())

    def settings(self) -> dict[str, Any]:
        """The configuration as a JSON-friendly mapping (recorded in the verdict)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
