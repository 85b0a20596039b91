"""The generator's parameters (``params.yaml``: ``base.seed`` + ``datagen``), checked on
construction by :class:`components.core.config.Datagen`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from components.core.config import Datagen, Params, Seed
from components.data.synthetic.constants import MS_PER_DAY, MS_PER_S


class GenParams(Datagen):
    """Size, period and noise of the synthetic drop (``params.yaml``: ``base.seed`` + ``datagen``)."""

    seed: Seed

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
