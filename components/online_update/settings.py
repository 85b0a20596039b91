"""The online update's settings (``params.yaml``: ``online_update``) and what one attempt did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from components.core.config import Params


@dataclass(frozen=True)
class OnlineUpdateSettings:
    """The ``online_update`` section of ``params.yaml``."""

    buffer_size: int
    update_interval_s: float
    rounds: int
    learning_rate: float | None  # None: continue the parent's learning-rate schedule
    label_window_s: float
    min_labelled_rows: int
    max_impression_age_s: float
    n_threads: int
    archive_superseded: bool
    run_offline_gate: bool

    def __post_init__(self) -> None:
        for ok, message in (
            (self.buffer_size >= 1, "buffer_size must be >= 1"),
            (self.update_interval_s > 0, "update_interval_s must be > 0"),
            (self.rounds >= 1, "rounds must be >= 1"),
            (
                self.learning_rate is None or self.learning_rate > 0,
                "learning_rate must be > 0 (or null)",
            ),
            (self.label_window_s > 0, "label_window_s must be > 0"),
            (self.min_labelled_rows >= 1, "min_labelled_rows must be >= 1"),
            (
                self.max_impression_age_s > self.label_window_s,
                "max_impression_age_s must be > label_window_s",
            ),
            (self.n_threads >= 1, "n_threads must be >= 1"),
        ):
            if not ok:
                raise ValueError(f"online_update.{message}")

    @property
    def label_window(self) -> pd.Timedelta:
        return pd.Timedelta(seconds=self.label_window_s)

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> OnlineUpdateSettings:
        """``online_update`` (``enabled`` is the serving process's choice, not the updater's)."""
        return cls(**Params.of(params).online_update.model_dump(exclude={"enabled"}))


# --------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class UpdateResult:
    """What one update attempt did: ``updated`` (a candidate registered), ``skipped`` (with the
    reason; nothing registered) or ``failed`` (the error; nothing registered)."""

    status: str
    reason: str
    trigger: str
    at: str  # ISO time of the attempt
    events: int = 0  # events buffered since the previous attempt
    version: str | None = None
    parent_version: str | None = None
    stage: str | None = None  # the new version's registry stage after the attempt
    rows: int = 0  # labelled impressions trained on
    groups: int = 0
    positives: int = 0  # rows with label_engaged = 1
    dropped: dict[str, int] = field(default_factory=dict)
    rounds_added: dict[str, int] = field(default_factory=dict)
    impressions_window: tuple[str | None, str | None] = (None, None)
    gate: str | None = None  # the offline gate's decision and reason, when it ran
    archived: str | None = None  # this updater's previous candidate, superseded
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

