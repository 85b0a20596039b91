"""The tuning stage (components/tuning/stage.py): an Optuna study on validation carved from train."""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from components.core.catalog import DataPaths
from components.core.config import load_params
from components.tuning import stage as T
from tests.fixtures.worlds import make_world


def test_a_two_trial_study_is_stored_and_its_choice_applied(tmp_path: Path) -> None:
    params = load_params(None)
    params["embeddings"].update(factors=8, iterations=3, graph_dim=8, graph_rank=16, text_dim=8)
    params["evaluate"] = {**params["evaluate"], "protocol": "random_per_user", "test_fraction": 0.25, "positive_types": ["like"]}
    params["tuning"] = {**params["tuning"], "trials": 2, "timeout_s": 0}
    events, content, users = make_world(n_users_per_cat=6, n_items_per_cat=10, days=4.0)
    paths = DataPaths(tmp_path)
    chosen = T.tune(params, "synthetic", events, content, users, paths.of("tuning"), "pipeline")
    lo, hi = params["tuning"]["ease_lambda"]
    lam = chosen["overrides"]["candidates"]["ease"]["lambda"]
    assert lo <= lam <= hi and chosen["trials"] == 2
    study = optuna.load_study(study_name="pipeline-ease", storage=f"sqlite:///{paths.of('tuning_study', study='pipeline')}")
    assert len(study.trials) == 2
    assert study.trials[0].params["ease_lambda"] == params["candidates"]["ease"]["lambda"]  # the current value first
    assert chosen["validation_ndcg@10"] >= round(study.trials[0].value, 6)  # never worse than the current value
    on_disk = json.loads(paths.of("tuning_chosen", study="pipeline").read_text())
    assert on_disk["overrides"] == chosen["overrides"]
    assert T.tuned_params(params, paths, "pipeline")["candidates"]["ease"]["lambda"] == lam
    assert T.tuned_params(params, paths, "movielens") == params  # nothing tuned for it: as they are
    params["tuning"]["apply"] = False
    assert T.tuned_params(params, paths, "pipeline")["candidates"]["ease"]["lambda"] == params["candidates"]["ease"]["lambda"]
