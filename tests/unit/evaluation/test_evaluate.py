"""Offline evaluation protocol: splits, relevance, no leakage, determinism, brought splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from components.core.catalog import DataPaths
from components.core.config import load_params
from components.data.adapters.brought import table_to_drop
from components.evaluation import protocols as P
from components.evaluation import report as Rp
from components.evaluation import stage as V
from components.pipeline import Pipeline
from components.retrieval.interactions import interaction_events
from tests.fixtures.worlds import T0, events_frame, make_world


def small_params(**evaluate: Any) -> dict[str, Any]:
    """The project's params with a small model, so a whole protocol runs in seconds."""
    params = load_params(None)
    params["embeddings"].update(factors=8, iterations=5, graph_dim=8, graph_rank=16, text_dim=8)
    params["candidates"].update(per_source=60, per_user=40)
    params["candidates"]["knn"]["k"] = 10
    params["ranking"].update(n_estimators=25, early_stopping_rounds=0)
    params["evaluate"] = {
        **params["evaluate"],
        "feast_features": False,
        "curve_max_k": 10,
        "negatives_per_group": 20,
        "repeats": 1,
        **evaluate,
    }
    return params


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ev, content, users = make_world(n_users_per_cat=8, n_items_per_cat=15, days=6.0)
    upload = events_frame([{"type": "content_upload", "user": None, "content": "cooking_00", "t": 1.0}])
    return pd.concat([ev, upload], ignore_index=True), content, users


# ---------------------------------------------------------------------------------------------
# Splits and relevance


@pytest.mark.parametrize("protocol", P.PROTOCOLS)
def test_split_keeps_every_event_once_and_units_whole(protocol: str, world: tuple[pd.DataFrame, ...]) -> None:
    ev = world[0]
    train, test = P.split_events(ev, protocol, test_fraction=0.25, cut_quantile=0.8, seed=42)
    assert len(train) + len(test) == len(ev)
    assert not set(train.index) & set(test.index)
    assert (train["event_type"] == "content_upload").sum() == 1  # supply stays with train
    # a unit (user, content, time) is never cut in two: a like and its view stay together
    key = ["user_id", "content_id", "timestamp"]
    both = train[key].drop_duplicates().merge(test[key].drop_duplicates(), on=key)
    assert both.empty
    if protocol == "temporal_per_user":
        last_train = interaction_events(train).groupby("user_id")["timestamp"].max()
        first_test = test.groupby("user_id")["timestamp"].min()
        assert (last_train.loc[first_test.index] <= first_test).all()
    if protocol == "global_time":
        assert interaction_events(train)["timestamp"].max() < test["timestamp"].min()
    again = P.split_events(ev, protocol, test_fraction=0.25, cut_quantile=0.8, seed=42)
    assert again[1].index.equals(test.index)


@pytest.mark.parametrize("quantile", [None, 0.7])
def test_temporal_folds_repeat_the_protocol_on_the_log_as_it_stood_at_their_cut(
    quantile: float | None, world: tuple[pd.DataFrame, ...], tmp_path: Path
) -> None:
    """With ``inner_cut_quantile``, a fold first drops every event from that quantile of its
    source's interaction times on (uploads too), then holds out each user's last share; without
    it, the fold's inner train and held-out part together are its source."""
    params = small_params(protocol="temporal_per_user", test_fraction=0.25, inner_folds=2, inner_cut_quantile=quantile)
    s = P.EvalSettings.from_params(params, "synthetic")
    train, _ = P.split_events(world[0], "temporal_per_user", test_fraction=0.25, cut_quantile=0.8, seed=42)
    pipe = P.evaluation_pipeline(params, "synthetic", s)
    source = train
    for part in P.fold_parts(pipe, s, train, world[1], world[2], tmp_path):
        expected = P.as_of_quantile(source, quantile) if quantile is not None else source
        if quantile is not None:
            times = interaction_events(source)["timestamp"]
            assert expected["timestamp"].max() < times.quantile(quantile, interpolation="lower")
            assert len(expected) < len(source)
        # the fold's inner train is ``expected`` less each user's last quarter, as the protocol splits it
        exp_inner, exp_held = P.split_events(expected, "temporal_per_user", test_fraction=0.25, cut_quantile=0.8, seed=0)
        assert set(part.users) == set(interaction_events(exp_held)["user_id"].astype(str))
        assert part.labels.index.equals(exp_held.index)  # the held-out events, moved after the cut
        assert part.fitted.cut == P.cut_of(exp_inner)
        source = exp_inner


def test_relevant_items_exclude_seen_and_respect_types() -> None:
    train = events_frame(
        [
            {"type": "view", "user": "a", "content": "c1", "t": 0},
            {"type": "view", "user": "b", "content": "c1", "t": 0},
        ]
    )
    test = events_frame(
        [
            {"type": "like", "user": "a", "content": "c1", "t": 5},  # seen in train: not relevant
            {"type": "like", "user": "a", "content": "c2", "t": 5},
            {"type": "view", "user": "a", "content": "c3", "t": 5},
            {"type": "view", "user": "b", "content": "c4", "t": 5},
            {"type": "like", "user": "newcomer", "content": "c2", "t": 5},  # no train history
        ]
    )
    assert P.relevant_items(train, test, ["like"]) == {"a": {"c2"}}
    assert P.relevant_items(train, test, []) == {"a": {"c2", "c3"}, "b": {"c4"}}


def test_settings_overrides_and_validation() -> None:
    params = load_params(None)
    kr = P.EvalSettings.from_params(params, "kuairand")
    assert kr.protocol == "temporal_per_user" and kr.positive_types == ("like",)
    ml = P.EvalSettings.from_params(params, "movielens")
    assert ml.protocol == "random_per_user" and ml.test_fraction == 0.25 and ml.positive_types == ()
    assert P.EvalSettings.from_params(params, "synthetic").protocol == "global_time"
    assert kr.ranker.heads["like"] == 0.0 and kr.ranker.heads["engaged"] == 1.0  # evaluate.overrides.kuairand.ranking
    synthetic = P.EvalSettings.from_params(params, "synthetic")
    assert synthetic.ranker.heads == params["ranking"]["heads"]  # no ranking override: the ranking section
    with pytest.raises(ValueError, match="protocol"):
        synthetic.replace(protocol="leave_one_out")


# ---------------------------------------------------------------------------------------------
# The whole protocol on a small world


def run_split(params: dict[str, Any], train: pd.DataFrame, test: pd.DataFrame, world: tuple[pd.DataFrame, ...], tmp: Path) -> Rp.EvalResult:
    s = P.EvalSettings.from_params(params, "synthetic")
    return P.evaluate_split(params, "synthetic", train, test, world[1], world[2], s, tmp)


@pytest.fixture(scope="module")
def split(world: tuple[pd.DataFrame, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return P.split_events(world[0], "random_per_user", test_fraction=0.25, cut_quantile=0.8, seed=42)


@pytest.fixture(scope="module")
def result(world: tuple[pd.DataFrame, ...], split: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Rp.EvalResult:
    params = small_params(protocol="random_per_user", test_fraction=0.25, positive_types=["like"])
    return run_split(params, split[0], split[1], world, tmp_path_factory.mktemp("eval"))


def test_every_model_is_scored_with_the_same_users(result: Rp.EvalResult) -> None:
    models = result.summary["models"]
    assert set(models) == {Rp.PIPELINE, Rp.RANKER_ALONE, *Rp.BASELINES}
    n = {m["users_evaluated"] for m in models.values()}
    assert n == {float(result.summary["users_evaluated"])}
    for m in models.values():
        for k in (10, 50):
            for name in ("precision", "recall", "ndcg", "map", "hit_rate"):
                assert 0.0 <= m[f"{name}@{k}"] <= 1.0
    # users love one category: the pipeline must beat "most popular" clearly
    assert models[Rp.PIPELINE]["ndcg@10"] > 1.5 * models["popularity"]["ndcg@10"]
    assert set(result.curves["model"]) == set(models) and result.curves["k"].max() == 10
    assert "| **pipeline** |" in result.report and "| popularity |" in result.report


def test_no_hold_out_event_influences_training(
    world: tuple[pd.DataFrame, ...], split: tuple[pd.DataFrame, pd.DataFrame], result: Rp.EvalResult, tmp_path: Path
) -> None:
    """The same train part with a different test part trains the very same ranker (same
    version: same features, labels and boosters), and every training label is a train event."""
    params = small_params(protocol="random_per_user", test_fraction=0.25, positive_types=["like"])
    train, test = split
    other_test = test.sample(frac=0.5, random_state=1).assign(timestamp=lambda f: f["timestamp"] + pd.Timedelta(days=30))
    other = run_split(params, train, other_test, world, tmp_path)
    assert other.summary["ranker"]["version"] == result.summary["ranker"]["version"]
    assert other.summary["ranker"]["training_rows"] == result.summary["ranker"]["training_rows"]

    s = P.EvalSettings.from_params(params, "synthetic")
    _, frame = P.train_on(params, "synthetic", s, train, world[1], world[2], tmp_path / "again")
    positives = frame[frame["label_engaged"] == 1][["user_id", "content_id"]]
    train_pairs = set(zip(train["user_id"].astype(str), train["content_id"].astype(str), strict=False))
    test_only = set(zip(test["user_id"].astype(str), test["content_id"].astype(str), strict=False)) - train_pairs
    got = set(zip(positives["user_id"], positives["content_id"], strict=True))
    assert got and got <= train_pairs and not got & test_only


def test_protocol_is_deterministic(world: tuple[pd.DataFrame, ...], split: tuple[pd.DataFrame, pd.DataFrame], result: Rp.EvalResult, tmp_path: Path) -> None:
    params = small_params(protocol="random_per_user", test_fraction=0.25, positive_types=["like"])
    again = run_split(params, split[0], split[1], world, tmp_path)
    assert json.dumps(again.summary, sort_keys=True) == json.dumps(result.summary, sort_keys=True)
    pd.testing.assert_frame_equal(again.curves, result.curves)


def test_lists_never_contain_train_items(world: tuple[pd.DataFrame, ...], split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    params = small_params()
    pipe = Pipeline.of(params, "synthetic")
    fitted = pipe.fit(split[0], world[1], world[2], P.cut_of(split[0]))
    users = sorted(P.relevant_items(split[0], split[1], ["like"]))[:6]
    cand = pipe.candidates(fitted, users)
    lists = Rp.baseline_lists(fitted.retriever, users, 20, cand)
    seen = interaction_events(split[0]).groupby("user_id")["content_id"].agg(set)
    for name, per_user in lists.items():
        for u, items in per_user.items():
            assert len(items) <= 20 and not set(items) & seen[u], name


# ---------------------------------------------------------------------------------------------
# Bring your own split


def test_table_to_drop_keeps_parts_and_rating_rules() -> None:
    ts = pd.Timestamp("2020-01-01", tz="UTC")
    train = pd.DataFrame({"user": ["1", "1", "2"], "item": ["10", "11", "10"], "rating": [4.5, 1.0, 3.0], "timestamp": [ts] * 3})
    test = pd.DataFrame({"user": ["2"], "item": ["11"], "rating": [np.nan], "timestamp": [ts]})
    drop = table_to_drop({"train": train, "test": test})
    ev = drop.events
    assert (ev["event_type"] == "complete_view").sum() == 4
    assert ev[ev["event_type"] == "like"]["content_id"].tolist() == ["10"]
    assert ev[ev["event_type"] == "hide"]["content_id"].tolist() == ["11"]
    assert ev["event_id"].str.startswith("test-").sum() == 1
    assert sorted(drop.content["content_id"]) == ["10", "11"]
    with pytest.raises(ValueError, match="missing column"):
        table_to_drop({"train": train.drop(columns="item")})


def test_run_files_trains_on_train_and_scores_test(world: tuple[pd.DataFrame, ...], tmp_path: Path) -> None:
    ev = interaction_events(world[0])
    ratings = ev[ev["event_type"] == "view"].assign(rating=lambda f: np.where(f["watch_ratio"] > 0.5, 5.0, 1.0))
    table = pd.DataFrame(
        {
            "user": ratings["user_id"].to_numpy(),
            "item": ratings["content_id"].to_numpy(),
            "rating": ratings["rating"].to_numpy(),
            "timestamp": (ratings["timestamp"].astype("int64") // 10**9).to_numpy(),
        }
    )
    sp = P.split_events(world[0], "random_per_user", test_fraction=0.25, cut_quantile=0.8, seed=7)
    test_keys = set(zip(sp[1]["user_id"], sp[1]["content_id"], strict=True))
    is_test = np.array([(u, i) in test_keys for u, i in zip(table["user"], table["item"], strict=True)])
    table[~is_test].to_csv(tmp_path / "train.csv", index=False)
    table[is_test].to_parquet(tmp_path / "test.parquet")
    world[1].to_parquet(tmp_path / "content.parquet")
    params = small_params()
    paths = DataPaths(tmp_path / "out")
    res = V.run_files(
        params, tmp_path / "train.csv", tmp_path / "test.parquet", paths, name="mine",
        content_file=tmp_path / "content.parquet", positive_types=["like"],
    )
    assert res.summary["users_evaluated"] > 10
    assert res.summary["train_events"] == 2 * (~is_test).sum() - (table[~is_test]["rating"] < 4).sum() + (table[~is_test]["rating"] <= 1.5).sum()
    assert (paths.metrics / "evaluate_mine.json").exists() and (paths.reports / "evaluation_mine.md").exists()
    assert (paths.metrics / "plots" / "evaluate_mine" / "pipeline.csv").exists()
    assert res.summary["models"][Rp.PIPELINE]["ndcg@10"] > res.summary["models"]["popularity"]["ndcg@10"]
    assert T0 is not None


def test_cross_validation_averages_folds(world: tuple[pd.DataFrame, ...], tmp_path: Path) -> None:
    params = small_params(positive_types=["like"], inner_folds=1)
    cv = P.cross_validate(params, "synthetic", world[0], world[1], world[2], 2, tmp_path)
    assert cv["folds"] == 2 and set(cv["models"]) == {Rp.PIPELINE, Rp.RANKER_ALONE, *Rp.BASELINES}
    m = cv["models"][Rp.PIPELINE]["ndcg@10"]
    assert 0.0 < m["mean"] <= 1.0 and m["std"] >= 0.0
    assert cv["models"][Rp.PIPELINE]["ndcg@10"]["mean"] > cv["models"]["popularity"]["ndcg@10"]["mean"]


def test_a_brought_split_name_that_leaves_its_folder_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--name x/../../../data/victim`` once reached an ``rmtree`` of the curves folder."""
    from components.evaluation.stage import main

    victim = tmp_path / "data" / "victim"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("precious")
    split = tmp_path / "split.csv"
    split.write_text("user,item,rating,timestamp\nu1,i1,5,1700000000\n")
    argv = ["--root", str(tmp_path / "root"), "--train-file", str(split), "--test-file", str(split),
            "--name", "x/../../../data/victim"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "is not a safe name" in capsys.readouterr().err
    assert (victim / "keep.txt").read_text() == "precious"


def test_repeats_give_intervals_and_a_fixed_split_fits_retrieval_once(
    world: tuple[pd.DataFrame, ...], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params = small_params(protocol="global_time", positive_types=["like"], inner_folds=1, repeats=2)
    with caplog.at_level("INFO", logger=P.__name__):
        res = P.evaluate_events(params, "synthetic", *world, tmp_path)
    sm = res.summary
    # each repeat's figures are logged as it ends (a run cut short still reports what it measured)
    logged = [r.getMessage() for r in caplog.records if "repeat " in r.getMessage() and "ndcg@10" in r.getMessage()]
    assert len(logged) == 2
    assert f"'ease': {round(sm['per_repeat']['ease'][1], 4)}" in logged[1]
    assert sm["repeats"] == 2 and sm["seeds"] == [42, 43]
    assert set(sm["intervals"]) == set(sm["models"]) and len(sm["per_repeat"][Rp.PIPELINE]) == 2
    # the time split and retrieval do not move with the seed: a deterministic baseline has no width
    assert sm["intervals"]["popularity"]["ndcg@10"] == 0.0
    assert sm["per_repeat"]["ease"][0] == sm["per_repeat"]["ease"][1]
    lift = sm["lift"]
    assert lift["low"] <= lift["mean"] <= lift["high"]
    assert lift["bootstrap"]["low"] <= lift["bootstrap"]["high"]
    assert "±" in res.report or sm["intervals"][Rp.PIPELINE]["ndcg@10"] == 0.0
    assert "95 %" in res.report
