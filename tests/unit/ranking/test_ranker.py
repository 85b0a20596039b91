"""Multi-head ranker: training on both backends and objectives, scoring, split, artefact round trip.

The training frame is synthetic: 300 groups (one user request each, one hour apart) of 30
candidates whose labels follow a latent score of the features, so a working model must beat
random on the latest groups. Most models train with one thread: on a busy 2-core machine,
OpenMP with two threads can stall on its barriers and slow tiny trainings down many times.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from components.core.config import TRAINING_SET_KEYS, deep_merge
from components.core.integrity import sha256_hex, sidecar_path, write_sidecar
from components.evaluation.metrics import ranking_metrics
from components.ranking.artefact import MANIFEST, load, save
from components.ranking.compiled import provenance
from components.ranking.labels import head_labels
from components.ranking.model import RankerModel
from components.ranking.params import RankerParams
from components.ranking.split import time_split
from components.ranking.train import train_ranker
from tests.fixtures.params import project_params, project_settings

FEATURES = [f"f{i}" for i in range(8)] + ["u0"]
COMBOS = [(b, o) for b in ("lightgbm", "xgboost") for o in ("lambdarank", "binary")]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_frame(
    n_groups: int = 300, n_cands: int = 30, seed: int = 0, signal: float = 1.0
) -> pd.DataFrame:
    """Candidates with labels driven by a latent score; rows shuffled (the ranker must sort)."""
    rng = np.random.default_rng(seed)
    n = n_groups * n_cands
    group = np.repeat(np.arange(n_groups), n_cands)
    F = rng.normal(size=(n, 8))
    user = np.repeat(rng.normal(size=n_groups), n_cands)
    latent = signal * (1.2 * F[:, 0] - 0.8 * F[:, 1] + 0.6 * F[:, 2] * F[:, 3] + 0.5 * user)
    engaged = (rng.random(n) < _sigmoid(latent - 1)).astype(int)
    like = engaged & (rng.random(n) < _sigmoid(F[:, 4])).astype(int)
    share = engaged & (rng.random(n) < 0.3 * _sigmoid(F[:, 5] + 1)).astype(int)
    complete = (rng.random(n) < _sigmoid(latent + F[:, 6])).astype(int)
    viewed = rng.random(n) < 0.7
    watch = np.where(viewed, np.exp(0.3 * latent + 0.2 * rng.normal(size=n)), np.nan)
    negative = (rng.random(n) < _sigmoid(-latent + 1.5 * F[:, 7] - 2)).astype(int)
    F[rng.random(n) < 0.1, 1] = np.nan  # missing feature values are allowed
    df = pd.DataFrame(F, columns=FEATURES[:8])
    df["u0"] = user
    df["group_id"] = group
    df["event_timestamp"] = pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(group, unit="h")
    df["label_engaged"] = engaged
    df["label_like"] = like
    df["label_share"] = share
    df["label_complete_view"] = complete
    df["label_watch_ratio"] = watch
    df["label_negative"] = negative
    df["relevance"] = np.minimum(engaged + like + share, 3)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def small_params(**overrides: object) -> RankerParams:
    base = project_settings(
        RankerParams,
        n_estimators=80,
        early_stopping_rounds=10,
        learning_rate=0.1,
        num_leaves=15,
        max_depth=4,
        n_threads=1,
        seed=7,
        base_feature="",
    )
    return base.replace(**overrides)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def models(frame: pd.DataFrame) -> dict[tuple[str, str], RankerModel]:
    return {
        (b, o): train_ranker(
            frame,
            FEATURES,
            small_params(backend=b, objective=o),
            feature_service="ranker_v2",
            created_from="data-v1",
        )
        for b, o in COMBOS
    }


def _validation(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[time_split(frame, 0.2)].sort_values(["group_id", "f0"]).reset_index(drop=True)


def _ndcg(val: pd.DataFrame, scores: np.ndarray) -> float:
    recs: dict[Hashable, list[int]] = {}
    rel: dict[Hashable, set[int]] = {}
    for g, rows in val.groupby("group_id").indices.items():
        idx = np.asarray(rows)
        order = idx[np.argsort(-scores[idx], kind="stable")]
        recs[g] = order[:10].tolist()
        rel[g] = set(idx[val["label_engaged"].to_numpy()[idx] == 1].tolist())
    return ranking_metrics(recs, rel, ks=(10,))["ndcg@10"]


# ---------------------------------------------------------------- params


def test_params_from_params_file_and_overrides() -> None:
    params = project_params(base={"seed": 3}, ranking={"backend": "xgboost", "l2_lambda": 0.01})
    p = RankerParams.from_params(params)
    assert (p.backend, p.objective, p.seed, p.l2_lambda) == ("xgboost", "lambdarank", 3, 0.01)
    assert p.heads == params["ranking"]["heads"] and p.heads["negative"] < 0
    model_keys = set(params["ranking"]) - TRAINING_SET_KEYS
    assert {k: getattr(p, k) for k in model_keys if k not in ("backend", "l2_lambda")} == {
        k: params["ranking"][k] for k in model_keys if k not in ("backend", "l2_lambda")
    }
    assert p.learning_rate_at(0) == p.learning_rate
    assert p.learning_rate_at(2) == pytest.approx(p.learning_rate * p.lr_decay**2)


@pytest.mark.parametrize(
    "bad",
    [
        {"backend": "catboost"},
        {"objective": "pairwise"},
        {"heads": {"engaged": 1.0, "dwell": 1.0}},
        {"heads": {"engaged": 0.0}},  # the main head must count
        {"validation_fraction": 0.0},
        {"lr_decay": 1.5},
        {"l2_lambda": -1},
        {"n_threads": 0},
    ],
)
def test_params_reject_invalid(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RankerParams.from_params(deep_merge(project_params(), {"ranking": bad}))


# ---------------------------------------------------------------- split


def test_time_split_puts_latest_groups_in_validation(frame: pd.DataFrame) -> None:
    mask = time_split(frame, 0.2)
    val_groups = set(frame.loc[mask, "group_id"])
    assert val_groups == set(range(240, 300))  # group g is stamped g hours after the start
    assert frame.loc[mask, "event_timestamp"].min() > frame.loc[~mask, "event_timestamp"].max()


def test_time_split_never_straddles_a_timestamp() -> None:
    # 10 groups at 5 distinct times (2 per time); 25% asked → the boundary snaps to a time change
    df = pd.DataFrame(
        {
            "group_id": np.repeat(np.arange(10), 3),
            "event_timestamp": np.repeat(np.arange(10) // 2, 3).astype(float),
        }
    )
    mask = time_split(df, 0.25)
    assert df.loc[mask, "event_timestamp"].min() > df.loc[~mask, "event_timestamp"].max()
    assert df.loc[mask, "group_id"].nunique() in (2, 4)


def test_time_split_single_timestamp_falls_back_to_group_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    df = pd.DataFrame({"group_id": np.repeat(np.arange(10), 2), "event_timestamp": 0.0})
    with caplog.at_level(logging.WARNING, logger="components.ranking.split"):
        mask = time_split(df, 0.2)
    assert set(df.loc[mask, "group_id"]) == {8, 9}
    assert "share one timestamp" in caplog.text


def test_time_split_errors() -> None:
    one = pd.DataFrame({"group_id": [1, 1], "event_timestamp": [0.0, 0.0]})
    with pytest.raises(ValueError, match="at least 2 groups"):
        time_split(one, 0.2)
    nat = pd.DataFrame(
        {"group_id": [1, 2], "event_timestamp": pd.to_datetime(pd.Series(["2026-01-01", None]))}
    )
    with pytest.raises(ValueError, match="missing timestamps"):
        time_split(nat, 0.2)


# ---------------------------------------------------------------- training quality


@pytest.mark.parametrize(("backend", "objective"), COMBOS)
def test_every_backend_and_objective_beats_random(
    models: dict[tuple[str, str], RankerModel], frame: pd.DataFrame, backend: str, objective: str
) -> None:
    model = models[(backend, objective)]
    tm = model.training_metrics
    assert tm["split"]["validation_groups"] == 60 and tm["split"]["train_groups"] == 240
    assert set(model.heads) == set(project_params()["ranking"]["heads"])
    engaged = tm["heads"]["engaged"]
    assert engaged["auc"] > 0.7
    assert tm["heads"]["negative"]["auc"] > 0.6 and tm["heads"]["complete_view"]["auc"] > 0.6
    if objective == "binary":
        assert engaged["logloss"] < 0.6
    # recomputed from scratch on the validation groups, against random scores
    val = _validation(frame)
    scores = model.predict(val)
    random_ndcg = np.mean([_ndcg(val, np.random.default_rng(s).random(len(val))) for s in range(5)])
    assert _ndcg(val, scores) > random_ndcg + 0.1
    assert engaged["ndcg@10"] > random_ndcg + 0.1
    assert roc_auc_score(val["label_engaged"], scores) > 0.7
    assert model.feature_service == "ranker_v2" and model.feature_cols == FEATURES


def test_predict_is_weighted_sum_of_standardised_heads(
    models: dict[tuple[str, str], RankerModel], frame: pd.DataFrame
) -> None:
    model = models[("lightgbm", "lambdarank")]
    val = _validation(frame)
    z = model.predict_heads(val, output="standardised")
    expected = sum(model.heads[h].weight * z[h] for h in z)
    np.testing.assert_allclose(model.predict(val), expected, rtol=1e-12, atol=1e-12)
    # the standardisation makes every head ~N(0, 1) on the rows it was fitted on
    train = frame[~time_split(frame, 0.2)]
    for h, zh in model.predict_heads(train, output="standardised").items():
        assert abs(zh.mean()) < 1e-6 and zh.std() == pytest.approx(1.0, rel=1e-6), h
    natural = model.predict_heads(val)
    assert ((natural["negative"] > 0) & (natural["negative"] < 1)).all()
    # ndarray input in feature order gives the same scores as the frame
    np.testing.assert_array_equal(model.predict(val[FEATURES].to_numpy()), model.predict(val))


def test_negative_head_lowers_score_of_likely_negatives(
    models: dict[tuple[str, str], RankerModel], frame: pd.DataFrame
) -> None:
    model = models[("xgboost", "binary")]
    assert model.heads["negative"].weight < 0
    val = _validation(frame)
    without = model.with_weights({"negative": 0.0})
    assert without.version != model.version
    effect = model.predict(val) - without.predict(val)
    p_neg = model.predict_heads(val)["negative"]
    order = np.argsort(p_neg)
    assert np.all(np.diff(effect[order]) <= 1e-12)  # more likely negative → pushed down more
    assert (
        effect[p_neg > np.quantile(p_neg, 0.9)].mean()
        < effect[p_neg < np.quantile(p_neg, 0.1)].mean() - 1
    )
    with pytest.raises(ValueError, match="no trained head"):
        model.with_weights({"dwell": 1.0})


# ---------------------------------------------------------------- determinism and artefact


@pytest.mark.parametrize("backend", ["lightgbm", "xgboost"])
def test_training_is_deterministic_with_two_threads(backend: str) -> None:
    # few rounds: two OpenMP threads on a busy 2-core machine are slow per round
    df = make_frame(n_groups=80, n_cands=20, seed=1)
    p = small_params(backend=backend, heads={"engaged": 1.0}, n_estimators=8, n_threads=2)
    a, b = train_ranker(df, FEATURES, p), train_ranker(df, FEATURES, p)
    np.testing.assert_array_equal(a.predict(df), b.predict(df))
    assert a.version == b.version
    c = train_ranker(df, FEATURES, p.replace(l2_lambda=50.0, n_threads=1))
    assert not np.array_equal(c.predict(df), a.predict(df)) and c.version != a.version


@pytest.mark.parametrize("backend", ["lightgbm", "xgboost"])
def test_save_load_round_trip(
    models: dict[tuple[str, str], RankerModel], frame: pd.DataFrame, tmp_path: Path, backend: str
) -> None:
    model = models[(backend, "lambdarank")]
    out = save(model, tmp_path / "rankers")
    assert out == tmp_path / "rankers" / model.version
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["version"] == model.version and manifest["created_from"] == "data-v1"
    assert manifest["feature_service"] == "ranker_v2" and manifest["feature_cols"] == FEATURES
    assert manifest["heads"]["negative"]["weight"] == -1.0 and "std" in manifest["heads"]["engaged"]
    ext = ".txt" if backend == "lightgbm" else ".ubj"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ext) == sorted(
        f"{h}{ext}" for h in model.heads
    )
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp")]

    loaded = load(out)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    for h, v in model.predict_heads(frame).items():
        np.testing.assert_array_equal(loaded.predict_heads(frame)[h], v)
    assert loaded.version == model.version and loaded.training_metrics == model.training_metrics
    assert loaded.params == model.params
    assert save(loaded, tmp_path / "rankers") == out  # same content → same version, no rewrite


def test_load_refuses_a_tampered_artefact(
    models: dict[tuple[str, str], RankerModel], tmp_path: Path
) -> None:
    out = save(models[("lightgbm", "binary")], tmp_path)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["heads"]["negative"]["weight"] = 5.0
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not match"):
        load(out)


def test_failed_save_leaves_no_artefact(
    models: dict[tuple[str, str], RankerModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="disk full"):
        save(models[("xgboost", "lambdarank")], tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- heads, stopping, parameters


def test_head_without_variation_is_skipped(
    frame: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    df = frame.assign(label_share=0)
    p = small_params(heads={"engaged": 1.0, "share": 0.5, "like": 0.0}, n_estimators=10)
    with caplog.at_level(logging.WARNING, logger="components.ranking.train"):
        model = train_ranker(df, FEATURES, p)
    assert set(model.heads) == {"engaged"}  # share skipped, like has weight 0
    assert "share" in model.training_metrics["skipped_heads"]
    assert "skipping head share" in caplog.text
    with pytest.raises(ValueError, match="no head could be trained"):
        train_ranker(df.assign(relevance=0), FEATURES, p.replace(heads={"engaged": 1.0}))


@pytest.mark.parametrize("backend", ["lightgbm", "xgboost"])
def test_early_stopping_stops_on_noise(backend: str) -> None:
    df = make_frame(n_groups=100, n_cands=20, seed=2, signal=0.0)
    p = small_params(
        backend=backend,
        objective="binary",
        heads={"engaged": 1.0},
        n_estimators=200,
        early_stopping_rounds=5,
        learning_rate=0.3,
        lr_decay=1.0,
    )
    m = train_ranker(df, FEATURES, p).training_metrics["heads"]["engaged"]
    assert m["rounds_run"] < 200
    assert m["best_iteration"] == m["rounds_run"] - 5


@pytest.mark.parametrize("backend", ["lightgbm", "xgboost"])
def test_l2_and_learning_rate_schedule_reach_the_booster(backend: str, tmp_path: Path) -> None:
    df = make_frame(n_groups=60, n_cands=20, seed=3)
    p = small_params(
        backend=backend,
        objective="binary",
        heads={"engaged": 1.0},
        n_estimators=12,
        early_stopping_rounds=0,
        l2_lambda=0.37,
        learning_rate=0.2,
        lr_decay=0.9,
    )
    model = train_ranker(df, FEATURES, p)
    for m in (model, load(save(model, tmp_path))):
        booster = m.boosters["engaged"]
        if backend == "lightgbm":
            l2, lr = booster.params["lambda_l2"], booster.params["learning_rate"]
        else:
            tree = json.loads(booster.save_config())["learner"]["gradient_booster"][
                "tree_train_param"
            ]
            l2, lr = float(tree["lambda"]), float(tree["learning_rate"])
        assert l2 == pytest.approx(0.37)
        assert lr == pytest.approx(0.2 * 0.9**11, rel=1e-6)  # the last round's scheduled rate


# ---------------------------------------------------------------- errors


def test_input_errors(frame: pd.DataFrame, models: dict[tuple[str, str], RankerModel]) -> None:
    p = small_params(heads={"engaged": 1.0}, n_estimators=5)
    with pytest.raises(KeyError, match="missing columns"):
        train_ranker(frame, [*FEATURES, "nope"], p)
    with pytest.raises(TypeError, match="numeric"):
        train_ranker(frame.assign(f0="x"), FEATURES, p)
    with pytest.raises(ValueError, match="0/1"):
        train_ranker(frame.assign(label_engaged=2), FEATURES, p.replace(objective="binary"))
    with pytest.raises(ValueError, match="integer grades"):
        train_ranker(frame.assign(relevance=0.5), FEATURES, p)
    with pytest.raises(ValueError, match="label_engaged must not be missing"):
        train_ranker(
            frame.assign(label_engaged=frame["label_engaged"].where(frame["f0"] > 0)), FEATURES, p
        )
    model = models[("lightgbm", "binary")]
    with pytest.raises(KeyError, match="missing feature"):
        model.predict(frame.drop(columns=["f3"]))
    with pytest.raises(ValueError, match="columns"):
        model.predict(np.zeros((3, 4)))


# ---------------------------------------------------------------- base margin


@pytest.mark.parametrize("backend", ["lightgbm", "xgboost"])
def test_base_feature_keeps_a_fine_grained_score_and_round_trips(backend: str, tmp_path: Path) -> None:
    """A score that orders candidates finer than the trees' bins: boosting from it (base margin)
    keeps its ordering, while trees on the same feature alone lose much of it."""
    rng = np.random.default_rng(3)
    n_groups, n_cands = 200, 400
    n = n_groups * n_cands
    group = np.repeat(np.arange(n_groups), n_cands)
    # the score's top values are squeezed into a tiny range, as retrieval scores often are
    score = np.exp(rng.normal(size=n) * 0.3) ** 8
    rank_in_group = pd.Series(-score).groupby(group).rank().to_numpy()
    engaged = (rank_in_group <= 3).astype(int)  # the best three by score are the positives
    df = pd.DataFrame({"z_score": score, "noise": rng.normal(size=n), "group_id": group})
    df["event_timestamp"] = pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(group, unit="h")
    df["label_engaged"] = engaged
    df["relevance"] = engaged
    heads = {"engaged": 1.0}
    # trees alone (no blend with the best source, which would restore the score's ordering)
    trees = train_ranker(df, ["z_score", "noise"], small_params(backend=backend, heads=heads, early_stopping_rounds=0, n_estimators=20, blend=False))
    based = train_ranker(df, ["z_score", "noise"], small_params(backend=backend, heads=heads, base_feature="auto", early_stopping_rounds=0, n_estimators=20))
    val = df[time_split(df, 0.2)].reset_index(drop=True)
    perfect = _ndcg(val, val["z_score"].to_numpy())
    assert perfect == pytest.approx(1.0)
    assert based.training_metrics["base_feature"] == "z_score"
    assert _ndcg(val, based.predict(val)) > max(0.95, _ndcg(val, trees.predict(val)))
    again = load(save(based, tmp_path))
    assert again.version == based.version
    np.testing.assert_allclose(again.predict(val), based.predict(val))
    manifest = json.loads((tmp_path / based.version / MANIFEST).read_text())
    assert manifest["heads"]["engaged"]["base_feature"] == "z_score"
    # the trees alone lose to the score: the blend with it serves, and survives a reload
    assert trees.training_metrics["blend"] == {}
    blended = train_ranker(df, ["z_score", "noise"], small_params(backend=backend, heads=heads, early_stopping_rounds=0, n_estimators=20))
    fig = blended.training_metrics["blend"]
    assert fig["ranker_beats_best_source"] is False and fig["best_source"] == "z_score" and blended.blend is not None
    assert _ndcg(val, blended.predict(val)) > _ndcg(val, blended.predict_ranker_alone(val))
    reloaded = load(save(blended, tmp_path / "blended"))
    np.testing.assert_allclose(reloaded.predict(val), blended.predict(val))


def test_base_feature_is_ignored_for_the_binary_objective(frame: pd.DataFrame) -> None:
    m = train_ranker(frame, FEATURES, small_params(objective="binary", heads={"engaged": 1.0}, base_feature="f0"))
    assert m.training_metrics["base_feature"] is None
    with pytest.raises(ValueError, match="not a feature column"):
        train_ranker(frame, FEATURES, small_params(heads={"engaged": 1.0}, base_feature="nope"))


def test_compiled_heads_score_like_the_boosters(
    models: dict[tuple[str, str], RankerModel], frame: pd.DataFrame, tmp_path: Path
) -> None:
    """lleaves-compiled LightGBM heads give the boosters' margins (NaN rows included), are cached
    per version, and a head whose compiled margins differ keeps the booster."""
    model = load(save(models[("lightgbm", "lambdarank")], tmp_path / "m"))
    x = frame[FEATURES].to_numpy(dtype=np.float32)
    x[::7, 0] = np.nan
    want = {h: m.copy() for h, m in model.predict_heads(x, output="margin").items()}
    status = model.compile(tmp_path / "compiled")
    assert status == dict.fromkeys(model.heads, "compiled")
    assert sorted(p.name for p in (tmp_path / "compiled" / model.version).glob("*.so")) == sorted(
        f"{h}.so" for h in model.heads
    )
    got = model.predict_heads(x, output="margin")
    for h in model.heads:
        np.testing.assert_allclose(got[h], want[h], rtol=0, atol=1e-9)
    # a cached object that computes something else, with a forged sidecar that vouches for it,
    # is still caught by the probe check
    again = load(save(models[("lightgbm", "lambdarank")], tmp_path / "m"))
    head = sorted(again.heads)[0]
    other = sorted(again.heads)[1]
    so = tmp_path / "compiled" / again.version
    forged = (so / f"{other}.so").read_bytes()
    (so / f"{head}.so").write_bytes(forged)
    write_sidecar(so / f"{head}.so", forged, provenance(again._files[f"{head}.txt"]))
    status = again.compile(tmp_path / "compiled")
    assert status[head].startswith("booster: compiled margins differ"), status
    assert status[other] == "compiled"
    np.testing.assert_allclose(again.predict_heads(x, output="margin")[head], want[head], atol=1e-9)
    xgb_model = models[("xgboost", "lambdarank")]
    assert set(xgb_model.compile(tmp_path / "compiled").values()) == {"not needed for xgboost"}


@pytest.mark.parametrize("damage", ["tampered", "truncated", "no_sidecar", "other_source"])
def test_a_damaged_compiled_object_is_refused_and_compiled_again(
    models: dict[tuple[str, str], RankerModel], frame: pd.DataFrame, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, damage: str,
) -> None:
    """The compiled-model cache is checked against the SHA-256 recorded when it was written
    (issue 16): a tampered or truncated object (a kill during the write), one without its
    record, or one built from other model text is refused with an error naming the file and
    the hashes, never linked into the process, and the head is compiled again."""
    model = load(save(models[("lightgbm", "lambdarank")], tmp_path / "m"))
    x = frame[FEATURES].to_numpy(dtype=np.float32)
    want = {h: m.copy() for h, m in model.predict_heads(x, output="margin").items()}
    assert set(model.compile(tmp_path / "compiled").values()) == {"compiled"}
    head = sorted(model.heads)[0]
    so = tmp_path / "compiled" / model.version / f"{head}.so"
    good = so.read_bytes()
    assert json.loads(sidecar_path(so).read_text())["sha256"] == sha256_hex(good)
    assert not list(so.parent.glob("*.txt"))  # lleaves reads the model text from a private folder
    if damage == "tampered":
        so.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    elif damage == "truncated":
        so.write_bytes(good[: len(good) // 3])
    elif damage == "no_sidecar":
        sidecar_path(so).unlink()
    else:
        write_sidecar(so, good, {**provenance(model._files[f"{head}.txt"]), "source_sha256": "0" * 64})
    bad = so.read_bytes()
    again = load(save(models[("lightgbm", "lambdarank")], tmp_path / "m"))
    with caplog.at_level("ERROR", logger="components.ranking.compiled"):
        status = again.compile(tmp_path / "compiled")
    assert status == dict.fromkeys(again.heads, "compiled")
    refused = [r.getMessage() for r in caplog.records if "refused to load" in r.getMessage()]
    assert len(refused) == 1 and str(so) in refused[0], refused
    if damage in ("tampered", "truncated"):
        assert f"SHA-256 {sha256_hex(bad)} does not match the {sha256_hex(good)}" in refused[0]
    elif damage == "no_sidecar":
        assert "no SHA-256 recorded" in refused[0]
    else:
        assert "source_sha256" in refused[0]
    assert so.read_bytes() == good  # recompiled (deterministic) and republished with its record
    assert json.loads(sidecar_path(so).read_text())["sha256"] == sha256_hex(good)
    got = again.predict_heads(x, output="margin")
    for h in again.heads:
        np.testing.assert_allclose(got[h], want[h], rtol=0, atol=1e-9)


def test_negative_head_learns_rejection_once_seen_not_being_seen() -> None:
    """Whether a candidate gets any reaction at all (f5: exposure) is independent of whether a
    reacting user rejects it (f7). Over every candidate "skipped" would mostly mean "seen"; the
    negative head, trained only on rows with a reaction, follows f7 and not f5."""
    df = make_frame(n_groups=300, n_cands=30, seed=5)
    rng = np.random.default_rng(5)
    n = len(df)
    reacted = rng.random(n) < _sigmoid(3.0 * df["f5"].to_numpy() - 1.0)
    engaged = reacted & (rng.random(n) < 0.3)
    negative = reacted & ~engaged & (rng.random(n) < _sigmoid(2.0 * df["f7"].to_numpy()))
    viewed = reacted & ~negative
    df["label_engaged"] = engaged.astype(int)
    df["label_negative"] = negative.astype(int)
    df["relevance"] = np.where(engaged, 2, np.where(viewed, 1, 0))
    df["label_watch_ratio"] = np.where(viewed, 0.5, np.nan)
    y = head_labels(df, "label_negative")
    assert np.isnan(y[~reacted]).all() and (y[reacted] == negative[reacted]).all()
    np.testing.assert_array_equal(head_labels(df, "label_engaged"), engaged.astype(float))

    model = train_ranker(df, FEATURES, small_params(heads={"engaged": 1.0, "negative": -1.0}))
    neg = model.predict_heads(df)["negative"]
    corr = df[["f5", "f7"]].assign(neg=neg).corr(method="spearman")["neg"]
    assert corr["f7"] > 0.5 and abs(corr["f5"]) < 0.2, corr
