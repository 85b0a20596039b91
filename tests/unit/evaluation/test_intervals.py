"""Intervals of the evaluation's figures (components/evaluation/intervals.py)."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation import intervals as I


def test_t_half_width_matches_the_textbook_value() -> None:
    # sd 1, n 3: t(0.975, 2) = 4.3027 -> 4.3027 / sqrt(3)
    assert I.t_half_width([1.0, 2.0, 3.0]) == pytest.approx(4.3027 / np.sqrt(3), rel=1e-4)
    assert I.t_half_width([5.0]) == 0.0
    assert I.t_half_width([2.0, 2.0, 2.0]) == 0.0


def test_aggregate_models_means_and_widths() -> None:
    runs = [{"a": {"ndcg@10": 0.1, "gini": None}}, {"a": {"ndcg@10": 0.3, "gini": None}}]
    means, halves = I.aggregate_models(runs)
    assert means["a"]["ndcg@10"] == pytest.approx(0.2) and means["a"]["gini"] is None
    assert halves["a"]["ndcg@10"] > 0.2  # two runs: a wide interval (t(0.975, 1) = 12.7)


def test_paired_lift_and_bootstrap_bracket_the_truth() -> None:
    lift = I.paired_lift([0.22, 0.24, 0.23], [0.2, 0.2, 0.2])
    assert lift["low"] < lift["mean"] < lift["high"] and lift["mean"] == pytest.approx(0.15)
    rng = np.random.default_rng(0)
    base = rng.random(500)
    boot = I.bootstrap_lift(base * 1.1, base, seed=1)
    assert boot["low"] == pytest.approx(0.1) and boot["high"] == pytest.approx(0.1)
    noisy = I.bootstrap_lift(base + rng.normal(0, 0.05, 500), base, seed=1)
    assert noisy["low"] < 0.0 < noisy["high"]
    assert I.paired_lift([0.1], [0.0])["mean"] is None
