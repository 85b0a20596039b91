"""The online update's settings (``params.yaml``: ``online_update``) and what one attempt did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from components.core.config import OnlineUpdateOptions, Params


class OnlineUpdateSettings(OnlineUpdateOptions):
    """The ``online_update`` section of ``params.yaml`` (checked by :class:`OnlineUpdateOptions`)."""

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

