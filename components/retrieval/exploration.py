"""Exploration slots with logged propensities (ε-greedy, UCB) and DPP diversity re-ranking.

Exploration (:func:`explore_slate`)
    A slate is filled slot by slot. With probability ``1 - epsilon`` a slot exploits: it shows
    the best remaining content of the ranked list. With probability ``epsilon`` it explores: it
    shows a remaining content of the exploration pool (by default the ranked list below the
    slate), chosen uniformly (``strategy: uniform``, i.e. ε-greedy) or by the highest UCB1 index
    (``strategy: ucb``), ties broken uniformly. Every impression carries its propensity, the
    probability that this content was shown in this slot given the slots before it:
    ``(1 - epsilon) * [content is the exploit choice] + epsilon * pi_explore(content)``; the
    product over a slate is the slate's probability. Logged with the impression, it makes
    inverse-propensity (IPS / SNIPS) evaluation of another policy unbiased on every content the
    logging policy could show.

UCB1 (:func:`ucb_index`)
    ``mean_reward_i + c * sqrt(2 ln N / n_i)`` with ``n_i`` the content's impressions and ``N``
    all impressions of the pool; a content never shown has an infinite index, so it is explored
    first, and of two contents with the same mean the less-shown one ranks higher.

DPP (:func:`dpp_rerank`)
    Greedy MAP inference of a determinantal point process (Chen, Zhang & Zhou, NeurIPS 2018,
    incremental Cholesky, ``O(k n d)``) on the kernel ``L = diag(q) S diag(q)``, with ``S`` the
    cosine similarities of the content embeddings and quality ``q_i = exp(a r_i)``,
    ``a = theta / (2 (1 - theta))``. Then ``log det L_Y = theta/(1-theta) * sum r_i + log det S_Y``
    (up to the constant ``sum`` term), so ``dpp_theta`` trades relevance (towards 1) against
    diversity (0). When the remaining contents are (numerically) linear combinations of the
    chosen ones, the rest of the list follows the scores.

Hand-written: no maintained, installed library does propensity-logged slate exploration or
fast greedy DPP re-ranking (ReAgent and Vowpal Wabbit target other settings and are not
dependencies); both are short NumPy loops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.core.config import Params
from components.core.schema import EXPOSURE_TYPES, POSITIVE_TYPES

STRATEGIES: tuple[str, ...] = ("uniform", "ucb")


@dataclass(frozen=True)
class ExplorationParams:
    """The ``exploration`` section of params.yaml."""

    epsilon: float
    strategy: str
    ucb_c: float
    dpp_theta: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"exploration.epsilon must be in [0, 1], got {self.epsilon}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"exploration.strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.ucb_c < 0:
            raise ValueError("exploration.ucb_c must be >= 0")
        if not 0.0 <= self.dpp_theta < 1.0:
            raise ValueError("exploration.dpp_theta must be in [0, 1)")

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> ExplorationParams:
        return cls(**Params.of(params).exploration.model_dump())


@dataclass(frozen=True)
class Impression:
    """One shown content, with what the impression log needs for unbiased evaluation."""

    content_id: str
    position: int
    slot: str  # "exploit" | "explore"
    propensity: float  # P(this content in this slot | earlier slots) under the logging policy
    score: float  # ranking score (NaN when the content was not ranked)


# ---------------------------------------------------------------------------------------------
# UCB


def ucb_index(impressions: np.ndarray, rewards: np.ndarray, c: float, total: float | None = None) -> np.ndarray:
    """UCB1 index per content: mean reward + ``c sqrt(2 ln N / n)``; ``inf`` when never shown."""
    n = np.asarray(impressions, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    if np.any(n < 0) or np.any(r < 0):
        raise ValueError("impressions and rewards must be >= 0")
    big_n = float(total) if total is not None else float(n.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, r / n, 0.0)
        bonus = c * np.sqrt(2.0 * np.log(max(big_n, 1.0)) / n)
    return np.where(n > 0, mean + bonus, np.inf)


def bandit_stats(
    events: pd.DataFrame,
    exposure_types: Sequence[str] = EXPOSURE_TYPES,
    reward_types: Sequence[str] = POSITIVE_TYPES,
) -> pd.DataFrame:
    """Per content: impressions (views and skips) and rewards (distinct positive users per view)."""
    ev = events[events["content_id"].notna()]
    imp = ev[ev["event_type"].isin(list(exposure_types))].groupby("content_id", observed=True).size()
    rew = (
        ev[ev["event_type"].isin(list(reward_types))]
        .drop_duplicates(["user_id", "content_id"])
        .groupby("content_id", observed=True)
        .size()
    )
    out = pd.DataFrame({"impressions": imp, "rewards": rew}).fillna(0)
    out["rewards"] = np.minimum(out["rewards"], out["impressions"])  # a reward needs an exposure
    return out.astype("int64").rename_axis("content_id").reset_index()


# ---------------------------------------------------------------------------------------------
# Exploration slots


def _explore_probs(
    pool: list[str],
    p: ExplorationParams,
    stats: Mapping[str, tuple[float, float]] | None,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Probability of each remaining pool content being the exploration pick (uniform: in
    proportion to ``weights``, 1 for a content without one; equal when every weight left is 0)."""
    if p.strategy == "uniform" or not pool:
        if weights is None or not pool:
            return np.full(len(pool), 1.0 / max(len(pool), 1))
        w = np.array([weights.get(c, 1.0) for c in pool], dtype=np.float64)
        total = float(w.sum())
        return w / total if total > 0 else np.full(len(pool), 1.0 / len(pool))
    st = stats or {}
    n = np.array([st.get(c, (0.0, 0.0))[0] for c in pool], dtype=np.float64)
    r = np.array([st.get(c, (0.0, 0.0))[1] for c in pool], dtype=np.float64)
    idx = ucb_index(n, r, p.ucb_c)
    best = idx == np.max(idx)
    return best / best.sum()


def explore_slate(
    ranked: Sequence[str],
    n_slots: int,
    p: ExplorationParams,
    rng: np.random.Generator,
    pool: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    stats: Mapping[str, tuple[float, float]] | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[Impression]:
    """Fill ``n_slots`` from ``ranked`` with ε exploration; every impression has its propensity.

    ``pool`` defaults to the ranked contents below the slate; ``stats`` maps a content to
    ``(impressions, rewards)`` for UCB (missing contents count as never shown); ``weights``
    (uniform strategy) makes a content's chance of an exploration slot proportional to its
    weight (1 when missing), the propensities following.
    """
    ranked = [str(c) for c in ranked]
    score_of = dict(zip(ranked, scores, strict=True)) if scores is not None else {}
    pool_list = [str(c) for c in (pool if pool is not None else ranked[n_slots:])]
    shown: set[str] = set()
    out: list[Impression] = []
    r_pos = 0
    remaining = list(pool_list)  # the pool minus what was shown, in pool order
    for position in range(n_slots):
        while r_pos < len(ranked) and ranked[r_pos] in shown:
            r_pos += 1
        top = ranked[r_pos] if r_pos < len(ranked) else None
        eps = p.epsilon if remaining else 0.0
        if top is None and not remaining:
            break
        if top is None:
            eps = 1.0
        probs = _explore_probs(remaining, p, stats, weights)
        explore = bool(rng.random() < eps)
        choice = remaining[int(rng.choice(len(remaining), p=probs))] if explore else str(top)
        prop = (1.0 - eps) * (choice == top)
        if choice in remaining:
            prop += eps * float(probs[remaining.index(choice)])
        shown.add(choice)
        while choice in remaining:  # (a pool may repeat a content)
            remaining.remove(choice)
        out.append(
            Impression(
                content_id=choice,
                position=position,
                slot="explore" if explore else "exploit",
                propensity=float(prop),
                score=float(score_of.get(choice, np.nan)),
            )
        )
    return out


def impressions_frame(impressions: Sequence[Impression], **context: Any) -> pd.DataFrame:
    """Impressions as log rows (``content_id, position, slot, propensity, score`` + context)."""
    frame = pd.DataFrame([i.__dict__ for i in impressions], columns=list(Impression.__dataclass_fields__))
    for k, v in context.items():
        frame[k] = v
    return frame


# ---------------------------------------------------------------------------------------------
# DPP


def dpp_rerank(scores: np.ndarray, vectors: np.ndarray, k: int, theta: float, eps: float = 1e-10) -> np.ndarray:
    """Indices of ``k`` contents in DPP greedy-MAP order (see module doc)."""
    r = np.asarray(scores, dtype=np.float64)
    n = len(r)
    k = min(int(k), n)
    if not 0.0 <= theta < 1.0:
        raise ValueError("theta must be in [0, 1)")
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    f = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    a = theta / (2.0 * (1.0 - theta))
    q = np.exp(a * (r - r.max()))  # a common factor scales every det of a size alike
    diag_s = np.einsum("ij,ij->i", f, f)
    d2 = q * q * diag_s
    c = np.zeros((k, n))
    chosen: list[int] = []
    blocked = np.zeros(n, dtype=bool)
    j = int(np.argmax(np.where(d2 > eps, d2, -np.inf))) if np.any(d2 > eps) else -1
    while j >= 0 and len(chosen) < k:
        t = len(chosen)
        chosen.append(j)
        blocked[j] = True
        if len(chosen) == k:
            break
        lj = q[j] * q * (f @ f[j])
        e = (lj - c[:t].T @ c[:t, j]) / np.sqrt(d2[j])
        c[t] = e
        d2 = d2 - e * e
        cand = np.where(~blocked & (d2 > eps), d2, -np.inf)
        j = int(np.argmax(cand)) if np.isfinite(cand).any() else -1
    if len(chosen) < k:  # the rest adds no volume: continue by score
        rest = np.flatnonzero(~blocked)
        rest = rest[np.lexsort((rest, -r[rest]))]
        chosen.extend(rest[: k - len(chosen)].tolist())
    return np.asarray(chosen, dtype=np.int64)


def mean_pairwise_similarity(vectors: np.ndarray) -> float:
    """Mean cosine over distinct pairs (diversity measure of a list)."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) < 2:
        return 0.0
    f = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    s = f @ f.T
    n = len(x)
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))
