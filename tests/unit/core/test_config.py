"""Typed params.yaml: unknown and missing keys fail naming their path, per-data-set overrides
apply in one place, the environment goes through one settings object."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from components.core.config import (
    ConfigError,
    Params,
    deep_merge,
    load_config,
    load_params,
    stage_context,
)
from components.core.settings import Settings
from tests.fixtures.params import project_params


def _write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def test_the_project_params_file_validates() -> None:
    cfg = load_config()
    assert cfg.ranking.num_leaves == load_params()["ranking"]["num_leaves"]
    assert cfg.candidates.ease.lambda_ == load_params()["candidates"]["ease"]["lambda"]


def test_a_typo_at_a_nested_key_fails_naming_the_path_and_the_file(tmp_path: Path) -> None:
    raw = project_params()
    raw["candidates"]["knn"]["shrinkag"] = raw["candidates"]["knn"].pop("shrinkage")
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert f"{path}: candidates.knn.shrinkag: unknown key" in lines
    assert f"{path}: candidates.knn.shrinkage: missing key" in lines
    assert len(lines) == 2


def test_a_typo_at_a_top_level_section_key(tmp_path: Path) -> None:
    raw = deep_merge(project_params(), {"ranking": {"num_leavs": 31}})
    with pytest.raises(ConfigError, match=r"^params\.yaml: ranking\.num_leavs: unknown key$"):
        Params.of(raw, "params.yaml")


def test_a_missing_key_fails() -> None:
    raw = project_params()
    del raw["serving"]["budget_ms"]
    with pytest.raises(ConfigError, match=r"params: serving\.budget_ms: missing key"):
        Params.of(raw)
    del raw["drift"]
    with pytest.raises(ConfigError, match=r"params: drift: missing key"):
        Params.of(raw)


def test_a_wrong_type_names_the_key() -> None:
    raw = deep_merge(project_params(), {"embeddings": {"factors": "many"}})
    with pytest.raises(ConfigError, match=r"params: embeddings\.factors: Input should be a valid integer"):
        Params.of(raw)


def test_a_typo_inside_an_override_names_the_override_path() -> None:
    raw = deep_merge(project_params(), {"candidates": {"overrides": {"movielens": {"fresh": {"max_age_hourz": 1}}}}})
    with pytest.raises(ConfigError, match=r"candidates\.overrides\.movielens\.fresh\.max_age_hourz: unknown key"):
        Params.of(raw)
    heads = {"evaluate": {"overrides": {"kuairand": {"ranking": {"headz": {}}}}}}
    with pytest.raises(ConfigError, match=r"evaluate\.overrides\.kuairand\.ranking\.headz: unknown key"):
        Params.of(deep_merge(project_params(), heads))
    unknown_set = {"ingest": {"overrides": {"movielense": {"min_rating": 1.0}}}}
    with pytest.raises(ConfigError, match=r"ingest\.overrides\.movielense: unknown data set"):
        Params.of(deep_merge(project_params(), unknown_set))


def test_overrides_apply_for_their_data_set_only() -> None:
    cfg = load_config()
    raw = load_params()
    movielens = cfg.for_dataset("movielens")
    assert movielens.ingest.min_timestamp == raw["ingest"]["overrides"]["movielens"]["min_timestamp"]
    assert movielens.candidates.fresh.max_age_hours == raw["candidates"]["overrides"]["movielens"]["fresh"]["max_age_hours"]
    assert movielens.candidates.knn == cfg.candidates.knn  # what the override leaves out is kept
    assert movielens.evaluate.protocol == "random_per_user"
    synthetic = cfg.for_dataset("synthetic")
    assert synthetic.ingest == cfg.ingest and synthetic.candidates == cfg.candidates
    assert cfg.for_dataset().candidates == cfg.for_dataset(cfg.data.source).candidates  # default: data.source
    # the evaluation's ranking override only when evaluating
    kuairand = cfg.for_dataset("kuairand")
    assert kuairand.ranking == cfg.ranking
    evaluated = cfg.for_dataset("kuairand", evaluation=True)
    assert evaluated.ranking.heads["like"] == 0.0 and evaluated.ranking.heads["engaged"] == 1.0
    assert evaluated.ranking.num_leaves == cfg.ranking.num_leaves


def test_params_are_frozen() -> None:
    cfg = load_config()
    with pytest.raises(ValueError, match="frozen"):
        cfg.ranking.num_leaves = 3  # type: ignore[misc]


def test_stage_context_stops_the_stage_naming_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, deep_merge(project_params(), {"preprocess": {"session_gap_minute": 30}}))
    with pytest.raises(SystemExit, match=r"preprocess\.session_gap_minute: unknown key"):
        stage_context(argparse.Namespace(params=str(path), root=str(tmp_path)))
    params, paths = stage_context(argparse.Namespace(params=str(_write(tmp_path, project_params())), root=str(tmp_path)))
    assert paths.root == tmp_path and params["base"]["seed"] == project_params()["base"]["seed"]


def test_settings_from_the_environment() -> None:
    empty = Settings.from_env({})
    assert (empty.demo, empty.hmac_key, empty.online_store, empty.project_root, empty.workers) == (False, None, None, None, 1)
    assert empty.online_update and (empty.host, empty.port) == ("127.0.0.1", 8000)
    s = Settings.from_env(
        {
            "RECO_DEMO": "yes",
            "RECO_HMAC_KEY": "k3y",
            "RECO_ONLINE_STORE": " Redis ",
            "RECO_PROJECT_ROOT": "/srv/reco",
            "RECO_WORKERS": "4",
            "RECO_ONLINE_UPDATE": "0",
            "RECO_RATE_LIMIT_PER_S": "2.5",
            "PORT": "9000",
        }
    )
    assert s.demo and s.hmac_key is not None and s.hmac_key.get_secret_value() == "k3y"
    assert "k3y" not in repr(s)  # secrets stay out of logs
    assert (s.online_store, s.project_root, s.workers, s.online_update) == ("redis", Path("/srv/reco"), 4, False)
    assert (s.rate_limit_per_s, s.rate_limit_burst, s.port) == (2.5, None, 9000)
    with pytest.raises(ConfigError, match="environment: online_store"):
        Settings.from_env({"RECO_ONLINE_STORE": "memcached"})
    with pytest.raises(ConfigError, match="environment: workers"):
        Settings.from_env({"RECO_WORKERS": "many"})
