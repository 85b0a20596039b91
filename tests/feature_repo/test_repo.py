"""The repository definitions, `feast apply`, and how the online store is chosen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.core.catalog import PROJECT_ROOT, DataPaths
from components.features.columns import (
    CONTENT_PROFILE_COLUMNS,
    CONTENT_STATS_COLUMNS,
    CREATOR_COLUMNS,
    USER_ACTIVITY_COLUMNS,
    USER_REALTIME_COLUMNS,
)
from components.features.feast_repo import (
    ONLINE_ENV,
    PUSH_SOURCE,
    REDIS_URL_ENV,
    StoreSettings,
    config_dict,
    load_definitions,
    repo_config,
    write_feature_store_yaml,
)
from components.features.store import apply
from tests.fixtures.params import project_params


def test_definitions_follow_the_feature_tables() -> None:
    from feast import FeatureService, FeatureView
    from feast.on_demand_feature_view import OnDemandFeatureView

    objs = load_definitions()
    views = {o.name: o for o in objs if type(o) is FeatureView}
    expected = {
        "user_activity": USER_ACTIVITY_COLUMNS,
        "user_realtime": USER_REALTIME_COLUMNS,
        "content_stats": CONTENT_STATS_COLUMNS,
        "content_profile": CONTENT_PROFILE_COLUMNS,
        "creator_stats": CREATOR_COLUMNS,
    }
    assert set(views) == set(expected)
    for name, cols in expected.items():
        assert [f.name for f in views[name].features] == [c for c, _ in cols]
        assert views[name].ttl is not None
    assert (
        views["user_realtime"].stream_source is not None
        and views["user_realtime"].stream_source.name == PUSH_SOURCE
    )
    assert {o.name for o in objs if isinstance(o, OnDemandFeatureView)} == {
        "context",
        "user_recency",
    }
    services = {o.name: o for o in objs if isinstance(o, FeatureService)}
    assert set(services) == {"ranker_v1", "ranker_v2"}
    item_features = [
        f.name
        for p in services["ranker_v2"].feature_view_projections
        if p.name in ("content_stats", "content_profile", "creator_stats")
        for f in p.features
    ]
    assert 35 <= len(item_features) <= 50  # about 40 per candidate item


def test_apply_is_idempotent_and_removes_what_is_no_longer_defined(
    feature_root, store_factory
) -> None:
    store = store_factory(feature_root)
    again = apply(store)
    assert again.removed == [] and set(again.feature_views) >= {"user_activity", "content_profile"}
    assert again.feature_views["content_profile"]["ttl_s"] == 0
    objs = [o for o in load_definitions() if o.name != "ranker_v1"]
    assert apply(store, objs).removed == ["FeatureService:ranker_v1"]
    assert {s.name for s in store.list_feature_services()} == {"ranker_v2"}


def test_online_store_is_chosen_by_configuration(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    default = StoreSettings.from_params(project_params(feast={"project": "p", "online_store": "sqlite"}), env={})
    assert default.online == "sqlite"
    cfg = config_dict(paths, default)
    assert cfg["online_store"] == {
        "type": "sqlite",
        "path": str(tmp_path / "feature_repo/data/online_store.db"),
    }
    env = {ONLINE_ENV: "redis", REDIS_URL_ENV: "redis.internal:6380,db=3"}
    redis = StoreSettings.from_params(project_params(feast={"project": "p"}), env=env)
    rcfg = config_dict(paths, redis)
    assert rcfg["online_store"] == {
        "type": "redis",
        "connection_string": "redis.internal:6380,db=3",
    }
    assert (
        rcfg["registry"]["path"].endswith("registry_redis.db")
        and Path(rcfg["registry"]["path"]).is_absolute()
    )
    with pytest.raises(ValueError, match="sqlite"):
        StoreSettings.from_params(project_params(), env={ONLINE_ENV: "memcached"})

    # the alternate YAML, its relative paths taken from the root's repository folder
    config = repo_config(
        paths, default, PROJECT_ROOT / "feature_repo" / "feature_store.redis.yaml"
    )
    assert config.online_store.type == "redis" and config.repo_path == tmp_path / "feature_repo"
    written = write_feature_store_yaml(paths, redis)
    assert yaml.safe_load(written.read_text())["online_store"]["type"] == "redis"
    committed = yaml.safe_load((PROJECT_ROOT / "feature_repo" / "feature_store.yaml").read_text())
    assert committed["online_store"] == {"type": "sqlite", "path": "data/online_store.db"}
    assert committed["registry"]["path"] == "data/registry.db"


@pytest.mark.slow
def test_the_feast_cli_applies_the_repository_copy(feature_root) -> None:
    """`feast apply` (the CLI) works on the repository files as committed."""
    repo = feature_root.root / "feature_repo"
    repo.mkdir(parents=True, exist_ok=True)
    for f in (PROJECT_ROOT / "feature_repo").glob("*.py"):
        shutil.copy(f, repo / f.name)
    shutil.copy(PROJECT_ROOT / "feature_repo" / "feature_store.yaml", repo / "feature_store.yaml")
    feast = Path(sys.executable).with_name("feast")
    env = {**os.environ, "FEAST_USAGE": "False"}
    done = subprocess.run(
        [str(feast), "-c", str(repo), "apply"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    assert {s.name for s in store.list_feature_services()} == {"ranker_v1", "ranker_v2"}
    assert (repo / "data" / "registry.db").exists()
