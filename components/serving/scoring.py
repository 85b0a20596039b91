"""Which models score a request: the slots in service when it starts (:class:`ModelSlots`), the
arm (the canary model for the users :func:`~components.deploy.gates.canary.in_canary` puts in
``promote.canary.share``, else production) and the shadow model's scores (logged only; a broken
shadow never affects the feed); :class:`Scored` is what the scoring step hands on."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from components.deploy.gates.canary import in_canary
from components.serving.feed import CANARY, PRODUCTION

if TYPE_CHECKING:
    from components.deploy.model_cache import ModelCache
    from components.ranking.model import RankerModel

log = logging.getLogger(__name__)

Matrix = Callable[["RankerModel", Mapping[str, Any], int], np.ndarray]


@dataclass(frozen=True)
class ModelSlots:
    """The models in service at a request's start (raises without a production model)."""

    production: RankerModel
    canary: RankerModel | None
    shadow: RankerModel | None

    @classmethod
    def of(cls, models: ModelCache) -> ModelSlots:
        return cls(models.production(), models.canary(), models.shadow())


@dataclass(frozen=True)
class Scored:
    """The serving arm and model, its input matrix and scores (with the real-time interest's
    pull), and the shadow model's scores (None without a shadow or when it failed)."""

    arm: str
    model: RankerModel
    x: np.ndarray
    scores: np.ndarray
    shadow: RankerModel | None
    shadow_scores: np.ndarray | None


def choose_arm(slots: ModelSlots, user_id: str, share: float, salt: str) -> tuple[str, RankerModel]:
    """(arm, model): the canary for the users in its hashed share, else production."""
    if slots.canary is not None and bool(in_canary([user_id], share, salt)[0]):
        return CANARY, slots.canary
    return PRODUCTION, slots.production


def shadow_scores(
    shadow: RankerModel | None, cols: Mapping[str, Any], n: int, matrix: Matrix
) -> np.ndarray | None:
    """The shadow model's scores of the same rows; None without a shadow or when it fails."""
    if shadow is None:
        return None
    try:
        return np.asarray(shadow.predict(matrix(shadow, cols, n)), dtype=np.float64)
    except Exception:  # a broken shadow never affects the feed
        log.exception("shadow model %s failed", shadow.version)
        return None
