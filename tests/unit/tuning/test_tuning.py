"""The tuning stage (components/tuning/stage.py): Optuna studies on validation carved from train."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from components.core.catalog import DataPaths
from components.core.config import Params, load_params
from components.core.section import ConfigError
from components.tuning import stage as T
from components.tuning import studies as S
from tests.fixtures.worlds import make_world


def _params(**tuning: Any) -> dict[str, Any]:
    params = load_params(None)
    params["embeddings"].update(factors=8, iterations=3, graph_dim=8, graph_rank=16, text_dim=8)
    params["evaluate"] = {
        **params["evaluate"], "protocol": "random_per_user", "test_fraction": 0.25, "positive_types": ["like"],
        "feast_features": False,
    }
    params["ranking"].update(n_estimators=20, early_stopping_rounds=0)
    params["tuning"] = {
        **params["tuning"], "trials": 2, "ranker_trials": 2, "timeout_s": 0,
        "als_factors": [4, 16], "als_iterations": [2, 5], "n_estimators": [10, 30], **tuning,
    }
    return params


@pytest.fixture(scope="module")
def world() -> tuple[Any, Any, Any]:
    return make_world(n_users_per_cat=6, n_items_per_cat=10, days=4.0)


def _load(paths: DataPaths, group: str) -> optuna.Study:
    return optuna.load_study(study_name=f"pipeline-{group}", storage=f"sqlite:///{paths.of('tuning_study', study='pipeline')}")


def test_every_study_is_stored_its_choice_in_range_and_applied(tmp_path: Path, world: tuple[Any, Any, Any]) -> None:
    params = _params(studies=list(S.STUDIES))  # the ranker's too (not in params.yaml's default set)
    events, content, users = world
    paths = DataPaths(tmp_path)
    chosen = T.tune(params, "synthetic", events, content, users, paths.of("tuning"), "pipeline")
    t = Params.of(params).tuning.model_dump()
    o = chosen["overrides"]
    assert t["ease_lambda"][0] <= o["candidates"]["ease"]["lambda"] <= t["ease_lambda"][1]
    assert t["als_factors"][0] <= o["embeddings"]["factors"] <= t["als_factors"][1]
    assert t["als_iterations"][0] <= o["embeddings"]["iterations"] <= t["als_iterations"][1]
    assert t["knn_k"][0] <= o["candidates"]["knn"]["k"] <= t["knn_k"][1]
    assert o["candidates"]["knn"]["scoring"] in S.KNN_SCORINGS
    assert set(o["candidates"]["mix"]) == set(params["candidates"]["mix"])
    assert sum(o["candidates"]["mix"].values()) <= sum(params["candidates"]["mix"].values()) + 1e-9
    assert t["num_leaves"][0] <= o["ranking"]["num_leaves"] <= t["num_leaves"][1]
    assert t["learning_rate"][0] <= o["ranking"]["learning_rate"] <= t["learning_rate"][1]
    assert set(chosen["studies"]) == set(S.STUDIES) - {"folds"}  # random folds: no fold cut to choose
    assert chosen["trials"] == 4 * 2 + 2
    # the current values are each study's first trial, so a choice is never worse than them
    assert _load(paths, "ease").trials[0].params["ease_lambda"] == params["candidates"]["ease"]["lambda"]
    assert _load(paths, "als").trials[0].params["als_factors"] == params["embeddings"]["factors"]
    assert _load(paths, "ranker").trials[0].params["num_leaves"] == params["ranking"]["num_leaves"]
    for group, fig in chosen["studies"].items():
        assert fig["current"] is not None and fig["validation"] >= fig["current"], group
        assert len(_load(paths, group).trials) == fig["trials"]
    on_disk = json.loads(paths.of("tuning_chosen", study="pipeline").read_text())
    assert on_disk["overrides"] == o
    tuned = Params.of(T.tuned_params(params, paths, "pipeline"))  # typed: the overrides are valid params
    assert tuned.embeddings.factors == o["embeddings"]["factors"] and tuned.ranking.num_leaves == o["ranking"]["num_leaves"]
    assert tuned.candidates.ease.lambda_ == o["candidates"]["ease"]["lambda"]
    assert T.tuned_params(params, paths, "movielens") == params  # nothing tuned for it: as they are
    params["tuning"]["apply"] = False
    assert T.tuned_params(params, paths, "pipeline") == params


def test_a_study_repeats_exactly_and_runs_only_the_groups_asked(tmp_path: Path, world: tuple[Any, Any, Any]) -> None:
    params = _params(studies=["ease", "knn"], trials=3)
    events, content, users = world
    first = T.tune(params, "synthetic", events, content, users, tmp_path / "a", "pipeline")
    second = T.tune(params, "synthetic", events, content, users, tmp_path / "b", "pipeline")
    assert (tmp_path / "a" / "pipeline.json").read_text() == (tmp_path / "b" / "pipeline.json").read_text()
    assert set(first["studies"]) == {"ease", "knn"} == set(second["studies"])
    assert set(first["overrides"]) == {"candidates"} and set(first["overrides"]["candidates"]) == {"ease", "knn"}


def test_the_folds_study_scores_each_fold_cut_by_the_pipeline_on_validation(tmp_path: Path, world: tuple[Any, Any, Any]) -> None:
    params = _params(studies=["folds"], inner_cut_quantiles=[None, 0.6])
    params["evaluate"].update(protocol="temporal_per_user", test_fraction=0.25, negatives_per_group=20)
    params["evaluate"]["overrides"]["kuairand"]["inner_cut_quantile"] = 0.6  # the current value
    events, content, users = world
    paths = DataPaths(tmp_path)
    chosen = T.tune(params, "kuairand", events, content, users, paths.of("tuning"), "pipeline")
    trials = _load(paths, "folds").trials
    assert [t.params["inner_cut_quantile"] for t in trials] == [0.6, None]  # the current value first, each once
    fig = chosen["studies"]["folds"]
    assert fig["trials"] == 2 and fig["validation"] == max(t.value for t in trials) and fig["current"] == trials[0].value
    best = trials[int(max(range(2), key=lambda i: trials[i].value))].params["inner_cut_quantile"]
    assert chosen["overrides"] == {"evaluate": {"overrides": {"kuairand": {"inner_cut_quantile": best}}}}
    # the chosen value reaches the data set's evaluation settings
    tuned = T.tuned_params(params, paths, "pipeline")
    assert Params.of(tuned).for_dataset("kuairand", evaluation=True).evaluate.inner_cut_quantile == best


def test_the_folds_study_searches_negatives_on_random_folds_and_skips_the_cut(tmp_path: Path, world: tuple[Any, Any, Any]) -> None:
    params = _params(studies=["folds"], fold_negatives=[10, 20])  # random_per_user: no fold cut to choose
    params["evaluate"]["negatives_per_group"] = 20
    events, content, users = world
    paths = DataPaths(tmp_path)
    chosen = T.tune(params, "synthetic", events, content, users, paths.of("tuning"), "pipeline")
    trials = _load(paths, "folds").trials
    assert [t.params for t in trials] == [{"negatives_per_group": 20}, {"negatives_per_group": 10}]
    best = max(trials, key=lambda t: t.value).params["negatives_per_group"]  # first on a tie, as Optuna
    assert chosen["overrides"] == {"evaluate": {"overrides": {"synthetic": {"negatives_per_group": best}}}}
    assert Params.of(T.tuned_params(params, paths, "pipeline")).for_dataset("synthetic", evaluation=True).evaluate.negatives_per_group == best
    params["tuning"]["fold_negatives"] = [20]  # one value of each choice: nothing to search
    assert "folds" not in T.tune(params, "synthetic", events, content, users, tmp_path / "b", "pipeline")["studies"]


def test_mix_quotas_are_rescaled_to_the_current_sum_and_never_pass_it() -> None:
    mix = S.rescaled_mix({"mix_a": 0.2, "mix_b": 0.6, "mix_c": 0.0}, 0.9)
    assert mix == {"a": 0.225, "b": 0.675, "c": 0.0}
    odd = S.rescaled_mix({"mix_a": 1 / 3, "mix_b": 1 / 3, "mix_c": 1 / 3}, 1.0)
    assert sum(odd.values()) <= 1.0 and min(odd.values()) == 0.333


def test_overrides_are_nested_typed_and_rounded() -> None:
    dims = S.spaces(Params.of(load_params(None)).tuning, ["hybrid"])
    values = {"knn_k": 57.0, "knn_shrinkage": 3.14159265358979, "knn_scoring": "aggregate"}
    assert S.as_overrides(dims["knn"], values) == {"candidates": {"knn": {"k": 57, "shrinkage": 3.14159, "scoring": "aggregate"}}}
    k = dims["knn"][0]
    assert k.contains(50) and not k.contains(5000) and not k.contains(50.5)
    assert dims["mix"][0].path == ("candidates", "mix", "hybrid")


def test_the_tuning_section_rejects_unknown_studies_and_empty_ranges() -> None:
    params = load_params(None)
    with pytest.raises(ConfigError, match="unknown"):
        Params.of({**params, "tuning": {**params["tuning"], "studies": ["ease", "magic"]}})
    with pytest.raises(ConfigError, match="low <= high"):
        Params.of({**params, "tuning": {**params["tuning"], "knn_k": [400, 10]}})
