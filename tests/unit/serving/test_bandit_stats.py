"""UCB exploration fed with per-item statistics from the event stream (ItemStats), and the
experiment arms' serving settings (ServingSettings.for_user)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd

from components.experiments.assign import experiment_arms
from components.retrieval.exploration import ExplorationParams, explore_slate, ucb_index
from components.serving.bandit import ItemStats
from components.serving.catalogue import Catalogue
from components.serving.rerank import Reranker
from components.serving.settings import ServingSettings
from tests.fixtures.params import project_config, project_params

SEED = project_config().base.seed


def events_for(spec: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """``{content: (exposures, positive users)}`` as stream events (a like per positive user,
    and a duplicate like that must not count twice)."""
    rows = []
    for c, (n, r) in spec.items():
        rows += [(f"u{i}", c, "view" if i % 3 else "skip") for i in range(n)]
        rows += [(f"u{i}", c, "like") for i in range(r)]
        rows += [(f"u{i}", c, "complete_view") for i in range(r)]  # same users: no extra reward
    return pd.DataFrame(rows, columns=["user_id", "content_id", "event_type"])


def test_item_stats_count_exposures_and_distinct_rewarded_users() -> None:
    st = ItemStats()
    st.observe(events_for({"a": (100, 50), "b": (10, 1)}))
    st.observe(
        pd.DataFrame({"user_id": ["u0"], "content_id": ["a"], "event_type": ["like"]})
    )  # again
    st.observe(
        pd.DataFrame({"user_id": ["x"], "content_id": ["c"], "event_type": ["like"]})
    )  # no exposure
    snap = st.snapshot(["a", "b", "c", "d"])
    assert snap == {"a": (100.0, 50.0), "b": (10.0, 1.0)}
    assert st.totals() == (2, 110)
    st.observe(pd.DataFrame({"user_id": ["x"], "content_id": ["c"], "event_type": ["view"]}))
    assert st.snapshot(["c"]) == {"c": (1.0, 1.0)}


def test_the_once_per_user_reward_memory_is_bounded() -> None:
    """A long stream of new users and contents keeps at most max_users x per_user pairs; a
    remembered pair never counts twice, a forgotten one counts again."""
    st = ItemStats(max_users=3, per_user=2)
    likes = pd.DataFrame(
        {"user_id": [f"u{i % 5}" for i in range(200)], "content_id": [f"c{i % 7}" for i in range(200)], "event_type": "like"}
    )
    st.observe(likes)
    users, pairs = st.remembered()
    assert users <= 3 and pairs <= 3 * 2
    # within the memory: the same like again does not count
    before = st._r.copy()
    last = likes.iloc[[-1]]
    st.observe(last)
    assert st._r == before
    # u0 was evicted (oldest user): its like of c0 counts again
    st.observe(pd.DataFrame({"user_id": ["u0"], "content_id": ["c0"], "event_type": ["like"]}))
    assert st._r["c0"] == before["c0"] + 1


def test_ucb_with_stream_stats_favours_high_mean_and_low_count_items() -> None:
    # hi: high mean, many shows; lo: low mean, many shows; few: fair mean, few shows; new: never shown
    st = ItemStats()
    st.observe(events_for({"hi": (200, 100), "lo": (200, 10), "few": (5, 2)}))
    stats = st.snapshot(["hi", "lo", "few", "new"])
    n = np.array([stats[c][0] for c in ("hi", "lo", "few")])
    r = np.array([stats[c][1] for c in ("hi", "lo", "few")])
    idx = ucb_index(n, r, 1.0)
    assert np.isfinite(idx).all() and idx[2] > idx[0] > idx[1]  # few > hi > lo
    ranked = ["top1", "top2", "hi", "lo", "few", "new"]
    ucb = ExplorationParams(epsilon=1.0, strategy="ucb", ucb_c=1.0, dpp_theta=0.5)
    rng = np.random.default_rng(SEED)
    picks = [i.content_id for i in explore_slate(ranked, 4, ucb, rng, pool=ranked[2:], stats=stats)]
    assert picks == ["new", "few", "hi", "lo"]  # unseen first, then by UCB index
    # without statistics every index is infinite: UCB degenerates to uniform picks
    first = {
        explore_slate(ranked, 1, ucb, np.random.default_rng(s), pool=ranked[2:])[0].content_id
        for s in range(40)
    }
    assert first == {"hi", "lo", "few", "new"}
    # with statistics and no unseen content, exploration is no longer uniform: the first pick
    # is always "few" (uniform would pick it in about 1/3 of 200 requests)
    uni = ExplorationParams(epsilon=1.0, strategy="uniform", ucb_c=1.0, dpp_theta=0.5)
    pool = ["hi", "lo", "few"]
    u_first = [
        explore_slate(pool, 1, uni, np.random.default_rng(s), pool=pool)[0].content_id
        for s in range(200)
    ]
    b_first = [
        explore_slate(pool, 1, ucb, np.random.default_rng(s), pool=pool, stats=stats)[0]
        for s in range(200)
    ]
    assert {b.content_id for b in b_first} == {"few"} and all(b.propensity == 1.0 for b in b_first)
    assert 40 < u_first.count("few") < 95


def test_experiment_arms_set_serving_keys_per_user() -> None:
    exp = {
        "name": "explore",
        "salt": "exp-explore",
        "control": "base",
        "arms": {
            "base": {"share": 0.5, "serving": {}},
            "ucb": {
                "share": 0.5,
                "serving": {"strategy": "ucb", "epsilon": 0.3, "trend_beta": 0.7},
            },
        },
    }
    params = project_params(experiments={"running": [exp]})
    s = ServingSettings.from_params(params)
    users = [f"u{i}" for i in range(50)]
    arms = experiment_arms(
        project_config(experiments={"running": [exp]}).experiments.running[0], users
    )
    for u, arm in zip(users, arms, strict=True):
        beta, explo = s.for_user(u)
        if arm == "ucb":
            assert (beta, explo.strategy, explo.epsilon) == (0.7, "ucb", 0.3)
        else:
            assert (beta, explo) == (s.trend_beta, s.exploration)
    plain = ServingSettings.from_params(project_params())
    assert plain.for_user("u1") == (plain.trend_beta, plain.exploration)


def rerank_fixture(n: int, settings: ServingSettings) -> tuple[Reranker, np.ndarray, np.ndarray]:
    """A Reranker over ``n`` contents with random unit vectors and no trending contents."""
    rng = np.random.default_rng(SEED)
    cids = np.array([f"c{i:03d}" for i in range(n)], dtype=object)
    art = SimpleNamespace(
        trending=SimpleNamespace(items=np.zeros(0, dtype=np.int64), scores=np.zeros(0)),
        item_vectors=rng.normal(size=(n, 8)).astype(np.float32),
    )
    stats = ItemStats()
    return Reranker(cast(Any, art), Catalogue(list(cids)), settings, stats), np.arange(n), cids


def test_rerank_explores_by_the_streamed_statistics() -> None:
    """The serving re-rank step hands the stream's per-item statistics to UCB: with every
    candidate shown and one rewarded far more often, an all-exploration slate starts with it;
    uniform exploration spreads over the pool."""
    base = ServingSettings.from_params(project_params())
    explo = dataclasses.replace(base.exploration, strategy="ucb", epsilon=1.0)
    rr, pos, cids = rerank_fixture(60, dataclasses.replace(base, exploration=explo))
    scores = np.linspace(1.0, 0.0, 60)
    target = str(cids[-1])  # the lowest score: in the exploration pool below the slate
    rows = [(f"u{i}", str(c), "view") for c in cids for i in range(50)]
    rows += [(f"u{i}", str(c), "like") for c in cids for i in range(40 if str(c) == target else 2)]
    assert rr.item_stats is not None
    rr.item_stats.observe(pd.DataFrame(rows, columns=["user_id", "content_id", "event_type"]))
    sources = np.array(["test"] * 60, dtype=object)
    items, chosen = rr.rerank(pos, cids, sources, scores, 5, "ucb-1", "u1")
    assert items[0].content_id == target and items[0].exploration and items[0].propensity == 1.0
    assert [cids[i] for i in chosen] == [it.content_id for it in items]
    uni, *_ = rerank_fixture(
        60, dataclasses.replace(base, exploration=dataclasses.replace(explo, strategy="uniform"))
    )
    firsts = {
        uni.rerank(pos, cids, sources, scores, 5, f"uni-{i}", "u1")[0][0].content_id
        for i in range(20)
    }
    assert len(firsts) > 5


def test_rerank_applies_the_users_experiment_arm() -> None:
    """An arm with epsilon 1 explores every slot for its users; the control arm's users keep
    params.yaml's epsilon (0.1: most slots exploit)."""
    exp = {
        "name": "eps",
        "salt": "exp-eps",
        "control": "base",
        "arms": {
            "base": {"share": 0.5, "serving": {}},
            "all": {"share": 0.5, "serving": {"epsilon": 1.0}},
        },
    }
    params = project_params(experiments={"running": [exp]})
    rr, pos, cids = rerank_fixture(60, ServingSettings.from_params(params))
    users = [f"u{i}" for i in range(40)]
    arms = experiment_arms(
        project_config(experiments={"running": [exp]}).experiments.running[0], users
    )
    sources = np.array(["test"] * 60, dtype=object)
    share = {"base": [], "all": []}  # type: dict[str, list[float]]
    for u, arm in zip(users, arms, strict=True):
        items, _ = rr.rerank(pos, cids, sources, np.linspace(1, 0, 60), 10, f"r-{u}", u)
        share[str(arm)].append(np.mean([it.exploration for it in items]))
    assert np.mean(share["all"]) == 1.0 and np.mean(share["base"]) < 0.4
