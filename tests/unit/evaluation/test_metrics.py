"""Metric functions against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from components.evaluation.metrics import (
    catalogue_coverage,
    exposure_gini,
    gini,
    intra_list_diversity,
    novelty,
    rank_by_score,
    ranking_metrics,
    user_metrics,
)


def test_user_metrics_hand_computed() -> None:
    # relevant = {a, c, x}; list a b c d, hits at ranks 1 and 3
    m = user_metrics(["a", "b", "c", "d"], {"a", "c", "x"}, k=4)
    assert m is not None
    assert m.precision == pytest.approx(2 / 4)
    assert m.recall == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg == pytest.approx(dcg / idcg)
    assert m.ap == pytest.approx((1 / 1 + 2 / 3) / 3)  # divided by |relevant|, not by hits
    assert m.hit == 1.0


def test_k_larger_than_list_is_not_padded() -> None:
    m = user_metrics(["a"], {"a", "b"}, k=10)
    assert m is not None
    assert m.precision == pytest.approx(1 / 10)
    assert m.recall == pytest.approx(1 / 2)
    idcg = 1 + 1 / math.log2(3)
    assert m.ndcg == pytest.approx(1 / idcg)


def test_only_first_k_count() -> None:
    m = user_metrics(["x", "y", "a"], {"a"}, k=2)
    assert m is not None and m.hit == 0.0 and m.ndcg == 0.0 and m.ap == 0.0


def test_user_without_positives_is_excluded() -> None:
    assert user_metrics(["a"], set(), k=5) is None
    out = ranking_metrics({"u1": ["a"], "u2": ["b"]}, {"u1": {"a"}, "u2": set()}, ks=(1,))
    assert out["precision@1"] == 1.0  # u2 does not drag the mean down
    assert out["users_evaluated"] == 1 and out["users_without_positives"] == 1


def test_missing_recommendations_count_as_empty() -> None:
    out = ranking_metrics({"u1": ["a"]}, {"u1": {"a"}, "u2": {"b"}}, ks=(1,))
    assert out["hit_rate@1"] == pytest.approx(0.5)


def test_ties_broken_by_item_id() -> None:
    assert rank_by_score(["c", "a", "b", "d"], [1.0, 1.0, 2.0, 0.5], k=3) == ["b", "a", "c"]
    with pytest.raises(ValueError):
        rank_by_score(["a"], [1.0, 2.0], k=1)


def test_coverage_novelty_diversity() -> None:
    recs = {"u1": ["a", "b"], "u2": ["b", "c"]}
    assert catalogue_coverage(recs, 6) == pytest.approx(3 / 6)
    pop = {"a": 4, "b": 2, "c": 1}
    expected = np.mean([-math.log2(4 / 4), -math.log2(2 / 4), -math.log2(2 / 4), -math.log2(1 / 4)])
    assert novelty(recs, pop, n_users=4) == pytest.approx(expected)
    vec = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([1.0, 0.0])}
    assert intra_list_diversity(["a", "b"], vec) == pytest.approx(1.0)
    assert intra_list_diversity(["a", "c"], vec) == pytest.approx(0.0)
    assert intra_list_diversity(["a"], vec) == 0.0


def test_gini() -> None:
    assert gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)  # (n-1)/n for all-on-one
    assert gini([1, 2, 3]) == pytest.approx(2 / 9)
    assert gini([]) == 0.0
    with pytest.raises(ValueError):
        gini([-1, 2])
    recs = {"u": ["a", "b", "c"]}
    creators = {"a": "c1", "b": "c1", "c": "c2"}
    assert exposure_gini(recs, creators, creators=["c1", "c2", "c3"]) == pytest.approx(gini([2, 1, 0]))
