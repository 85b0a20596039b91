"""Exploration slots (ε-greedy, UCB) with propensities, and DPP diversity re-ranking."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest

from components.retrieval import exploration as X
from tests.fixtures.params import project_params

PROJECT = X.ExplorationParams.from_params(project_params())


def _explore(**changes: Any) -> X.ExplorationParams:
    """The project's exploration settings with ``changes``."""
    return dataclasses.replace(PROJECT, **changes)


RANKED = [f"c{i:03d}" for i in range(60)]
N_SLOTS = 10


def test_epsilon_share_of_exploration_slots_is_within_tolerance() -> None:
    p = _explore(epsilon=0.1)
    rng = np.random.default_rng(42)
    slots = [imp for _ in range(3000) for imp in X.explore_slate(RANKED, N_SLOTS, p, rng)]
    n = len(slots)
    share = sum(i.slot == "explore" for i in slots) / n
    sigma = math.sqrt(0.1 * 0.9 / n)
    assert n == 3000 * N_SLOTS
    assert abs(share - 0.1) < 4 * sigma, share  # binomial tolerance, ~0.007 here


def test_every_impression_carries_its_propensity() -> None:
    p = _explore(epsilon=0.1)
    rng = np.random.default_rng(1)
    pool = len(RANKED) - N_SLOTS
    for _ in range(200):
        slate = X.explore_slate(RANKED, N_SLOTS, p, rng, scores=np.linspace(1, 0, len(RANKED)).tolist())
        assert [i.position for i in slate] == list(range(N_SLOTS))
        assert len({i.content_id for i in slate}) == N_SLOTS
        for imp in slate:
            assert 0.0 < imp.propensity <= 1.0
            if imp.slot == "exploit":
                assert imp.propensity == pytest.approx(0.9)
            else:  # uniform over the pool contents not shown yet
                shown_before = sum(1 for j in slate[: imp.position] if j.slot == "explore")
                assert imp.propensity == pytest.approx(0.1 / (pool - shown_before))
            assert not math.isnan(imp.score)
    frame = X.impressions_frame(slate, request_id="r1")
    assert list(frame.columns) == ["content_id", "position", "slot", "propensity", "score", "request_id"]
    assert frame["propensity"].notna().all()


def test_logged_propensities_match_observed_frequencies() -> None:
    """The propensity is the real probability: empirical frequencies agree with it."""
    p = _explore(epsilon=0.1)
    rng = np.random.default_rng(7)
    first = Counter()
    logged: dict[str, float] = {}
    n = 20_000
    for _ in range(n):
        imp = X.explore_slate(RANKED[:6], 1, p, rng)[0]
        first[imp.content_id] += 1
        logged[imp.content_id] = imp.propensity
    assert logged["c000"] == pytest.approx(0.9)
    assert first["c000"] / n == pytest.approx(0.9, abs=4 * math.sqrt(0.09 / n))
    for c in RANKED[1:6]:
        assert logged[c] == pytest.approx(0.1 / 5)
        assert first[c] / n == pytest.approx(0.02, abs=4 * math.sqrt(0.02 * 0.98 / n))
    # IPS: the propensity-weighted count of any content estimates one "sure" impression
    assert sum(first[c] / logged[c] for c in first) / n == pytest.approx(6.0, rel=0.05)


def test_weighted_exploration_logs_the_weighted_propensity() -> None:
    """Weights (serving's share of exploration slots for uploads): a content's chance of the
    slot follows its weight, and the logged propensity is that chance."""
    p = _explore(epsilon=0.5)
    rng = np.random.default_rng(11)
    weights = {"c001": 0.5, "c002": 0.25, "c003": 0.25}  # one "upload" worth half the slots
    counts: Counter[str] = Counter()
    logged: dict[str, float] = {}
    n = 20_000
    for _ in range(n):
        imp = X.explore_slate(RANKED[:4], 1, p, rng, weights=weights)[0]
        counts[imp.content_id] += 1
        logged[imp.content_id] = imp.propensity
    for c, expected in (("c000", 0.5), ("c001", 0.25), ("c002", 0.125), ("c003", 0.125)):
        assert logged[c] == pytest.approx(expected)
        assert counts[c] / n == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / n))


def test_zero_weights_left_fall_back_to_uniform() -> None:
    p = _explore(epsilon=1.0)
    slate = X.explore_slate(RANKED[:5], 3, p, np.random.default_rng(3), pool=RANKED[1:5], weights={"c001": 1.0, "c002": 0.0, "c003": 0.0, "c004": 0.0})
    assert slate[0].content_id == "c001" and slate[0].propensity == pytest.approx(1.0)
    assert all(0 < i.propensity < 1 for i in slate[1:]) and slate[1].propensity == pytest.approx(1 / 3)


def test_epsilon_zero_and_one() -> None:
    rng = np.random.default_rng(0)
    greedy = X.explore_slate(RANKED, 5, _explore(epsilon=0.0), rng)
    assert [i.content_id for i in greedy] == RANKED[:5] and all(i.propensity == 1.0 for i in greedy)
    explore = X.explore_slate(RANKED, 5, _explore(epsilon=1.0), rng)
    assert all(i.slot == "explore" and i.content_id in RANKED[5:] for i in explore)


def test_empty_pool_means_no_exploration() -> None:
    rng = np.random.default_rng(0)
    slate = X.explore_slate(RANKED[:3], 3, _explore(epsilon=0.5), rng)
    assert [i.content_id for i in slate] == RANKED[:3] and all(i.propensity == 1.0 for i in slate)


# ---------------------------------------------------------------------------------------------
# UCB


def test_ucb_index_values() -> None:
    idx = X.ucb_index(np.array([0, 10, 100]), np.array([0, 5, 50]), c=1.0)
    total = 110
    assert idx[0] == np.inf
    assert idx[1] == pytest.approx(0.5 + math.sqrt(2 * math.log(total) / 10))
    assert idx[2] == pytest.approx(0.5 + math.sqrt(2 * math.log(total) / 100))
    with pytest.raises(ValueError):
        X.ucb_index(np.array([-1]), np.array([0]), c=1.0)


def test_ucb_favours_under_explored_contents() -> None:
    stats = {"shown_a_lot": (1000.0, 100.0), "shown_little": (10.0, 1.0), "never_shown": (0.0, 0.0)}
    idx = X.ucb_index(np.array([v[0] for v in stats.values()]), np.array([v[1] for v in stats.values()]), c=1.0)
    assert idx[2] > idx[1] > idx[0]  # same mean (0.1): fewer impressions, larger index
    p = _explore(epsilon=1.0, strategy="ucb")
    rng = np.random.default_rng(0)
    slate = X.explore_slate(["head", *stats], 3, p, rng, pool=list(stats), stats=stats)
    assert [i.content_id for i in slate] == ["never_shown", "shown_little", "shown_a_lot"]
    assert all(i.slot == "explore" and i.propensity == pytest.approx(1.0) for i in slate)


def test_ucb_slot_propensity_with_ties_and_epsilon() -> None:
    p = _explore(epsilon=0.1, strategy="ucb")
    rng = np.random.default_rng(3)
    seen = Counter()
    for _ in range(4000):
        slate = X.explore_slate(["top", "x", "y", "z"], 1, p, rng, stats={"z": (50.0, 5.0)})
        imp = slate[0]
        seen[imp.content_id] += 1
        if imp.content_id in ("x", "y"):  # never shown: tied at an infinite index
            assert imp.propensity == pytest.approx(0.05)
        else:
            assert imp.content_id == "top" and imp.propensity == pytest.approx(0.9)
    assert seen["z"] == 0


def test_bandit_stats_from_events() -> None:
    ev = pd.DataFrame(
        {
            "event_type": ["view", "like", "view", "skip", "view", "like", "like"],
            "user_id": ["a", "a", "b", "c", "a", "a", "b"],
            "content_id": ["x", "x", "x", "x", "y", "y", "z"],
        }
    )
    st = X.bandit_stats(ev).set_index("content_id")
    assert st.loc["x"].tolist() == [3, 1] and st.loc["y"].tolist() == [1, 1]
    assert st.loc["z"].tolist() == [0, 0]  # no exposure logged: reward not counted


def test_params_validation() -> None:
    p = X.ExplorationParams.from_params(project_params(exploration={"epsilon": 0.2, "strategy": "ucb"}))
    assert (p.epsilon, p.strategy) == (0.2, "ucb")
    for bad in ({"epsilon": 1.5}, {"strategy": "thompson"}, {"ucb_c": -1.0}, {"dpp_theta": 1.0}):
        with pytest.raises(ValueError):
            dataclasses.replace(p, **bad)


# ---------------------------------------------------------------------------------------------
# DPP


def near_duplicates(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five clusters of six near-duplicates; cluster 0 has the best scores, then 1, ..."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(16, 5)))[0].T  # orthonormal cluster directions
    vecs, scores = [], []
    for c in range(5):
        for _ in range(6):
            vecs.append(centres[c] + 0.02 * rng.normal(size=16))
            scores.append(0.95 - 0.04 * c + 0.01 * rng.random())
    return np.array(scores), np.array(vecs)


def test_dpp_diversifies_near_duplicates_at_bounded_score_loss() -> None:
    scores, vecs = near_duplicates()
    k = 5
    top = np.argsort(-scores)[:k]
    dpp = X.dpp_rerank(scores, vecs, k, theta=0.7)
    assert len(dpp) == k and len(set(dpp.tolist())) == k
    sim_top = X.mean_pairwise_similarity(vecs[top])
    sim_dpp = X.mean_pairwise_similarity(vecs[dpp])
    assert sim_top > 0.9  # the score order shows one cluster of near-duplicates
    assert sim_dpp < 0.1  # DPP picks one content from each cluster
    assert len({int(i) // 6 for i in dpp}) == 5
    loss = 1.0 - scores[dpp].sum() / scores[top].sum()
    assert 0.0 < loss < 0.15  # bounded loss of total score
    assert dpp[0] == int(np.argmax(scores))  # the best content still comes first


def test_dpp_theta_trades_relevance_for_diversity() -> None:
    scores, vecs = near_duplicates()
    sims, totals = [], []
    for theta in (0.0, 0.7, 0.99, 0.999):
        sel = X.dpp_rerank(scores, vecs, 5, theta=theta)
        sims.append(X.mean_pairwise_similarity(vecs[sel]))
        totals.append(scores[sel].sum())
    # more theta: more relevance, less diversity; near 1 it is the score order
    assert sims[0] < 0.05 and sims[1] < 0.05 and sims[1] < sims[2] < sims[3]
    assert totals[0] <= totals[1] < totals[2] < totals[3]
    assert totals[3] == pytest.approx(np.sort(scores)[-5:].sum())


def test_dpp_handles_exact_duplicates_and_small_inputs() -> None:
    vecs = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert X.dpp_rerank(scores, vecs, 4, theta=0.5).tolist() == [0, 3, 1, 2]  # dups follow by score
    assert X.dpp_rerank(scores, vecs, 0, theta=0.5).tolist() == []
    assert X.dpp_rerank(scores[:1], vecs[:1], 3, theta=0.5).tolist() == [0]
    with pytest.raises(ValueError):
        X.dpp_rerank(scores, vecs, 2, theta=1.0)
