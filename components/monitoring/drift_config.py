"""The drift gate's settings (the ``drift`` section of params.yaml) and shared names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from components.core.schema import POSITIVE_TYPES, SUPPLY_TYPES

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

    current_days: float = 1.0
    reference_days: float = 7.0
    drift_share: float = 0.3
    num_stattest: str | None = None
    cat_stattest: str | None = None
    stattest_threshold: float | None = None
    min_rows: int = 200
    max_rows: int = 20000
    max_columns: int = 100
    feature_tables: tuple[str, ...] = ("user_features", "content_features")
    exclude_columns: tuple[str, ...] = ("*_id", "*_idx", "*_ts_s", "*timestamp*")
    engagement_types: tuple[str, ...] = POSITIVE_TYPES
    ignore_event_types: tuple[str, ...] = SUPPLY_TYPES
    score_log: str = "data/logs/scores"
    retrain_on: tuple[str, ...] = ("feature", "target")
    seed: int = 42

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
    def from_params(cls, params: Mapping[str, Any]) -> DriftConfig:
        """Build from the whole params mapping (``drift`` section, ``base.seed``)."""
        section = dict(params.get("drift") or {})
        known = {f for f in cls.__dataclass_fields__ if f != "seed"}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"drift: unknown keys {sorted(unknown)}")
        for key in (
            "feature_tables",
            "exclude_columns",
            "engagement_types",
            "ignore_event_types",
            "retrain_on",
        ):
            if key in section:
                section[key] = tuple(section[key] or ())
        return cls(seed=int(params["base"]["seed"]), **section)

    def settings(self) -> dict[str, Any]:
        """The configuration as a JSON-friendly mapping (recorded in the verdict)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
