"""Serving's view of the registry: the loaded production / canary / shadow models, reloaded
only when the registry's revision changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.deploy.records import Deployment
from components.deploy.transitions import CANARY, PRODUCTION, SHADOW, SLOT_STAGES, RegistryError

if TYPE_CHECKING:
    from components.deploy.registry import ModelRegistry
    from components.ranking.model import RankerModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _CacheState:
    deployment: Deployment
    models: dict[str, RankerModel]  # slot stage -> model


class ModelCache:
    """The loaded models of the deployment's production / canary / shadow versions, reloaded
    only when the registry's revision changes: serving calls :meth:`refresh` (one cheap
    ``SELECT``) per request or on a timer and so follows a promotion or rollback without a
    restart. A model whose version stays deployed is not reloaded."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        predict_threads: int = 1,
        prepare: Callable[[RankerModel], Any] | None = None,
    ) -> None:
        self._registry = registry
        self._predict_threads = predict_threads
        self._prepare = prepare  # run on each newly loaded model before it serves (e.g. compile)
        self._lock = threading.Lock()
        self._state: _CacheState | None = None

    def refresh(self) -> bool:
        """Reload if the registry changed since the last load; True when it did. On a load
        failure the previous models stay in service and the error is raised."""
        with self._lock:
            old = self._state
            if old is not None and self._registry.revision() == old.deployment.revision:
                return False
            dep = self._registry.deployment()
            loaded = {m.version: m for m in old.models.values()} if old is not None else {}
            models: dict[str, RankerModel] = {}
            for stage, rec in dep.slots().items():
                if rec is None:
                    continue
                model = loaded.get(rec.version)
                if model is None:
                    model = self._registry.load(rec.version, predict_threads=self._predict_threads)
                    if self._prepare is not None:
                        self._prepare(model)
                models[stage] = model
            self._state = _CacheState(dep, models)
        logger.info(
            "model cache at revision %d: %s",
            dep.revision,
            {s: (r.version if r else None) for s, r in dep.slots().items()},
        )
        return True

    def _current(self) -> _CacheState:
        state = self._state
        if state is None:
            self.refresh()
            state = self._state
        assert state is not None
        return state

    @property
    def deployment(self) -> Deployment:
        return self._current().deployment

    @property
    def revision(self) -> int:
        return self._current().deployment.revision

    def model(self, stage: str) -> RankerModel | None:
        if stage not in SLOT_STAGES:
            raise ValueError(f"stage must be one of {SLOT_STAGES}, got {stage!r}")
        return self._current().models.get(stage)

    def production(self) -> RankerModel:
        model = self.model(PRODUCTION)
        if model is None:
            raise RegistryError("no version is in production")
        return model

    def canary(self) -> RankerModel | None:
        return self.model(CANARY)

    def shadow(self) -> RankerModel | None:
        return self.model(SHADOW)
