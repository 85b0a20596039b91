"""Figures with their uncertainty: mean ± 95 % t-interval over the evaluation's repeats, and the
pipeline's lift over the best baseline with two intervals.

* Every metric of every model: the mean of its ``evaluate.repeats`` runs (seeds ``base.seed``,
  ``base.seed + 1``, ...) and the half-width of the two-sided 95 % Student-t interval of that
  mean (``t(0.975, n-1) · sd / √n``; 0 for a model that the seed does not move, e.g. EASE on a
  fixed time split).
* The lift ``NDCG(pipeline) / NDCG(best baseline) - 1``: a paired t-interval over the repeats
  (both measured on the same split in each repeat) and a paired bootstrap over the scored
  (repeat, user) units: resampling users with replacement, the lift of the resampled sums. The
  bootstrap carries the test users' sampling, which a fixed split's repeats do not.

SciPy gives the t quantile; the bootstrap is a few vectorised NumPy lines (no library needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

#: two-sided level of every interval
LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000


def t_half_width(values: Sequence[float]) -> float:
    """Half-width of the 95 % t-interval of the mean of ``values`` (0 with fewer than 2)."""
    x = np.asarray(values, dtype="float64")
    if len(x) < 2:
        return 0.0
    sd = float(np.std(x, ddof=1))
    return float(stats.t.ppf(0.5 + LEVEL / 2, len(x) - 1) * sd / np.sqrt(len(x)))


def aggregate_models(
    runs: Sequence[Mapping[str, Mapping[str, float | None]]],
) -> tuple[dict[str, dict[str, float | None]], dict[str, dict[str, float]]]:
    """(mean of every model's metrics over ``runs``, the half-widths of their intervals)."""
    means: dict[str, dict[str, float | None]] = {}
    halves: dict[str, dict[str, float]] = {}
    for name, first in runs[0].items():
        means[name], halves[name] = {}, {}
        for metric in first:
            vals = [r[name][metric] for r in runs if name in r]
            known = [float(v) for v in vals if v is not None]
            means[name][metric] = round(float(np.mean(known)), 6) if known else None
            halves[name][metric] = round(t_half_width(known), 6)
    return means, halves


def paired_lift(pipeline: Sequence[float], baseline: Sequence[float]) -> dict[str, float | None]:
    """The lift of the means and the 95 % t-interval of the per-repeat lifts."""
    p, b = np.asarray(pipeline, dtype="float64"), np.asarray(baseline, dtype="float64")
    if b.mean() <= 0 or (b <= 0).any():
        return {"mean": None, "low": None, "high": None}
    lifts = p / b - 1.0
    half = t_half_width(lifts)
    centre = float(lifts.mean())
    return {"mean": round(centre, 6), "low": round(centre - half, 6), "high": round(centre + half, 6)}


def bootstrap_lift(
    pipeline: Sequence[float], baseline: Sequence[float], seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, float | None]:
    """Paired bootstrap over units (per-user NDCG of both models on the same users): the
    2.5 and 97.5 percentiles of ``sum(pipeline) / sum(baseline) - 1``."""
    p, b = np.asarray(pipeline, dtype="float64"), np.asarray(baseline, dtype="float64")
    if len(p) == 0 or b.sum() <= 0:
        return {"low": None, "high": None}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(p), size=(resamples, len(p)))
    ps, bs = p[idx].sum(axis=1), b[idx].sum(axis=1)
    lifts = ps[bs > 0] / bs[bs > 0] - 1.0
    lo, hi = np.quantile(lifts, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return {"low": round(float(lo), 6), "high": round(float(hi), 6)}


def fmt(mean: float | None, half: float | None) -> str:
    """``0.1234 ± 0.0012`` (or ``n/a``)."""
    if mean is None:
        return "n/a"
    return f"{mean:.4f} ± {half:.4f}" if half else f"{mean:.4f}"


def lift_text(lift: Mapping[str, Any]) -> str:
    """The lift and its intervals for the report."""
    if lift.get("mean") is None:
        return "n/a"
    out = f"{lift['mean'] * 100:+.1f} %"
    if lift.get("low") is not None:
        out += f" (95 % paired t over repeats: {lift['low'] * 100:+.1f} … {lift['high'] * 100:+.1f} %"
        boot = lift.get("bootstrap", {})
        if boot.get("low") is not None:
            out += f"; paired bootstrap over users: {boot['low'] * 100:+.1f} … {boot['high'] * 100:+.1f} %"
        out += ")"
    return out
