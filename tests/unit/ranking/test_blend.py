"""The ranker against the best single source on validation (components/ranking/blend.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from components.ranking.blend import choose_blend
from components.ranking.train import _ndcg


def _groups(n_groups: int = 40, size: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    relevant = rng.random(n_groups * size) < 0.1
    sizes = np.full(n_groups, size)
    truth = relevant.astype(float) + rng.normal(0, 0.3, len(relevant))  # a good, not perfect, signal
    return relevant, sizes, truth


def test_a_ranker_worse_than_a_source_is_flagged_and_the_blend_leans_on_the_source(caplog: pytest.LogCaptureFixture) -> None:
    relevant, sizes, truth = _groups()
    rng = np.random.default_rng(1)
    ranker = rng.normal(size=len(relevant))  # noise
    X = np.column_stack([truth, rng.normal(size=len(relevant))])
    with caplog.at_level(logging.WARNING, logger="components.ranking.blend"):
        spec, fig = choose_blend(ranker, X, ["z_ease", "age"], relevant, sizes, 10, _ndcg)
    assert fig["ranker_beats_best_source"] is False and fig["best_source"] == "z_ease"
    assert "does NOT beat" in caplog.text
    assert spec is not None and spec.alpha >= 0.5
    assert fig["served_ndcg"] >= fig["best_source_ndcg"] - 1e-12  # α = 1 is on the grid
    served = spec.apply(ranker, X, ["z_ease", "age"])
    assert _ndcg(served, relevant, sizes, 10) == pytest.approx(fig["served_ndcg"])


def test_a_ranker_better_than_every_source_serves_alone() -> None:
    relevant, sizes, truth = _groups(seed=2)
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.normal(size=len(relevant))])
    spec, fig = choose_blend(truth, X, ["z_mf"], relevant, sizes, 10, _ndcg)
    assert fig["ranker_beats_best_source"] is True
    assert spec is None and fig["alpha"] == 0.0


def test_missing_source_values_take_the_lowest_score() -> None:
    relevant, sizes, truth = _groups(seed=4)
    X = np.column_stack([np.where(relevant, truth, np.nan)])
    spec, fig = choose_blend(np.zeros(len(relevant)), X, ["z_knn"], relevant, sizes, 10, _ndcg)
    assert spec is not None and np.isfinite(spec.apply(np.zeros(len(relevant)), X, ["z_knn"])).all()
    assert fig["best_source_ndcg"] > 0.95  # missing = the lowest known value: below (or tied with) every relevant one
