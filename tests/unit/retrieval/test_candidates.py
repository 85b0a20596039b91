"""Candidate sources, merging, the FAISS index and cold-start retrieval on hand-built worlds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from components.core.config import load_params
from components.evaluation.report import baseline_lists
from components.retrieval.collaborative import Neighbourhood, baselines, fit_ease, sequence_gram
from components.retrieval.embedding_model import fit_embeddings
from components.retrieval.holdout import evaluate, hold_out
from components.retrieval.index import (
    ContentIndex,
    _faiss,
    auto_nlist,
    index_recall,
    pq_subquantizers,
)
from components.retrieval.pair_features import PAIR_SOURCES, minmax
from components.retrieval.params import INDEX_TYPES, SOURCES, CandidateParams, EvalParams
from components.retrieval.retriever import Retriever
from components.retrieval.sources import (
    Candidates,
    followed_creators,
    item_activity,
    merge,
    trending_scores,
)
from tests.fixtures.params import project_params
from tests.fixtures.worlds import SMALL, T0, content_row, events_frame, make_world

NOW = T0 + pd.Timedelta(days=5)
PARAMS = CandidateParams.from_params(project_params(candidates={"knn": {"k": 10}, "per_source": 50, "per_user": 40}))
INDEX = PARAMS.index


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ev, content, users = make_world()
    # a hidden content, a reported one, and follows
    extra = events_frame(
        [
            {"type": "hide", "user": "u_gaming_0", "content": "gaming_14", "t": 10},
            {"type": "report", "user": "u_gaming_0", "content": "gaming_13", "t": 11},
            {"type": "follow", "user": "u_music_0", "content": "travel_00", "creator": "cr_travel_1", "t": 12},
        ]
    )
    return pd.concat([ev, extra], ignore_index=True), content, users


@pytest.fixture(scope="module")
def retriever(world: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> Retriever:
    ev, content, users = world
    model, _ = fit_embeddings(ev, content, SMALL, now=NOW)
    return Retriever.fit(model, ev, content, users, NOW, PARAMS, SMALL)


# ---------------------------------------------------------------------------------------------
# Merging


def cands(items: list[int], scores: list[float] | None = None) -> Candidates:
    s = scores if scores is not None else [float(len(items) - i) for i in range(len(items))]
    return Candidates(np.array(items, dtype=np.int64), np.array(s, dtype=np.float32))


def test_merge_gives_each_source_its_quota_without_duplicates() -> None:
    lists = {"a": cands([1, 2, 3, 4, 5, 6]), "b": cands([1, 7, 8, 9, 10, 11])}
    items, scores, sources = merge(lists, {"a": 0.5, "b": 0.5}, 6)
    assert items == [1, 2, 3, 7, 8, 9]  # b skips 1, already taken by a
    assert sources == ["a"] * 3 + ["b"] * 3
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_merge_fills_slots_of_a_dry_source_by_quota() -> None:
    lists = {"a": cands([1]), "b": cands([10, 11, 12, 13, 14, 15, 16]), "c": cands([20, 21, 22, 23, 24, 25])}
    items, _, sources = merge(lists, {"a": 0.5, "b": 0.3, "c": 0.2}, 10)
    assert len(items) == 10 and len(set(items)) == 10
    assert sources.count("a") == 1
    assert sources.count("b") > sources.count("c")


def test_merge_stops_when_everything_is_used() -> None:
    items, _, _ = merge({"a": cands([1, 2]), "b": cands([2, 3])}, {"a": 0.5, "b": 0.5}, 10)
    assert sorted(items) == [1, 2, 3]


def test_merge_falls_back_on_popularity_only_when_sources_run_dry() -> None:
    lists = {"a": cands([1, 2, 3])}
    items, _, sources = merge(lists, {"a": 0.5}, 2, fallback=cands([9, 8]))
    assert items == [1, 2] and sources == ["a", "a"]
    items, _, sources = merge(lists, {"a": 0.5}, 5, fallback=cands([9, 1, 8]))
    assert items == [1, 2, 3, 9, 8] and sources[3:] == ["popularity", "popularity"]


# ---------------------------------------------------------------------------------------------
# Neighbourhood formula with baseline biases


def test_baselines_match_hand_computation() -> None:
    w = sp.csr_matrix(np.array([[4.0, 0.0], [2.0, 2.0]]))
    mu, bu, bi = baselines(w, reg=0.0, iterations=1)
    assert mu == pytest.approx(8.0 / 3.0)
    # one pass: b_i from mu, then b_u from mu + b_i
    assert bi.tolist() == pytest.approx([3.0 - mu, 2.0 - mu])
    assert bu.tolist() == pytest.approx([4.0 - mu - bi[0], ((2 - mu - bi[0]) + (2 - mu - bi[1])) / 2])


def _tiny_neighbourhood(scoring: str) -> tuple[Neighbourhood, CandidateParams]:
    r = np.array([[3.0, 1.0, 0.0], [2.0, 0.0, 4.0], [0.0, 1.0, 5.0]], dtype=np.float32)
    w = sp.csr_matrix(r)
    obs = (w != 0).astype(np.float32).tocsr()
    s_item = sp.csr_matrix(np.array([[0, 0.5, 0.2], [0.5, 0, 0.1], [0.2, 0.1, 0]], dtype=np.float32))
    s_user = sp.csr_matrix(np.array([[0, 0.3, 0.0], [0.3, 0, 0.6], [0.0, 0.6, 0]], dtype=np.float32))
    mu, bu, bi = baselines(w, reg=1.0)
    coo = w.tocoo()
    res = sp.csr_matrix((coo.data - mu - bu[coo.row] - bi[coo.col], (coo.row, coo.col)), shape=w.shape, dtype=np.float32)
    nb = Neighbourhood(mu, bu.astype(np.float32), bi.astype(np.float32), res, obs, w, s_item, s_user)
    return nb, dataclasses.replace(PARAMS, knn_scoring=scoring, knn_shrinkage=0.5)


def test_item_knn_normalised_formula() -> None:
    nb, p = _tiny_neighbourhood("normalised")
    got = nb.item_scores(np.array([0]), p)[0]
    # user 0 rated items 0 and 1; candidate item 2 has neighbours 0 (s=.2) and 1 (s=.1)
    res = nb.residual.toarray()[0]
    expect = nb.mu + nb.b_user[0] + nb.b_item[2] + (0.2 * res[0] + 0.1 * res[1]) / (0.3 + 0.5)
    assert got[2] == pytest.approx(expect, rel=1e-5)


def test_item_knn_global_formula_and_support() -> None:
    nb, p = _tiny_neighbourhood("global")
    got = nb.item_scores(np.array([0]), p)[0]
    res = nb.residual.toarray()[0]
    expect = nb.mu + nb.b_user[0] + nb.b_item[2] + ((0.2 * res[0] + 0.1 * res[1]) + (0.2 + 0.1)) / np.sqrt(2)
    assert got[2] == pytest.approx(expect, rel=1e-5)


def test_user_knn_formula_and_no_neighbour_means_no_candidate() -> None:
    nb, p = _tiny_neighbourhood("normalised")
    got = nb.user_scores(np.array([0]), p)[0]
    res = nb.residual.toarray()
    # user 0's only neighbour is user 1 (s=.3), who rated item 2
    expect = nb.mu + nb.b_user[0] + nb.b_item[2] + 0.3 * res[1, 2] / (0.3 + 0.5)
    assert got[2] == pytest.approx(expect, rel=1e-5)
    # item 1: user 1 did not rate it -> no neighbour, not a candidate
    assert got[1] == -np.inf


# ---------------------------------------------------------------------------------------------
# FAISS index


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, d))
    x = centres[rng.integers(20, size=n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", INDEX_TYPES)
def test_index_types_add_without_rebuild_and_round_trip(kind: str, tmp_path: Path) -> None:
    x = clustered(3000, 32)
    ids = [f"c{i}" for i in range(len(x))]
    p = dataclasses.replace(INDEX, type=kind, nprobe=8, pq_m=8)
    index = ContentIndex.build(x[:2900], ids[:2900], p)
    v1 = index.version()
    assert index.ntotal == 2900
    new_ids = index.add(ids[2900:], x[2900:])
    assert new_ids.tolist() == list(range(2900, 3000)) and index.ntotal == 3000
    assert index.version() != v1
    _, got = index.search(x[2950:2951], 5)
    assert 2950 in got[0]  # a new upload is found right away
    with pytest.raises(ValueError):
        index.add(["c0"], x[:1])
    out = index.save(tmp_path / "faiss")
    assert out.name == index.version() and (tmp_path / "faiss" / "LATEST").read_text().strip() == out.name
    back = ContentIndex.load(tmp_path / "faiss")
    np.testing.assert_array_equal(back.search(x[:10], 20)[1], index.search(x[:10], 20)[1])
    assert back.content_ids == ids
    recall = index_recall(index, x, x[:50], (10, 100))
    floor = {"flat": 1.0, "hnsw": 0.9, "ivf": 0.8, "ivfpq": 0.6}[kind]  # PQ codes are lossy
    assert recall["recall@10"] >= floor and recall["recall@100"] >= floor


def test_index_build_is_reproducible() -> None:
    x = clustered(2000, 16)
    ids = [str(i) for i in range(len(x))]
    for kind in ("hnsw", "ivf"):
        p = dataclasses.replace(INDEX, type=kind)
        assert ContentIndex.build(x, ids, p).version() == ContentIndex.build(x, ids, p).version()


def test_index_params_validation() -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(INDEX, type="annoy")
    assert auto_nlist(100) == 2 and auto_nlist(1_000_000) == 4000
    assert pq_subquantizers(100, 16) == 10


# ---------------------------------------------------------------------------------------------
# Params


def test_candidate_params_overrides_and_validation() -> None:
    params = project_params(
        base={"seed": 3},
        data={"source": "movielens"},
        candidates={
            "alpha": 0.3,
            "knn": {"k": 7},
            "fresh": {"max_age_hours": 10},
            "overrides": {"movielens": {"fresh": {"max_age_hours": 99}, "evaluation": {"positive_types": ["like"]}}},
            "evaluation": {"ks": [10, 20]},
        },
    )
    p = CandidateParams.from_params(params)
    assert (p.alpha, p.knn_k, p.fresh_max_age_hours, p.seed, p.index.seed) == (0.3, 7, 99, 3, 3)
    assert CandidateParams.from_params(params, "kuairand").fresh_max_age_hours == 10
    ev = EvalParams.from_params(params)
    assert ev.positive_types == ("like",) and ev.ks == (10, 20)
    for bad in ({"alpha": 1.5}, {"mix": {"nope": 0.1}}, {"mix": {"mf": 0.8, "graph": 0.5}}, {"knn_scoring": "x"}):
        with pytest.raises(ValueError):
            dataclasses.replace(PARAMS, **bad)


def test_candidate_params_mix_is_the_params_file_one() -> None:
    """No code default stands in for ``candidates.mix``: every source params.yaml lists runs."""
    p = CandidateParams.from_params(project_params())
    assert dict(p.mix) == dict(load_params()["candidates"]["mix"]) and len(p.mix) == 11


# ---------------------------------------------------------------------------------------------
# Sources on a world


def test_every_source_returns_content_score_source_and_excludes_seen(
    retriever: Retriever, world: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    ev = world[0]
    user = "u_gaming_0"
    seen = set(ev.loc[ev["user_id"] == user, "content_id"])
    assert {"gaming_13", "gaming_14"} <= seen  # hidden and reported
    for source in SOURCES:
        frame = retriever.source_frame(user, source)
        assert list(frame.columns) == ["content_id", "score", "source"]
        assert (frame["source"] == source).all()
        assert not set(frame["content_id"]) & seen, source
        assert frame["score"].is_monotonic_decreasing, source
    merged = retriever.retrieve(user, 30)
    assert len(merged) == 30 and merged["content_id"].is_unique
    assert not set(merged["content_id"]) & seen
    assert set(merged["source"]) <= set(SOURCES)


def test_content_source_applies_the_similarity_threshold(retriever: Retriever) -> None:
    frame = retriever.source_frame("u_music_1", "content")
    assert len(frame) and (frame["score"] >= PARAMS.similarity_threshold).all()
    strict = dataclasses.replace(retriever, p=dataclasses.replace(PARAMS, similarity_threshold=0.99))
    assert len(strict.source_frame("u_music_1", "content")) < len(frame)


def test_personalised_sources_match_the_users_interest(retriever: Retriever) -> None:
    for source in ("content", "item_knn", "user_knn", "hybrid", "mf", "graph"):
        top = retriever.source_frame("u_cooking_2", source, 5)["content_id"]
        assert top.str.startswith("cooking").mean() >= 0.8, (source, top.tolist())


def test_hybrid_is_alpha_mix_of_normalised_scores(retriever: Retriever) -> None:
    rows = retriever.user_rows(["u_travel_3"])
    parts = {s: getattr(retriever, s)(rows, 50) for s in ("content", "item_knn", "user_knn")}
    hyb = retriever.hybrid(rows, 50, parts)[0]
    item = int(hyb.items[0])
    expect = 0.0
    for s, w in (("content", 0.5), ("item_knn", 0.25), ("user_knn", 0.25)):
        c = parts[s][0]
        hit = np.flatnonzero(c.items == item)
        if len(hit):
            expect += w * float(minmax(c.scores)[hit[0]])
    assert hyb.scores[0] == pytest.approx(expect, rel=1e-5)


def test_followed_creators_profile_then_events() -> None:
    users = pd.DataFrame({"user_id": ["a", "b"], "creators_followed": [["x", "y"], None]})
    ev = events_frame(
        [
            {"type": "unfollow", "user": "a", "creator": "x", "t": 1},
            {"type": "follow", "user": "b", "creator": "z", "t": 2},
            {"type": "follow", "user": "b", "creator": "w", "t": 3},
            {"type": "unfollow", "user": "b", "creator": "w", "t": 4},
        ]
    )
    assert followed_creators(users, ev) == {"a": {"y"}, "b": {"z"}}
    unknown = events_frame([{"type": "follow", "user": "c", "creator": "unknown", "t": 1}])
    assert followed_creators(users, unknown) == {"a": {"x", "y"}}  # the "no creator" sentinel


def test_followed_source_returns_followed_creators_newest_first(retriever: Retriever) -> None:
    frame = retriever.source_frame("u_music_0", "followed")
    creators = retriever.items.set_index("content_id").loc[frame["content_id"], "creator_id"]
    assert len(frame) and (creators == "cr_travel_1").all()


def test_trending_is_engagement_growth() -> None:
    rows = []
    for i in range(6):  # x: 6 likes in the last day, 2 the day before; y: 3 vs 3
        rows.append({"type": "like", "user": f"a{i}", "content": "x", "t": 30 + i})
    for i in range(2):
        rows.append({"type": "like", "user": f"b{i}", "content": "x", "t": 10 + i})
    for i in range(3):
        rows.append({"type": "like", "user": f"c{i}", "content": "y", "t": 30 + i})
        rows.append({"type": "like", "user": f"d{i}", "content": "y", "t": 10 + i})
    rows.append({"type": "like", "user": "e", "content": "z", "t": 40})  # too few
    ev = events_frame(rows)
    got = trending_scores(ev, np.array(["x", "y", "z"], dtype=object), T0 + pd.Timedelta(hours=48), PARAMS)
    assert got.items.tolist() == [0, 1]
    assert got.scores.tolist() == pytest.approx([2.0, 0.0])


def test_fresh_source_only_recent_uploads(world: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    ev, content, users = world
    content = content.copy()
    content.loc[content["content_id"] == "music_03", "upload_timestamp"] = NOW - pd.Timedelta(hours=5)
    model, _ = fit_embeddings(ev, content, SMALL, now=NOW)
    r = Retriever.fit(model, ev, content, users, NOW, PARAMS, SMALL)
    frame = r.source_frame("u_travel_0", "fresh")
    assert frame["content_id"].tolist() == ["music_03"]


# ---------------------------------------------------------------------------------------------
# Cold start


def test_cold_start_upload_after_training_is_retrievable(retriever: Retriever) -> None:
    """A new upload with metadata and no interactions reaches users whose interests match it."""
    r = dataclasses.replace(retriever, items=retriever.items.copy())
    r.index = ContentIndex(  # a private copy of the index, so the module fixture stays intact
        _faiss().clone_index(retriever.index.index), list(retriever.index.content_ids), retriever.index.p
    )
    upload = pd.DataFrame(
        [
            content_row("brand_new_gaming", "gaming", creator="cr_new", hours=5 * 24 - 1),
            content_row("brand_new_cooking", "cooking", creator="cr_new", hours=5 * 24 - 1),
        ]
    )
    before = r.index.ntotal
    r.add_content(upload)
    assert r.index.ntotal == before + 2  # added, not rebuilt
    gamer = r.source_frame("u_gaming_5", "content")
    assert "brand_new_gaming" in gamer["content_id"].head(10).tolist()
    assert "brand_new_cooking" not in gamer["content_id"].tolist()
    cook = r.retrieve("u_cooking_4", 30)
    assert "brand_new_cooking" in cook["content_id"].tolist()
    # the fresh source shows both new uploads, the matching one first
    assert r.source_frame("u_cooking_4", "fresh")["content_id"].tolist() == ["brand_new_cooking", "brand_new_gaming"]


def test_user_without_events_gets_candidates_from_declared_interests(retriever: Retriever) -> None:
    r = dataclasses.replace(retriever, preferred={**retriever.preferred, "newcomer": ["travel"]})
    frame = r.source_frame("newcomer", "content", 10)
    assert len(frame) and frame["content_id"].str.startswith("travel").all()
    merged = r.retrieve("newcomer", 20)
    assert len(merged) == 20  # content-based first, then what is popular (recently or overall)
    assert merged["source"].iloc[0] in ("content", "hybrid") and {"recent", "popularity"} & set(merged["source"])


# ---------------------------------------------------------------------------------------------
# Hold-out evaluation


def test_hold_out_split_and_recall(world: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    ev, content, users = world
    ev_p = EvalParams.from_params(project_params(candidates={"evaluation": {"cut_quantile": 0.7, "ks": [5, 20], "positive_types": ["like"]}}))
    split = hold_out(ev, content, ev_p)
    train_pairs = set(zip(split.train["user_id"], split.train["content_id"], strict=True))
    assert (split.train["timestamp"] < split.cut).all()
    for u, items in split.truth.items():
        assert not {(u, c) for c in items} & train_pairs
    res = evaluate(ev, content, users, SMALL, PARAMS, ev_p)
    assert res["test_users"] == len(split.truth) > 0
    assert set(res["recall"]) == {*SOURCES, "merged", "popularity"}
    assert res["recall"]["merged"]["@20"] > res["recall"]["popularity"]["@20"]
    assert res["index"]["type"] == "hnsw" and res["index"]["recall@100"] > 0.9


# ---------------------------------------------------------------------------------------------
# EASE and pair features (the ranker's retrieval features)


def test_ease_matches_the_closed_form() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float32))
    lam = 2.0
    gram = (x.T @ x).toarray().astype(np.float64) + lam * np.eye(4)
    p = np.linalg.inv(gram)
    expected = np.eye(4) - p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    got = fit_ease(x * 3.0, lam)  # weights are binarised first
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(np.diag(got) == 0)


def test_sequence_gram_counts_pairs_within_the_window_of_each_users_history() -> None:
    # user 0 consumed items 0, 1, 2, 3 in that order (given out of order), user 1 items 3 then 0
    user = np.array([0, 0, 0, 0, 1, 1])
    item = np.array([2, 0, 3, 1, 0, 3])
    time = np.array([30, 10, 40, 20, 60, 50])
    g = sequence_gram(user, item, time, 4, window=1).toarray()
    expected = np.zeros((4, 4))
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 0)]:  # neighbours in time, never across users
        expected[a, b] += 1
        expected[b, a] += 1
    np.fill_diagonal(expected, [2, 1, 1, 2])  # each item's count, as in X'X
    np.testing.assert_array_equal(g, expected)
    # a window as long as the history counts every pair of a user once: X'X itself
    x = sp.csr_matrix((np.ones(6), (user, item)), shape=(2, 4))
    np.testing.assert_array_equal(sequence_gram(user, item, time, 4, window=3).toarray(), (x.T @ x).toarray())


def test_ease_with_a_sequence_window_adds_the_weighted_pairs_to_the_gram_matrix() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float32))
    seq = sp.csr_matrix(np.array([[3, 1, 0, 0], [1, 3, 2, 0], [0, 2, 4, 1], [0, 0, 1, 2]], dtype=np.float32))
    lam, w = 2.0, 0.5
    p = np.linalg.inv((x.T @ x).toarray() + w * seq.toarray() + lam * np.eye(4))
    expected = np.eye(4) - p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(fit_ease(x, lam, seq, w), expected, atol=1e-5)
    assert not np.allclose(fit_ease(x, lam, seq, w), fit_ease(x, lam), atol=1e-3)
    np.testing.assert_array_equal(fit_ease(x, lam, seq, 0.0), fit_ease(x, lam))
    # off-diagonal pairs without their diagonal can make the Gram matrix indefinite at a small
    # lambda: still the closed form (a general inverse), not a Cholesky failure
    far = sp.csr_matrix(np.array([[0, 9, 0, 0], [9, 0, 0, 0], [0, 0, 0, 9], [0, 0, 9, 0]], dtype=np.float32))
    g = (x.T @ x).toarray() + far.toarray() + 0.1 * np.eye(4)
    assert np.linalg.eigvalsh(g).min() < 0
    p = np.linalg.inv(g)
    expected = np.eye(4) - p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(fit_ease(x, 0.1, far, 1.0), expected, atol=1e-4)


def test_the_ease_source_counts_the_sequence_window_and_the_report_keeps_plain_ease_beside_it(
    world: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> None:
    ev, content, users = world
    model, _ = fit_embeddings(ev, content, SMALL, now=NOW)
    plain = Retriever.fit(model, ev, content, users, NOW, PARAMS, SMALL)
    windowed = Retriever.fit(model, ev, content, users, NOW, dataclasses.replace(PARAMS, ease_window=2, ease_window_weight=1.0), SMALL)
    assert plain.ease_seq is None and windowed.ease_seq is not None
    assert plain.ease_b is not None and windowed.ease_b is not None
    np.testing.assert_allclose(windowed.ease_b, fit_ease(windowed.inter.positive(), PARAMS.ease_lambda, windowed.ease_seq, 1.0))
    assert not np.allclose(windowed.ease_b, plain.ease_b, atol=1e-4)
    who = ["u_gaming_0", "u_music_0"]
    none = pd.DataFrame({"user_id": [], "content_id": [], "rank": []})
    got = baseline_lists(windowed, who, 10, none)
    assert got["ease_plain"] == baseline_lists(plain, who, 10, none)["ease"]
    ids = windowed.index.content_ids
    assert got["ease"] == {u: [ids[int(i)] for i in c.items[:10]] for u, c in zip(who, windowed.ease(windowed.user_rows(who), 10), strict=True)}
    assert "ease_plain" not in baseline_lists(plain, who, 10, none)


def test_ease_source_is_off_for_large_catalogues(world: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    ev, content, users = world
    model, _ = fit_embeddings(ev, content, SMALL, now=NOW)
    small = Retriever.fit(model, ev, content, users, NOW, dataclasses.replace(PARAMS, ease_max_items=5), SMALL)
    assert small.ease_b is None
    assert all(len(c.items) == 0 for c in small.ease(small.user_rows(["u_gaming_0"]), 10))
    assert np.isnan(small.pair_features(["u_gaming_0"], ["gaming_01"])["score_ease"]).all()


def test_pair_features_are_the_dense_scores_for_any_pair(retriever: Retriever) -> None:
    users = ["u_gaming_0", "u_music_0", "u_gaming_0", "nobody"]
    contents = ["gaming_01", "music_02", "travel_03", "gaming_01"]
    f = retriever.pair_features(users, contents)
    assert len(f) == 4
    rows = retriever.user_rows(["u_gaming_0"])
    pos = retriever.index.content_ids.index("travel_03")
    for source in PAIR_SOURCES:
        dense = retriever.dense_scores(rows, source)[0]
        expected = dense[pos]
        got = f[f"score_{source}"].iloc[2]
        assert (np.isnan(expected) and np.isnan(got)) or got == pytest.approx(expected, rel=1e-5), source
        if np.isfinite(expected):
            z = (expected - np.nanmean(dense)) / np.nanstd(dense)
            assert f[f"z_{source}"].iloc[2] == pytest.approx(z, rel=1e-4, abs=1e-5)
    # the same pair gets the same features alone or among others (no dependence on the batch)
    alone = retriever.pair_features(["u_gaming_0"], ["travel_03"])
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), f.iloc[[2]].reset_index(drop=True))
    # an unknown user has no collaborative scores
    assert np.isnan(f["score_mf"].iloc[3]) and np.isnan(f["score_item_knn"].iloc[3])


def test_item_activity_windows_and_rates() -> None:
    t = T0 + pd.Timedelta(days=3)
    ev = events_frame(
        [
            {"type": "view", "user": "a", "content": "c1", "t": 0},
            {"type": "like", "user": "a", "content": "c1", "t": 0.1},
            {"type": "view", "user": "b", "content": "c1", "t": 70},
            {"type": "like", "user": "b", "content": "c1", "t": 71.5},
            {"type": "view", "user": "b", "content": "c2", "t": 71},
            {"type": "like", "user": "b", "content": "c2", "t": 80},  # after "now": ignored
        ]
    )
    act = item_activity(ev, np.array(["c1", "c2", "c3"], dtype=object), t, [6, 72])
    assert act["eng_6h"].tolist() == [1, 0, 0]  # the like at 71.5 h, 0.5 h before now
    assert act["eng_72h"].tolist() == [2, 0, 0]
    assert act["interactions"].tolist() == [4, 1, 0]
    assert act["like_rate"].iloc[0] == pytest.approx((2 + 1) / (2 + 2))
    assert act["like_rate"].iloc[1] == pytest.approx(1 / 3)
    assert act["hours_since_first"].iloc[0] == pytest.approx(72.0)
    assert act["hours_since_last"].iloc[0] == pytest.approx(0.5)
    assert np.isnan(act["hours_since_first"].iloc[2])
