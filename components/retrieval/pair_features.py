"""The pair-feature maths, once: shared by the batch retriever (training) and serving.

A pair feature describes one (user, content) pair whether or not a source retrieved it: each
pair source's raw score ``score_<source>`` (``PAIR_SOURCES``), its z-score over the user's
whole fitted catalogue ``z_<source>``, and the content's activity (``item_<column>``).

:class:`PairState` holds exactly the arrays these need (user and item vectors, the kNN
neighbourhood's sparse matrices and baselines, EASE's weights and binary feedback, the activity
matrix) and nothing that fitting needs. The batch :class:`~components.retrieval.retriever.Retriever`
builds one over its fitted members; serving builds one over the exported, memory-mapped arrays
(:mod:`components.serving.artifacts`). Both call the same :meth:`PairState.scores` and
:meth:`PairState.features_at`, so train and serve cannot drift apart.

This module imports numpy and scipy only (no fitting code, no pandas, no FAISS): serving may
import it. The kNN scoring (Koren's global neighbourhood model and its variants) is a few
sparse products; no library implements it, so it is written here.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: sources whose score is defined for every (user, content) pair, used as ranking features
PAIR_SOURCES: tuple[str, ...] = ("content", "item_knn", "user_knn", "mf", "graph", "ease")
KNN_SCORING: tuple[str, ...] = ("global", "normalised", "aggregate")
NEG_INF = np.float32(-np.inf)


def dense_columns(m: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
    """Dense ``m[:, cols]`` (columns in the given order, repeats allowed) at a cost that grows with
    ``m``'s stored entries, not its width: scipy's column indexing allocates the full width."""
    m = m.tocsr()
    uniq, inverse = np.unique(np.asarray(cols, dtype=np.int64), return_inverse=True)
    out = np.zeros((m.shape[0], len(uniq)), dtype=m.dtype)
    if m.nnz and len(uniq):
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        at = np.searchsorted(uniq, m.indices)
        hit = at < len(uniq)
        hit[hit] = uniq[at[hit]] == m.indices[hit]
        out[rows[hit], at[hit]] = m.data[hit]
    return out[:, inverse]


def minmax(x: np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1] (all ones when they do not spread): merging and the fallback list."""
    if len(x) == 0:
        return x.astype(np.float32)
    lo, hi = float(np.min(x)), float(np.max(x))
    return np.ones_like(x, dtype=np.float32) if hi - lo < 1e-12 else ((x - lo) / (hi - lo)).astype(np.float32)


def z_scores(vals: np.ndarray, mean: np.float32, sd: np.float32) -> np.ndarray:
    """z-scores in float32 arithmetic (the training features' exact values); NaN when the
    user's scores have no spread."""
    if np.isfinite(sd) and sd > 0:
        return ((vals - mean) / sd).astype(np.float32)
    return np.full(len(vals), np.nan, dtype=np.float32)


def normalisers(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a ``[users, catalogue]`` score matrix (NaN = undefined): mean and standard
    deviation of the defined scores, the ``z_<source>`` normalisers (NaN for an empty row)."""
    if not dense.size:
        empty = np.full(dense.shape[0], np.nan, dtype=np.float32)
        return empty, empty.copy()
    with warnings.catch_warnings():  # rows without any defined score: NaN, as wanted
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(dense, axis=1), np.nanstd(dense, axis=1)


@dataclass(frozen=True)
class KnnState:
    """What neighbourhood scoring reads: baselines ``b_ui = mu + b_u + b_i``, the observed pairs,
    their residuals ``r_ui - b_ui``, the item and user similarity lists, and the scoring rule."""

    mu: float
    b_user: np.ndarray  # float32 [users]
    b_item: np.ndarray  # float32 [items]
    residual: sp.csr_matrix  # users × items
    observed: sp.csr_matrix  # users × items, 1 on observed pairs
    item_sim: sp.csr_matrix  # items × items
    user_sim: sp.csr_matrix  # users × users
    scoring: str  # one of KNN_SCORING
    shrinkage: float

    def combine(
        self,
        rows: np.ndarray,
        num: np.ndarray,
        support: np.ndarray,
        implicit: np.ndarray,
        n_neigh: np.ndarray,
        cols: np.ndarray | None = None,
    ) -> np.ndarray:
        """The scoring rule over the neighbourhood sums (-inf without a neighbour)."""
        b_item = self.b_item if cols is None else self.b_item[cols]
        base = self.mu + self.b_user[rows][:, None] + b_item[None, :]
        if self.scoring == "aggregate":
            score = implicit
        elif self.scoring == "normalised":
            score = base + num / (support + self.shrinkage)
        else:  # global: Koren (2008) global neighbourhood model with w = c = s
            scale = 1.0 / np.sqrt(np.maximum(n_neigh, 1.0))[:, None]
            score = base + scale * (num + implicit)
        return np.where(support > 0, score, NEG_INF).astype(np.float32)

    def item_scores(self, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """Item-kNN scores of users ``rows`` over all contents, or only the contents at ``cols``."""
        obs = self.observed[rows]
        n_neigh = np.diff(obs.indptr).astype(np.float32)
        if cols is not None:
            # only the users' own contents matter: small dense products instead of sparse ones
            # whose format conversions walk the whole catalogue
            used = np.unique(obs.indices)
            s = dense_columns(self.item_sim[cols], used)
            o = dense_columns(obs, used)
            r = dense_columns(self.residual[rows], used)
            support = (o @ np.abs(s).T).astype(np.float32)
            num = (r @ s.T).astype(np.float32)
            implicit = (o @ s.T).astype(np.float32)
            return self.combine(rows, num, support, implicit, n_neigh, cols)
        sim = self.item_sim
        support = np.asarray((obs @ abs(sim).T).todense(), dtype=np.float32)
        num = np.asarray((self.residual[rows] @ sim.T).todense(), dtype=np.float32)
        implicit = np.asarray((obs @ sim.T).todense(), dtype=np.float32)
        return self.combine(rows, num, support, implicit, n_neigh, cols)

    def user_scores(self, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """User-kNN scores of users ``rows`` over all contents, or only the contents at ``cols``."""
        sim = self.user_sim[rows]
        n_neigh = np.diff(sim.indptr).astype(np.float32)
        if cols is not None:
            # only the neighbours' rows matter: small dense products (see item_scores)
            near = np.unique(sim.indices)
            w = dense_columns(sim, near)
            o = dense_columns(self.observed[near], cols)
            r = dense_columns(self.residual[near], cols)
            support = (np.abs(w) @ o).astype(np.float32)
            num = (w @ r).astype(np.float32)
            implicit = (w @ o).astype(np.float32)
            return self.combine(rows, num, support, implicit, n_neigh, cols)
        support = np.asarray((abs(sim) @ self.observed).todense(), dtype=np.float32)
        num = np.asarray((sim @ self.residual).todense(), dtype=np.float32)
        implicit = np.asarray((sim @ self.observed).todense(), dtype=np.float32)
        return self.combine(rows, num, support, implicit, n_neigh, cols)


@dataclass(frozen=True)
class PairState:
    """The arrays the pair features of a fitted catalogue of ``n_fit`` contents read."""

    user_mf: np.ndarray  # [users, d_mf]
    item_mf: np.ndarray  # [n_fit, d_mf]
    user_graph: np.ndarray  # [users, d_graph]
    item_graph: np.ndarray  # [n_fit, d_graph]
    item_unified: np.ndarray  # [>= n_fit, d]: the content vectors the ``content`` score uses
    knn: KnnState
    ease_b: np.ndarray | None  # [n_fit, n_fit] EASE weights (None: EASE off)
    ease_x: sp.csr_matrix | None  # users × items binary positive feedback (with ease_b)
    activity: np.ndarray | None  # float32 [n_fit, len(activity_columns)]
    activity_columns: Sequence[str]
    n_fit: int

    def _ease(self, rows: np.ndarray, cols: np.ndarray | None) -> np.ndarray:
        """EASE scores of known user rows over the fitted catalogue (or its contents ``cols``)."""
        assert self.ease_b is not None and self.ease_x is not None
        x = self.ease_x[rows]
        if cols is None:
            return np.asarray(x @ self.ease_b, dtype=np.float32)
        # only the rows of B the users' contents select: O(contents × cols), not O(catalogue × cols)
        used = np.unique(x.indices)
        return np.asarray(x[:, used] @ self.ease_b[np.ix_(used, cols)], dtype=np.float32)

    def scores(
        self, rows: np.ndarray, source: str, queries: np.ndarray, cols: np.ndarray | None = None
    ) -> np.ndarray:
        """One pair source's raw scores of user ``rows`` (-1: no training events) over the fitted
        catalogue, or over its contents at positions ``cols`` only. ``queries`` are the users'
        content-space profiles (the ``content`` source). NaN: undefined (unknown users, contents
        without a neighbour or a graph vector, EASE off)."""
        rows = np.asarray(rows, dtype=np.int64)
        n = self.n_fit if cols is None else len(cols)

        def at(a: np.ndarray) -> np.ndarray:
            return a[: self.n_fit] if cols is None else a[cols]

        if source == "content":
            out = (queries @ at(self.item_unified).T).astype(np.float32)
            out[np.linalg.norm(queries, axis=1) == 0] = np.nan
            return out
        if source == "ease" and self.ease_b is None:
            return np.full((len(rows), n), np.nan, dtype=np.float32)
        out = np.full((len(rows), n), NEG_INF, dtype=np.float32)
        known = rows >= 0
        if known.any():
            r = rows[known]
            if source == "item_knn":
                got = self.knn.item_scores(r, cols)
            elif source == "user_knn":
                got = self.knn.user_scores(r, cols)
            elif source == "mf":
                got = self.user_mf[r] @ at(self.item_mf).T
            elif source == "graph":
                g = at(self.item_graph)
                got = np.where((np.linalg.norm(g, axis=1) > 0)[None, :], self.user_graph[r] @ g.T, NEG_INF)
            elif source == "ease":
                got = self._ease(r, cols)
            else:
                raise KeyError(f"not a pair source: {source!r}")
            out[known] = got
        out[~np.isfinite(out)] = np.nan
        return out

    def activity_columns_at(self, pos: np.ndarray) -> dict[str, np.ndarray]:
        """The contents' activity (``item_<column>``) at catalogue positions ``pos`` (NaN for -1
        and for contents added after fitting)."""
        if self.activity is None:
            return {}
        act = self.activity
        ok = (pos >= 0) & (pos < len(act))
        got = np.full((len(pos), act.shape[1]), np.nan, dtype=np.float32)
        got[ok] = act[pos[ok]]
        return {f"item_{c}": got[:, j] for j, c in enumerate(self.activity_columns)}

    def features_at(
        self, row: int, query: np.ndarray, positions: np.ndarray, stats: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The pair features of one user (model row ``row``, -1 if none; content profile
        ``query``) and the contents at catalogue ``positions``, given the user's normalisers
        ``stats`` (``[len(PAIR_SOURCES), 2]``: mean, std): the values the batch computes over
        the whole catalogue, at a cost that grows with the number of contents. Positions
        outside the fitted catalogue (-1, contents added later) get NaN pair scores, but for
        the ``content`` score of contents added with a vector (uploads: from their metadata)."""
        pos = np.asarray(positions, dtype=np.int64)
        rows = np.array([row], dtype=np.int64)
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        out: dict[str, np.ndarray] = {}
        for j, s in enumerate(PAIR_SOURCES):
            vals = np.full(len(pos), np.nan, dtype=np.float32)
            fit = (pos >= 0) & (pos < (len(self.item_unified) if s == "content" else self.n_fit))
            cols = pos[fit]
            if len(cols):
                vals[fit] = self.scores(rows, s, q, cols)[0]
            out[f"score_{s}"] = vals
            out[f"z_{s}"] = z_scores(vals, stats[j, 0], stats[j, 1])
        out.update(self.activity_columns_at(pos))
        return out

    def stats(self, rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """``[len(rows), len(PAIR_SOURCES), 2]`` float32 normalisers (mean, std per source over
        the whole fitted catalogue) of a batch of users."""
        out = np.full((len(rows), len(PAIR_SOURCES), 2), np.nan, dtype=np.float32)
        for j, s in enumerate(PAIR_SOURCES):
            mean, sd = normalisers(self.scores(rows, s, queries))
            out[:, j, 0] = mean
            out[:, j, 1] = sd
        return out


def feature_columns(activity_columns: Sequence[str]) -> list[str]:
    """Every column :meth:`PairState.features_at` returns, in its order."""
    return [f"{kind}_{s}" for s in PAIR_SOURCES for kind in ("score", "z")] + [
        f"item_{c}" for c in activity_columns
    ]


def as_csr(parts: Mapping[str, np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
    """A CSR matrix over existing ``data`` / ``indices`` / ``indptr`` arrays, without copying
    them (memory-mapped arrays stay mapped)."""
    m = sp.csr_matrix((parts["data"], parts["indices"], parts["indptr"]), shape=shape, copy=False)
    m.has_sorted_indices = True
    return m


__all__ = [
    "KNN_SCORING",
    "NEG_INF",
    "PAIR_SOURCES",
    "KnnState",
    "PairState",
    "as_csr",
    "dense_columns",
    "feature_columns",
    "minmax",
    "normalisers",
    "z_scores",
]
