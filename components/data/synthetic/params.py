"""The generator's parameters (``params.yaml``: ``base.seed`` + ``datagen``), checked on construction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.core.config import Params
from components.data.synthetic.constants import MS_PER_DAY, MS_PER_S


@dataclass(frozen=True)
class GenParams:
    """Size, period and noise of the synthetic drop (``params.yaml``: ``base.seed`` + ``datagen``)."""

    seed: int
    n_users: int
    n_items: int
    n_creators: int
    n_categories: int
    n_events: int
    start: str
    days: int
    bad_event_rate: float
    exploration_share: float
    chunk_events: int

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_creators", "n_categories", "n_events", "days", "chunk_events"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"datagen.{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"base.seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 <= self.bad_event_rate < 0.5:
            raise ValueError(
                f"datagen.bad_event_rate must be in [0, 0.5), got {self.bad_event_rate}"
            )
        if not 0.0 <= self.exploration_share <= 1.0:
            raise ValueError(
                f"datagen.exploration_share must be in [0, 1], got {self.exploration_share}"
            )
        try:
            dt.date.fromisoformat(self.start)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"datagen.start must be an ISO date, got {self.start!r}") from exc

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> GenParams:
        """Build from the validated params: ``base.seed`` and the ``datagen`` section."""
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.datagen.model_dump())

    @property
    def start_ms(self) -> int:
        """Period start (UTC midnight of ``start``) in epoch milliseconds."""
        day = dt.datetime.combine(dt.date.fromisoformat(self.start), dt.time(), tzinfo=dt.UTC)
        return int(day.timestamp()) * MS_PER_S

    @property
    def end_ms(self) -> int:
        """Period end (exclusive) in epoch milliseconds."""
        return self.start_ms + self.days * MS_PER_DAY
