"""What :meth:`~components.serving.engine.Recommender.load` opens besides the artefact set: the
online store's feature fetcher (a factory, so that a refresh can open a store that was down at
load) and the registry's models, and the check that the production model can be served from the
set. A store or registry that is unavailable is logged, not raised: requests then fall back
until a refresh finds them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from components.core.catalog import DataPaths
from components.deploy.model_cache import ModelCache
from components.deploy.registry import ModelRegistry
from components.features.feast_repo import StoreSettings, open_store
from components.features.item_cache import ItemFeatureCache
from components.features.online import ServingFeatureFetcher
from components.ranking.model import RankerModel
from components.serving.artifacts import ArtifactSet, check_model
from components.serving.settings import ServingSettings

log = logging.getLogger(__name__)


def fetcher_factory(
    paths: DataPaths, store_settings: StoreSettings, art: ArtifactSet
) -> Callable[[], ServingFeatureFetcher]:
    """Opens the online store with the set's item feature rows (the offline store's when the set
    has none), warmed up by a first read."""

    def make_fetcher() -> ServingFeatureFetcher:
        store = open_store(paths, store_settings)
        items = art.items if art.items is not None else ItemFeatureCache.from_offline(store, store_settings.feature_service)
        fetcher = ServingFeatureFetcher(store, store_settings.feature_service, items)
        fetcher.user_features("__warmup__")  # first online read pays Feast's set-up
        return fetcher

    return make_fetcher


def open_fetcher(make_fetcher: Callable[[], ServingFeatureFetcher]) -> ServingFeatureFetcher | None:
    """The fetcher, or None (logged) when the store is unavailable."""
    try:
        return make_fetcher()
    except Exception:
        log.exception("feature store unavailable at load: requests fall back until refresh()")
        return None


def open_models(registry: ModelRegistry, settings: ServingSettings, compile_dir: Path) -> ModelCache:
    """The registry's models, each compiled under ``compile_dir`` with ``serving.compile_ranker``."""

    def prepare(model: RankerModel) -> None:
        if settings.compile_ranker:
            model.compile(compile_dir)

    models = ModelCache(registry, predict_threads=1, prepare=prepare)
    try:
        models.refresh()
    except Exception:
        log.exception("model registry unavailable at load: requests fall back until refresh()")
    return models


def check_production(art: ArtifactSet, models: ModelCache) -> None:
    """Refuse (:class:`~components.serving.artifacts.ArtifactError`) a set the production model,
    if there is one, cannot be served from."""
    try:
        production = models.production()
    except Exception:
        production = None
    if production is not None:
        check_model(art, production.feature_cols, production.version)
