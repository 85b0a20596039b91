"""Offline ranking metrics, defined once and used by every evaluation (pipeline and baselines).

Conventions (stated because published numbers differ on them):

* a recommendation list is ranked best first; only its first ``k`` items count, and a list
  shorter than ``k`` is scored as it is (no padding);
* relevance is binary: an item is relevant when it is in the user's test positives;
* ``precision@k`` divides the hits by ``k`` (not by the list length);
* ``recall@k`` divides the hits by the user's number of relevant items;
* ``MAP@k`` sums the precision at each hit within the first ``k`` and divides by the user's
  number of relevant items (the definition used by the MovieLens protocol in our issues);
* ``NDCG@k`` is binary: DCG = Σ 1/log2(rank + 1) over hits, normalised by the ideal DCG of
  ``min(k, n_relevant)`` hits;
* users without relevant items are left out of the averages (their recall is undefined) and
  counted separately;
* ties in scores are broken by item id (ascending), so rankings are deterministic.

Written by hand because these few lines are the protocol itself; library versions differ in
exactly the conventions above.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def rank_by_score(items: Sequence[Hashable], scores: Sequence[float] | np.ndarray, k: int) -> list[Hashable]:
    """The ``k`` best items by score, ties broken by item id (ascending)."""
    s = np.asarray(scores, dtype="float64")
    if len(items) != len(s):
        raise ValueError(f"{len(items)} items but {len(s)} scores")
    ids = np.asarray([str(i) for i in items])
    order = np.lexsort((ids, -s))  # last key is primary: score descending, then id
    return [items[i] for i in order[:k]]


@dataclass(frozen=True)
class UserMetrics:
    precision: float
    recall: float
    ndcg: float
    ap: float
    hit: float


def user_metrics(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> UserMetrics | None:
    """Metrics of one ranked list against one user's relevant items; None if nothing is relevant."""
    if k <= 0:
        raise ValueError("k must be positive")
    rel = set(relevant)
    if not rel:
        return None
    top = list(ranked)[:k]
    hits = np.array([item in rel for item in top], dtype=bool)
    n_hits = int(hits.sum())
    ranks = np.flatnonzero(hits) + 1  # 1-based positions of hits
    dcg = float(np.sum(1.0 / np.log2(ranks + 1)))
    ideal = float(np.sum(1.0 / np.log2(np.arange(1, min(k, len(rel)) + 1) + 1)))
    ap = float(np.sum(np.arange(1, n_hits + 1) / ranks)) / len(rel) if n_hits else 0.0
    return UserMetrics(
        precision=n_hits / k,
        recall=n_hits / len(rel),
        ndcg=dcg / ideal if ideal > 0 else 0.0,
        ap=ap,
        hit=1.0 if n_hits else 0.0,
    )


def ranking_metrics(
    recommendations: Mapping[Any, Sequence[Any]],
    relevant: Mapping[Any, Iterable[Any]],
    ks: Sequence[int] = (10, 50),
) -> dict[str, float]:
    """Mean precision/recall/NDCG/MAP/hit rate at each k over users with relevant items.

    Users in ``relevant`` without a recommendation list count as empty lists (all zeros).
    """
    out: dict[str, float] = {}
    users = [u for u, r in relevant.items() if set(r)]
    for k in ks:
        rows = [user_metrics(recommendations.get(u, []), relevant[u], k) for u in users]
        got = [r for r in rows if r is not None]
        for name in ("precision", "recall", "ndcg", "ap", "hit"):
            label = "map" if name == "ap" else ("hit_rate" if name == "hit" else name)
            out[f"{label}@{k}"] = float(np.mean([getattr(r, name) for r in got])) if got else 0.0
    out["users_evaluated"] = float(len(users))
    out["users_without_positives"] = float(len(relevant) - len(users))
    return out


def catalogue_coverage(recommendations: Mapping[Any, Sequence[Any]], catalogue_size: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    if catalogue_size <= 0:
        return 0.0
    shown = {i for items in recommendations.values() for i in items}
    return len(shown) / catalogue_size


def intra_list_diversity(items: Sequence[Hashable], vectors: Mapping[Hashable, np.ndarray]) -> float:
    """Mean pairwise cosine distance (1 − cosine) between the items of one list with vectors."""
    vs = [vectors[i] for i in items if i in vectors]
    if len(vs) < 2:
        return 0.0
    m = np.asarray(vs, dtype="float64")
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    m = m / np.where(norms > 0, norms, 1.0)
    sim = m @ m.T
    n = len(m)
    mean_sim = (sim.sum() - np.trace(sim)) / (n * (n - 1))
    return float(1.0 - mean_sim)


def novelty(recommendations: Mapping[Any, Sequence[Any]], popularity: Mapping[Any, int], n_users: int) -> float:
    """Mean self-information −log2(p(item)) of recommended items, p = share of users who had it.

    Items never seen in training get the popularity of one user (maximal novelty).
    """
    if n_users <= 0:
        return 0.0
    values = [
        -np.log2(max(popularity.get(i, 0), 1) / n_users) for items in recommendations.values() for i in items
    ]
    return float(np.mean(values)) if values else 0.0


def gini(counts: Sequence[float] | np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = equal exposure, → 1 = all on one)."""
    x = np.sort(np.asarray(counts, dtype="float64"))
    if len(x) == 0 or x.sum() == 0:
        return 0.0
    if np.any(x < 0):
        raise ValueError("gini needs non-negative counts")
    n = len(x)
    cum = np.cumsum(x)
    return float((n + 1 - 2 * np.sum(cum) / cum[-1]) / n)


def exposure_gini(
    recommendations: Mapping[Any, Sequence[Any]],
    creator_of: Mapping[Any, Any],
    creators: Iterable[Hashable] | None = None,
) -> float:
    """Gini of impressions across creators (creators never shown count as zero when listed)."""
    counts: dict[Hashable, int] = {c: 0 for c in (creators or [])}
    for items in recommendations.values():
        for i in items:
            c = creator_of.get(i)
            if c is not None:
                counts[c] = counts.get(c, 0) + 1
    return gini(list(counts.values()))
