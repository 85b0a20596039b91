"""The Feast repository: where definitions and state live, the store configuration, opening a
store, loading the definitions, and the small lookups the other Feast glue modules share.

The feature definitions live in ``feature_repo/*.py`` (code); the store's state (registry,
SQLite online store) lives in ``<root>/feature_repo/data/`` for a :class:`DataPaths` root, and
the file sources are relative to ``<root>/feature_repo``, so a test root laid out like the
project works unchanged. :func:`repo_config` builds the configuration with absolute state
paths; the online store is SQLite unless ``RECO_ONLINE_STORE=redis`` (``RECO_REDIS_URL``,
default ``127.0.0.1:6379``, may carry ``,db=N``) or a ``--config`` YAML (e.g.
``feature_repo/feature_store.redis.yaml``) says otherwise. Each online store type gets its own
registry file, so each keeps its own materialisation history.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, RepoConfig
from feast.data_source import DataSource
from feast.infra.offline_stores.file_source import FileSource
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import load_repo_config
from feast.types import Array, Float32, Float64, Int64, String

from components.core.catalog import DataPaths
from components.core.config import Params
from components.core.settings import Settings

#: The feature definitions (code). State goes to each root's ``feature_repo_state`` (the catalogue).
REPO_CODE_DIR = DataPaths().of("feature_repo")
REPO_MODULES = (
    "entities",
    "data_sources",
    "feature_views",
    "on_demand_feature_views",
    "feature_services",
)
#: The kinds of Feast object a repository module defines.
DEFINITION_KINDS = (Entity, DataSource, FeatureView, OnDemandFeatureView, FeatureService)
ONLINE_ENV = "RECO_ONLINE_STORE"
REDIS_URL_ENV = "RECO_REDIS_URL"
DEFAULT_REDIS_URL = "127.0.0.1:6379"
PUSH_SOURCE = "user_realtime_push"

_FEAST_KINDS: dict[str, Any] = {
    "int": Int64,
    "float": Float64,
    "str": String,
    "float_list": Array(Float32),
    "str_list": Array(String),
}


def feast_fields(columns: Sequence[tuple[str, str]]) -> list[Field]:
    """Feast fields for a column spec of :mod:`components.features.columns`."""
    return [Field(name=n, dtype=_FEAST_KINDS[k]) for n, k in columns]


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class StoreSettings:
    """Which project and online store: ``feast`` in params.yaml, the environment over it
    (``RECO_ONLINE_STORE``, ``RECO_REDIS_URL``)."""

    project: str
    online: str  # sqlite | redis
    redis_url: str
    registry_cache_ttl_s: int
    materialize_overlap_hours: float
    feature_service: str

    def __post_init__(self) -> None:
        if self.online not in ("sqlite", "redis"):
            raise ValueError(f"online store must be 'sqlite' or 'redis', got {self.online!r}")

    @classmethod
    def from_params(
        cls, params: Params | Mapping[str, Any], env: Settings | Mapping[str, str] | None = None
    ) -> StoreSettings:
        feast = Params.of(params).feast
        settings = env if isinstance(env, Settings) else Settings.from_env(env)
        return cls(
            project=feast.project,
            online=settings.online_store or feast.online_store,
            redis_url=settings.redis_url or DEFAULT_REDIS_URL,
            registry_cache_ttl_s=feast.registry_cache_ttl_s,
            materialize_overlap_hours=feast.materialize_overlap_hours,
            feature_service=feast.feature_service,
        )


def config_dict(paths: DataPaths, settings: StoreSettings) -> dict[str, Any]:
    """feature_store.yaml contents with absolute state paths for this root and online store."""
    state = paths.of("feature_repo_state")
    online: dict[str, Any]
    if settings.online == "redis":
        online = {"type": "redis", "connection_string": settings.redis_url}
    else:
        online = {"type": "sqlite", "path": str(state / "online_store.db")}
    return {
        "project": settings.project,
        "provider": "local",
        "registry": {
            "path": str(
                state / f"registry{'' if settings.online == 'sqlite' else '_' + settings.online}.db"
            ),
            "cache_ttl_seconds": settings.registry_cache_ttl_s,
        },
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }


def write_feature_store_yaml(
    paths: DataPaths, settings: StoreSettings, path: Path | None = None
) -> Path:
    """Write :func:`config_dict` as YAML, by default into the (gitignored) state folder,
    ``<root>/feature_repo/data/feature_store.<online>.yaml``, for the Feast CLI:
    ``feast -c feature_repo -f feature_repo/data/feature_store.redis.yaml ...``."""
    target = path or paths.of("feature_repo_state") / f"feature_store.{settings.online}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config_dict(paths, settings), sort_keys=False))
    return target


def repo_config(
    paths: DataPaths, settings: StoreSettings, config_file: Path | None = None
) -> RepoConfig:
    """The store configuration for a root; ``config_file`` (YAML) replaces the settings' store
    choice, its relative paths taken from the root's repository folder."""
    rdir = paths.of("feature_repo")
    if config_file is not None:
        cfg = load_repo_config(rdir, Path(config_file))
        cfg.repo_path = rdir
        return cfg
    return RepoConfig(repo_path=rdir, **config_dict(paths, settings))


def open_store(
    paths: DataPaths, settings: StoreSettings, config_file: Path | None = None
) -> FeatureStore:
    """A FeatureStore for a root (creates the state folder)."""
    paths.of("feature_repo_state").mkdir(parents=True, exist_ok=True)
    return FeatureStore(
        repo_path=str(paths.of("feature_repo")), config=repo_config(paths, settings, config_file)
    )


def load_definitions(code_dir: Path = REPO_CODE_DIR) -> list[Any]:
    """The Feast objects defined in the repository's modules, imported the way ``feast apply``
    imports them (top-level modules with the repository folder on ``sys.path``)."""
    folder = str(code_dir.resolve())
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        objects: list[Any] = []
        for name in REPO_MODULES:
            module = importlib.import_module(name)
            if not str(getattr(module, "__file__", "")).startswith(folder):
                raise ImportError(f"module {name!r} resolved outside {folder}: {module.__file__}")
            for value in vars(module).values():
                if isinstance(value, DEFINITION_KINDS) and not any(value is o for o in objects):
                    objects.append(value)
        return objects
    finally:
        if added:
            sys.path.remove(folder)


# ---------------------------------------------------------------------------------------------
# Lookups shared by the apply / materialise, point-in-time and serving modules


def utc(ts: datetime | pd.Timestamp) -> datetime:
    """A timestamp as a timezone-aware UTC datetime (naive ones are taken as UTC)."""
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.to_pydatetime()


def source_path(store: FeatureStore, fv: FeatureView) -> Path:
    """The Parquet file behind a batch feature view."""
    src = fv.batch_source
    assert isinstance(src, FileSource), f"{fv.name}: expected a FileSource"
    return Path(FileSource.get_uri_for_file_path(store.config.repo_path, src.path))


def service_of(store: FeatureStore, service: str | FeatureService) -> FeatureService:
    """A FeatureService given by name or as the object."""
    return store.get_feature_service(service) if isinstance(service, str) else service


def odfv_names(store: FeatureStore) -> set[str]:
    """Names of the registered on-demand feature views."""
    return {o.name for o in store.list_on_demand_feature_views()}


def ttl_s(fv: FeatureView) -> int:
    """A view's time-to-live in seconds (0: none)."""
    return int(fv.ttl.total_seconds()) if fv.ttl else 0


def latest_end(store: FeatureStore, fvs: Sequence[FeatureView]) -> datetime | None:
    """The newest materialised end over the views (None if none was materialised)."""
    ends = [store.get_feature_view(fv.name).most_recent_end_time for fv in fvs]
    known = [utc(e) for e in ends if e is not None]
    return max(known) if known else None
