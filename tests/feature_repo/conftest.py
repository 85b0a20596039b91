"""Fixtures for the Feast repository tests: feature roots in tmp folders, SQLite and Redis stores.

Redis tests (``-m redis``) use the server on 127.0.0.1:6379 (``RECO_REDIS_TEST_URL`` to change,
default database 15), a project name unique to the test (Feast suffixes every Redis key with the
project), and delete their keys afterwards. They fail, rather than skip, when Redis is down.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.core.catalog import DataPaths
from components.features.feast_repo import StoreSettings, open_store
from components.features.store import apply
from tests.feature_repo.helpers import build_root
from tests.fixtures.params import project_settings

REDIS_TEST_URL = os.environ.get("RECO_REDIS_TEST_URL", "127.0.0.1:6379,db=15")


def redis_client():  # type: ignore[no-untyped-def]
    import redis

    host_port, *opts = REDIS_TEST_URL.split(",")
    host, port = host_port.split(":")
    kwargs = dict(o.split("=", 1) for o in opts)
    return redis.Redis(host=host, port=int(port), db=int(kwargs.get("db", 0)), socket_timeout=5)


@pytest.fixture(scope="session")
def built_features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_root(tmp_path_factory.mktemp("features")).features


@pytest.fixture
def feature_root(tmp_path: Path, built_features: Path) -> DataPaths:
    """A fresh root holding a copy of the default tiny feature tables."""
    paths = DataPaths(tmp_path)
    shutil.copytree(built_features, paths.features)
    return paths


def _settings(online: str) -> StoreSettings:
    project = f"t{uuid.uuid4().hex[:12]}"
    if online == "redis":
        return project_settings(StoreSettings, project=project, online="redis", redis_url=REDIS_TEST_URL)
    return project_settings(StoreSettings, project=project, online="sqlite")


@pytest.fixture
def redis_cleanup() -> Iterator[list[str]]:
    """Projects registered here have their Redis keys deleted after the test."""
    client = redis_client()
    try:
        client.ping()
    except Exception as exc:  # pragma: no cover - environment
        pytest.fail(
            f"Redis at {REDIS_TEST_URL} is not reachable ({exc}); start it or deselect with -m 'not redis'"
        )
    projects: list[str] = []
    yield projects
    for project in projects:
        keys = list(client.scan_iter(match=b"*" + project.encode()))
        if keys:
            client.delete(*keys)
    client.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def online(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """``make(paths, online)`` -> an applied FeatureStore with a unique project."""

    def make(paths: DataPaths, online: str = "sqlite"):  # type: ignore[no-untyped-def]
        settings = _settings(online)
        if online == "redis":
            request.getfixturevalue("redis_cleanup").append(settings.project)
        store = open_store(paths, settings)
        apply(store)
        return store

    return make
