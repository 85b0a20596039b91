"""Embeddings: collaborative (ALS), graph (NetMF) and unified content vectors with cold start.

Interactions
    Every (user, content) pair gets a net engagement weight: the sum over the pair's events of
    ``event_weights[type]`` plus ``watch_ratio_weight * min(watch_ratio, watch_ratio_cap)`` for
    ``view`` events. Positive types (like, share, save, ...) add, negative ones (skip, hide,
    report) subtract, so a skipped video weighs less than a watched one and a hidden one
    becomes a dislike. ``content_upload`` events are supply, not interactions.

Collaborative embeddings — implicit's ALS (Hu, Koren & Volinsky 2008)
    Confidence ``1 + alpha * w`` for pairs with a positive net weight (preference 1) and
    ``1 + negative_alpha * |w|`` for net-negative pairs, which implicit treats as a dislike
    (preference 0) held with that confidence: negatives are down-weighted, not ignored. ALS, not
    BPR, because each ALS half-step solves every row independently, so the factors are identical
    for any thread count (implicit's BPR is Hogwild SGD and is not reproducible with threads).
    BLAS is pinned to one thread while fitting (implicit warns otherwise and oversubscribes).

Graph embeddings — NetMF (Qiu et al., WSDM 2018)
    DeepWalk with window ``T`` and ``b`` negative samples implicitly factorises
    ``M = vol(G) / (b T) * sum_{r=1..T} (D^-1 A)^r D^-1`` (the random-walk co-occurrence / PMI
    matrix). NetMF computes it on the bipartite user–content graph instead of sampling walks and
    training skip-gram: no gensim / PyTorch dependency, deterministic, and (per the NetMF paper)
    at least as accurate as DeepWalk on graphs of this size. ``sum_r (D^-1 A)^r D^-1`` is taken from a rank-``graph_rank``
    spectral approximation (NetMF's large-window variant); on a bipartite graph the eigenpairs
    of ``D^-1/2 A D^-1/2`` are the singular triplets of its user × content block, so one
    truncated SVD of that block suffices. ``log(max(M, 1))`` is built dense when small, else in
    sparse row blocks, and scikit-learn's randomized SVD gives ``M ~ U S V^T``; users get
    ``U sqrt(S)``, contents ``V sqrt(S)``, so a user·content dot product approximates their
    shifted PMI. ``M`` has ``(users + contents)^2`` entries, so graphs over ``graph_max_nodes``
    nodes keep the most connected users and contents; past that, sampled walks + skip-gram
    (gensim's Word2Vec, not a dependency) would be the way.

Unified content embedding (what the FAISS index holds)
    L2-normalised blocks, each scaled by ``sqrt(block_weights[block])`` and concatenated, then
    normalised again, so a cosine is a weighted mix of block cosines:
    collaborative (ALS item factor), text (TF-IDF of description + tags reduced by truncated
    SVD), category (one-hot; ``unknown`` is all zeros) and, when the data has them, visual and
    audio vectors. Blocks carrying no information (no text, a single category, no vectors) are
    left out. Cold start: a ridge regression (scikit-learn) maps content-side features (sparse
    TF-IDF, category, visual, audio) to the normalised ALS item factors of contents with enough
    interactions; a content with ``n`` interactions gets ``n / (n + cold_blend)`` of its own ALS
    vector and the rest from the ridge prediction, so a new upload with metadata only still lands
    next to the contents its audience watches. The fitted encoder is kept, so uploads after
    training are embedded with :meth:`ContentEncoder.embed` and added to the index without a
    rebuild.

User profile
    A user's vector in the unified space is the normalised positive-weighted sum of the unified
    vectors of the contents they engaged with, with the collaborative block replaced by the
    user's ALS factor; users without events fall back on their declared preferred categories.

``components.features.profile`` computes its TF-IDF + SVD text vectors in one fit-and-transform pass
and keeps no fitted vectoriser, so it cannot embed a content uploaded later; the encoder here
uses the same scikit-learn pieces but keeps them fitted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from components.core.catalog import DataPaths
from components.core.config import Params, stage_context, stage_parser
from components.core.frames import arrow_string_mapper
from components.core.io import atomic_write_json, write_metrics
from components.core.schema import BLOCKING_TYPES

log = logging.getLogger(__name__)

UNKNOWN = "unknown"

BLOCKS: tuple[str, ...] = ("collaborative", "text", "category", "visual", "audio")
#: Largest NetMF matrix (entries) built dense; bigger graphs use sparse row blocks.
DENSE_NETMF_MAX_ENTRIES = 120_000_000

EVENT_COLUMNS: tuple[str, ...] = (
    "event_type", "user_id", "content_id", "creator_id", "timestamp", "watch_ratio", "category",
)


@dataclass(frozen=True)
class EmbeddingParams:
    """The ``embeddings`` section of params.yaml (plus ``base.seed``)."""

    factors: int
    regularization: float
    alpha: float
    negative_alpha: float
    iterations: int
    threads: int
    event_weights: Mapping[str, float]
    watch_ratio_weight: float
    watch_ratio_cap: float
    graph_dim: int
    graph_window: int
    graph_negative: float
    graph_rank: int
    graph_max_nodes: int
    text_dim: int
    tfidf_max_features: int
    ridge_alpha: float
    cold_blend: float
    min_ridge_interactions: int
    block_weights: Mapping[str, float]
    seed: int

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1 or self.graph_dim < 1 or self.text_dim < 1:
            raise ValueError("embeddings: factors, iterations, graph_dim and text_dim must be >= 1")
        if self.alpha <= 0 or self.negative_alpha < 0 or self.regularization < 0:
            raise ValueError("embeddings: alpha > 0, negative_alpha >= 0, regularization >= 0")
        if self.graph_window < 1 or self.graph_negative <= 0 or self.graph_rank < 1:
            raise ValueError("embeddings: graph_window >= 1, graph_negative > 0, graph_rank >= 1")
        unknown = set(self.block_weights) - set(BLOCKS)
        if unknown or any(w < 0 for w in self.block_weights.values()):
            raise ValueError(f"embeddings.block_weights: blocks {BLOCKS}, weights >= 0 (got {dict(self.block_weights)})")

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> EmbeddingParams:
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.embeddings.model_dump())


# ---------------------------------------------------------------------------------------------
# Interactions


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


@dataclass(frozen=True)
class Interactions:
    """Users × contents matrices over fixed vocabularies (rows / columns sorted by id)."""

    user_ids: np.ndarray  # object, sorted
    item_ids: np.ndarray  # object, sorted: the catalogue
    weights: sp.csr_matrix  # float32 net engagement weight (may be negative)
    seen: sp.csr_matrix  # 1 where the user had any event with the content
    blocked: sp.csr_matrix  # 1 where the user hid or reported the content

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def positive(self) -> sp.csr_matrix:
        """Net-positive weights only (explicit zeros removed)."""
        pos = self.weights.copy()
        pos.data = np.maximum(pos.data, 0.0).astype(np.float32)
        pos.eliminate_zeros()
        return pos

    def user_index(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        return {str(c): i for i, c in enumerate(self.item_ids)}


def interaction_events(events: pd.DataFrame) -> pd.DataFrame:
    """Events that are user–content interactions (uploads and content-less events dropped)."""
    keep = events["content_id"].notna() & (events["event_type"] != "content_upload")
    return events.loc[keep]


def event_weights(events: pd.DataFrame, p: EmbeddingParams) -> np.ndarray:
    """Per-event engagement weight: type weight plus the capped watch ratio of views."""
    etype = events["event_type"].astype(str)
    w = etype.map(dict(p.event_weights)).fillna(0.0).to_numpy(dtype="float64")
    ratio = pd.to_numeric(events["watch_ratio"], errors="coerce").fillna(0.0).to_numpy(dtype="float64")
    w += np.where(etype.to_numpy() == "view", p.watch_ratio_weight * np.clip(ratio, 0.0, p.watch_ratio_cap), 0.0)
    return w


def build_interactions(
    events: pd.DataFrame,
    p: EmbeddingParams,
    item_ids: Sequence[str] | np.ndarray | None = None,
    user_ids: Sequence[str] | np.ndarray | None = None,
) -> Interactions:
    """Aggregate events into the net-weight, seen and blocked matrices.

    ``item_ids`` fixes the catalogue (contents without events get empty columns); events on
    contents outside it are dropped. Without ``user_ids`` the users are those with interactions.
    """
    ev = interaction_events(events)
    items = np.array(sorted({str(c) for c in (item_ids if item_ids is not None else ev["content_id"].unique())}), dtype=object)
    users = np.array(
        sorted({str(u) for u in (user_ids if user_ids is not None else ev["user_id"].unique())}), dtype=object
    )
    ui = pd.Index(users).get_indexer(ev["user_id"].astype(str))
    ii = pd.Index(items).get_indexer(ev["content_id"].astype(str))
    ok = (ui >= 0) & (ii >= 0)
    ui, ii = ui[ok], ii[ok]
    w = event_weights(ev, p)[ok]
    shape = (len(users), len(items))
    weights = sp.csr_matrix((w, (ui, ii)), shape=shape, dtype=np.float64)
    weights.sum_duplicates()
    seen = sp.csr_matrix((np.ones(len(ui), dtype=np.float32), (ui, ii)), shape=shape)
    seen.sum_duplicates()
    seen.data[:] = 1.0
    blk = ev["event_type"].astype(str).isin(BLOCKING_TYPES).to_numpy()[ok]
    blocked = sp.csr_matrix((np.ones(int(blk.sum()), dtype=np.float32), (ui[blk], ii[blk])), shape=shape)
    blocked.sum_duplicates()
    blocked.data[:] = 1.0
    # Keep structural entries whose weights cancel to exactly 0 distinguishable: nudge to tiny positive.
    weights.data[weights.data == 0.0] = 1e-6
    return Interactions(users, items, weights.astype(np.float32).tocsr(), seen.tocsr(), blocked.tocsr())


# ---------------------------------------------------------------------------------------------
# Collaborative: implicit ALS


def als_confidence(weights: sp.csr_matrix, p: EmbeddingParams) -> sp.csr_matrix:
    """implicit's input: ``1 + alpha w`` (liked) and ``-(1 + negative_alpha |w|)`` (disliked)."""
    c = weights.tocsr(copy=True).astype(np.float32)
    d = c.data
    c.data = np.where(d > 0, 1.0 + p.alpha * d, -(1.0 + p.negative_alpha * np.abs(d))).astype(np.float32)
    if p.negative_alpha == 0:
        c.data[d <= 0] = 0.0
        c.eliminate_zeros()
    return c


def fit_als(inter: Interactions, p: EmbeddingParams) -> tuple[np.ndarray, np.ndarray]:
    """User and content factors from implicit's ALS (conjugate gradient, seeded, reproducible)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    conf = als_confidence(inter.weights, p)
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=p.factors,
            regularization=p.regularization,
            alpha=1.0,  # confidence already built above
            iterations=p.iterations,
            random_state=p.seed,
            num_threads=p.threads,
        )
        model.fit(conf, show_progress=False)
    return np.asarray(model.user_factors, dtype=np.float32), np.asarray(model.item_factors, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Graph: NetMF


def _window_filters(sigma: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``sum_{r odd <= T} s^r / T`` and ``sum_{r even <= T} s^r / T`` elementwise."""
    odd = np.zeros_like(sigma)
    even = np.zeros_like(sigma)
    power = np.ones_like(sigma)
    for r in range(1, window + 1):
        power = power * sigma
        if r % 2:
            odd += power
        else:
            even += power
    return odd / window, even / window


def netmf(adjacency: sp.csr_matrix, p: EmbeddingParams, block_rows: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """NetMF embeddings of the bipartite graph given by a users × contents weight matrix.

    The graph's normalised adjacency ``[[0, B], [B^T, 0]]`` with ``B = D_u^-1/2 A D_c^-1/2`` has
    eigenpairs ``(+-s, [u; +-v] / sqrt 2)`` for each singular triplet of ``B``, so the walk sum
    splits into odd powers (user–content block, ``U f_odd(S) V^T``) and even powers (user–user
    and content–content blocks, ``U f_even(S) U^T`` / ``V f_even(S) V^T``); one truncated SVD of
    the small ``B`` replaces an eigendecomposition of the whole graph.

    Returns ``(user_vectors, content_vectors)`` (``graph_dim`` columns; zeros for isolated nodes).
    """
    from sklearn.utils.extmath import randomized_svd

    n_u, n_i = adjacency.shape
    dim = p.graph_dim
    out_u = np.zeros((n_u, dim), dtype=np.float32)
    out_i = np.zeros((n_i, dim), dtype=np.float32)
    a = adjacency.tocsr().astype(np.float64)
    a.eliminate_zeros()
    deg_u = np.asarray(a.sum(axis=1)).ravel()
    deg_i = np.asarray(a.sum(axis=0)).ravel()
    users = np.flatnonzero(deg_u > 0)
    items = np.flatnonzero(deg_i > 0)
    if len(users) + len(items) > p.graph_max_nodes:  # keep the most connected nodes
        share = p.graph_max_nodes / (len(users) + len(items))
        users = np.sort(users[np.argsort(-deg_u[users], kind="stable")[: max(1, int(len(users) * share))]])
        items = np.sort(items[np.argsort(-deg_i[items], kind="stable")[: max(1, int(len(items) * share))]])
        a = a[users][:, items].tocsr()
        deg_u, deg_i = np.asarray(a.sum(axis=1)).ravel(), np.asarray(a.sum(axis=0)).ravel()
        users, items = users[deg_u > 0], items[deg_i > 0]
        a = a[deg_u > 0][:, deg_i > 0].tocsr()
        deg_u, deg_i = deg_u[deg_u > 0], deg_i[deg_i > 0]
    else:
        a = a[users][:, items].tocsr()
        deg_u, deg_i = deg_u[users], deg_i[items]
    h = min(p.graph_rank, len(users) - 1, len(items) - 1)
    if h < 1:
        return out_u, out_i
    vol = 2.0 * float(a.sum())
    du, di = 1.0 / np.sqrt(deg_u), 1.0 / np.sqrt(deg_i)
    b = sp.diags(du) @ a @ sp.diags(di)
    u, s, vt = randomized_svd(b, n_components=h, n_iter=4, random_state=p.seed)
    f_odd, f_even = _window_filters(s, p.graph_window)
    scale = vol / p.graph_negative
    yu = (u * du[:, None]).astype(np.float32)  # D^-1/2 U
    yi = (vt.T * di[:, None]).astype(np.float32)
    # rows of M = scale * [Yu; Yi] @ right, with the odd / even filters per block
    right_u = np.hstack([(yu * f_even).T, (yi * f_odd).T]).astype(np.float32) * np.float32(scale)
    right_i = np.hstack([(yu * f_odd).T, (yi * f_even).T]).astype(np.float32) * np.float32(scale)
    n = len(yu) + len(yi)
    mlog: np.ndarray | sp.csr_matrix
    if n * n <= DENSE_NETMF_MAX_ENTRIES:  # small graph: one dense float32 matrix is fastest
        mlog = np.vstack([yu @ right_u, yi @ right_i])
        np.maximum(mlog, 1.0, out=mlog)
        np.log(mlog, out=mlog)
    else:  # row blocks, kept sparse (log max(M, 1) is zero wherever M <= 1)
        blocks = []
        for left, right in ((yu, right_u), (yi, right_i)):
            for start in range(0, len(left), block_rows):
                dense = left[start : start + block_rows] @ right
                rows, cols = np.nonzero(dense > 1.0)
                vals = np.log(dense[rows, cols])
                blocks.append(sp.csr_matrix((vals, (rows, cols)), shape=dense.shape, dtype=np.float32))
        mlog = sp.vstack(blocks, format="csr")
    k = min(dim, mlog.shape[0] - 1)
    lu, ls, lvt = randomized_svd(mlog, n_components=k, n_iter=4, random_state=p.seed)
    root = np.sqrt(ls)[None, :]
    m_u = len(users)
    out_u[users, :k] = (lu[:m_u] * root).astype(np.float32)
    out_i[items, :k] = (lvt.T[m_u:] * root).astype(np.float32)
    return out_u, out_i


def graph_adjacency(inter: Interactions) -> sp.csr_matrix:
    """Edge weights of the user–content graph: ``log1p`` of the net-positive engagement."""
    pos = inter.positive()
    pos.data = np.log1p(pos.data).astype(np.float32)
    pos.eliminate_zeros()
    return pos


# ---------------------------------------------------------------------------------------------
# Content encoder (side features -> text / category / visual / audio blocks, ridge -> CF space)


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, list | tuple | np.ndarray):
        return list(v)
    return []


def content_documents(content: pd.DataFrame) -> list[str]:
    """Description plus tags (hashtag marks stripped) per content."""
    desc = content["description"].astype("string").fillna("").astype(str).tolist() if "description" in content else [""] * len(content)
    tags = [_as_list(t) for t in content["tags"].tolist()] if "tags" in content else [[] for _ in range(len(content))]
    return [d + " " + " ".join(str(t).lstrip("#") for t in tl) for d, tl in zip(desc, tags, strict=True)]


def _is_vector(v: Any) -> bool:
    return isinstance(v, list | tuple | np.ndarray) and len(v) > 0


def _vector_matrix(values: pd.Series | None, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(n × dim matrix, has-vector mask); wrong-length or missing vectors are zeros."""
    out = np.zeros((n, dim), dtype=np.float32)
    has = np.zeros(n, dtype=bool)
    if values is None or dim == 0:
        return out, has
    for row, v in enumerate(values.tolist()):
        if _is_vector(v) and len(v) == dim:
            out[row] = np.asarray(v, dtype=np.float32)
            has[row] = True
    return out, has


def _vector_dim(values: pd.Series | None) -> int:
    if values is None:
        return 0
    lengths = [len(v) for v in values.tolist() if _is_vector(v)]
    return int(pd.Series(lengths).mode().iloc[0]) if lengths else 0


@dataclass
class ContentEncoder:
    """Fitted content-side encoder: blocks of the unified embedding and the ridge cold-start map."""

    p: EmbeddingParams
    categories: list[str]
    visual_dim: int
    audio_dim: int
    tfidf: Any = None  # sklearn TfidfVectorizer | None (no text in the catalogue)
    svd: Any = None  # sklearn TruncatedSVD | None
    text_cols: int = 0
    ridge: Any = None  # sklearn Ridge | None (no warm contents to learn from)
    cf_dim: int = 0

    # ---- fitting
    @classmethod
    def fit(cls, content: pd.DataFrame, p: EmbeddingParams) -> ContentEncoder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        cat = content["category"].astype("string").fillna(UNKNOWN).str.lower() if "category" in content else pd.Series([UNKNOWN] * len(content))
        cats = sorted({c for c in cat.astype(str) if c and c != UNKNOWN})
        if len(cats) < 2:
            cats = []  # a single category separates nothing
        visual_dim = _vector_dim(content.get("visual_embedding"))
        audio_dim = _vector_dim(content.get("audio_embedding"))
        enc = cls(p=p, categories=cats, visual_dim=visual_dim, audio_dim=audio_dim)
        docs = content_documents(content)
        if any(d.strip() for d in docs):
            try:
                tfidf = TfidfVectorizer(max_features=p.tfidf_max_features, sublinear_tf=True, dtype=np.float32)
                x = tfidf.fit_transform(docs)
            except ValueError:  # empty vocabulary
                x = None
            if x is not None and x.shape[1] > 0:
                enc.tfidf = tfidf
                k = min(p.text_dim, x.shape[1] - 1, x.shape[0] - 1)
                if k >= 1:
                    enc.svd = TruncatedSVD(n_components=k, random_state=p.seed).fit(x)
                    enc.text_cols = k
        return enc

    def fit_ridge(self, content: pd.DataFrame, targets: np.ndarray) -> ContentEncoder:
        """Learn side features -> (normalised) collaborative vectors on warm contents."""
        from sklearn.linear_model import Ridge

        self.cf_dim = targets.shape[1]
        x = self.side_features(content)
        if len(content) >= 2 and x.shape[1] > 0:
            self.ridge = Ridge(alpha=self.p.ridge_alpha, fit_intercept=True, solver="auto").fit(x, targets)
        return self

    # ---- transforms
    def text_vectors(self, content: pd.DataFrame) -> np.ndarray:
        if self.tfidf is None or self.svd is None:
            return np.zeros((len(content), 0), dtype=np.float32)
        return _normalize_rows(self.svd.transform(self.tfidf.transform(content_documents(content))).astype(np.float32))

    def category_onehot(self, content: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(content), len(self.categories)), dtype=np.float32)
        if not self.categories or "category" not in content:
            return out
        idx = pd.Index(self.categories).get_indexer(pd.Index(content["category"].astype("string").fillna(UNKNOWN).str.lower()))
        rows = np.flatnonzero(idx >= 0)
        out[rows, idx[rows]] = 1.0
        return out

    def vectors(self, content: pd.DataFrame, kind: str) -> np.ndarray:
        dim = self.visual_dim if kind == "visual" else self.audio_dim
        col = f"{kind}_embedding"
        mat, _ = _vector_matrix(content.get(col), len(content), dim)
        return _normalize_rows(mat)

    def side_features(self, content: pd.DataFrame) -> sp.csr_matrix:
        """Ridge input: sparse TF-IDF, category one-hot, visual and audio vectors with indicators."""
        parts: list[sp.spmatrix] = []
        if self.tfidf is not None:
            parts.append(self.tfidf.transform(content_documents(content)))
        parts.append(sp.csr_matrix(self.category_onehot(content)))
        for kind, dim in (("visual", self.visual_dim), ("audio", self.audio_dim)):
            if dim:
                v = self.vectors(content, kind)
                parts.append(sp.csr_matrix(np.hstack([v, (np.abs(v).sum(axis=1, keepdims=True) > 0).astype(np.float32)])))
        return sp.hstack(parts, format="csr", dtype=np.float32)

    def predict_collaborative(self, content: pd.DataFrame) -> np.ndarray:
        """Ridge estimate of the normalised collaborative vector (zeros before ``fit_ridge``)."""
        if self.ridge is None:
            return np.zeros((len(content), self.cf_dim), dtype=np.float32)
        return _normalize_rows(np.asarray(self.ridge.predict(self.side_features(content)), dtype=np.float32))

    def block_dims(self) -> dict[str, int]:
        dims = {
            "collaborative": self.cf_dim,
            "text": self.text_cols,
            "category": len(self.categories),
            "visual": self.visual_dim,
            "audio": self.audio_dim,
        }
        return {b: d for b, d in dims.items() if d > 0 and float(self.p.block_weights.get(b, 0.0)) > 0}

    def assemble(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """Weighted concatenation of normalised blocks, normalised (missing blocks are zeros)."""
        dims = self.block_dims()
        n = next(iter(blocks.values())).shape[0] if blocks else 0
        parts = []
        for b, d in dims.items():
            x = blocks.get(b)
            x = np.zeros((n, d), dtype=np.float32) if x is None else _normalize_rows(np.asarray(x, dtype=np.float32))
            parts.append(x * np.float32(np.sqrt(float(self.p.block_weights[b]))))
        return _normalize_rows(np.hstack(parts).astype(np.float32)) if parts else np.zeros((n, 0), dtype=np.float32)

    def content_blocks(self, content: pd.DataFrame, collaborative: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "collaborative": collaborative,
            "text": self.text_vectors(content),
            "category": self.category_onehot(content),
            "visual": self.vectors(content, "visual"),
            "audio": self.vectors(content, "audio"),
        }

    def embed(self, content: pd.DataFrame) -> np.ndarray:
        """Unified vectors of contents without interactions (new uploads): metadata only."""
        return self.assemble(self.content_blocks(content, self.predict_collaborative(content)))

    def block_slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for b, d in self.block_dims().items():
            out[b] = slice(start, start + d)
            start += d
        return out

    @property
    def dim(self) -> int:
        return sum(self.block_dims().values())


# ---------------------------------------------------------------------------------------------
# The model


@dataclass
class EmbeddingModel:
    """All vectors of one training run, aligned with ``Interactions`` ids."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_mf: np.ndarray
    item_mf: np.ndarray
    user_graph: np.ndarray
    item_graph: np.ndarray
    item_unified: np.ndarray
    user_profile: np.ndarray
    item_interactions: np.ndarray  # positive interactions per content in training
    encoder: ContentEncoder
    ridge_holdout_cosine: float | None = None

    @property
    def cold(self) -> np.ndarray:
        return self.item_interactions == 0

    def profile_from_categories(self, categories: Sequence[str]) -> np.ndarray:
        """Profile of a user without events: the declared preferred categories only."""
        frame = pd.DataFrame({"category": list(categories)})
        onehot = self.encoder.category_onehot(frame).sum(axis=0, keepdims=True)
        return self.encoder.assemble({"category": onehot})[0]


def catalogue(content: pd.DataFrame, events: pd.DataFrame, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Contents available at ``now``: uploaded (or, without an upload time, first seen) before it.

    Contents seen in events but missing from the content table get a row with no metadata.
    """
    c = content.drop_duplicates("content_id", keep="first").copy()
    c["content_id"] = c["content_id"].astype(str)
    ev = interaction_events(events)
    first_seen = ev.groupby(ev["content_id"].astype(str))["timestamp"].min()
    missing = sorted(set(first_seen.index) - set(c["content_id"]))
    if missing:
        c = pd.concat([c, pd.DataFrame({"content_id": missing})], ignore_index=True)
    upload = pd.to_datetime(c["upload_timestamp"], utc=True) if "upload_timestamp" in c else pd.Series(pd.NaT, index=c.index)
    avail = upload.fillna(c["content_id"].map(first_seen))
    c["available_at"] = avail
    if now is not None:
        c = c[c["available_at"].notna() & (c["available_at"] <= now)]
    return c.sort_values("content_id", kind="stable").reset_index(drop=True)


def _ridge_holdout_cosine(enc: ContentEncoder, content: pd.DataFrame, targets: np.ndarray, seed: int) -> float | None:
    """Mean cosine between ridge-predicted and ALS vectors on 20 % of warm contents held out."""
    n = len(content)
    if n < 10:
        return None
    rng = np.random.default_rng(seed)
    test = rng.permutation(n)[: max(1, n // 5)]
    train = np.setdiff1d(np.arange(n), test)
    probe = ContentEncoder(**{**enc.__dict__}).fit_ridge(content.iloc[train], targets[train])
    pred = probe.predict_collaborative(content.iloc[test])
    return float(np.mean(np.sum(pred * targets[test], axis=1)))


def user_profiles(
    inter: Interactions, item_unified: np.ndarray, user_mf: np.ndarray, enc: ContentEncoder
) -> np.ndarray:
    """Positive-weighted mean of engaged contents' unified vectors; CF block = the ALS user factor."""
    pos = inter.positive()
    prof = np.asarray(pos @ item_unified, dtype=np.float32)
    slices = enc.block_slices()
    blocks = {b: prof[:, s] for b, s in slices.items()}
    blocks["collaborative"] = user_mf
    return enc.assemble(blocks)


def fit_embeddings(
    events: pd.DataFrame,
    content: pd.DataFrame,
    p: EmbeddingParams,
    now: pd.Timestamp | None = None,
) -> tuple[EmbeddingModel, Interactions]:
    """The pure core: events before ``now`` and the catalogue at ``now`` in, all vectors out."""
    ev = events if now is None else events[events["timestamp"] < now]
    cat = catalogue(content, ev, now)
    inter = build_interactions(ev, p, item_ids=cat["content_id"].to_numpy(dtype=object))
    cat = cat.set_index("content_id").loc[inter.item_ids].reset_index()
    user_mf, item_mf = fit_als(inter, p)
    user_graph, item_graph = netmf(graph_adjacency(inter), p)
    n_pos = np.asarray((inter.positive() > 0).sum(axis=0)).ravel().astype(np.int64)

    enc = ContentEncoder.fit(cat, p)
    mf_norm = _normalize_rows(item_mf)
    has_mf = np.linalg.norm(item_mf, axis=1) > 0
    warm = (n_pos >= p.min_ridge_interactions) & has_mf
    enc.cf_dim = item_mf.shape[1]
    holdout = _ridge_holdout_cosine(enc, cat[warm], mf_norm[warm], p.seed) if warm.sum() else None
    enc.fit_ridge(cat[warm], mf_norm[warm])
    predicted = enc.predict_collaborative(cat)
    share_own = np.where(has_mf, n_pos / (n_pos + p.cold_blend), 0.0).astype(np.float32)[:, None]
    collaborative = _normalize_rows(share_own * mf_norm + (1.0 - share_own) * predicted)
    unified = enc.assemble(enc.content_blocks(cat, collaborative))
    profiles = user_profiles(inter, unified, user_mf, enc)
    model = EmbeddingModel(
        user_ids=inter.user_ids,
        item_ids=inter.item_ids,
        user_mf=user_mf,
        item_mf=item_mf,
        user_graph=user_graph,
        item_graph=item_graph,
        item_unified=unified,
        user_profile=profiles,
        item_interactions=n_pos,
        encoder=enc,
        ridge_holdout_cosine=holdout,
    )
    return model, inter


# ---------------------------------------------------------------------------------------------
# Quality checks (metrics)


def neighbour_category_agreement(vectors: np.ndarray, categories: np.ndarray, k: int = 10, max_queries: int = 2000, seed: int = 0) -> float | None:
    """Share of each content's k nearest neighbours (cosine) in its own category."""
    cats = np.asarray(categories, dtype=object)
    ok = np.flatnonzero((np.linalg.norm(vectors, axis=1) > 0) & (cats != UNKNOWN))
    if len(ok) <= k or len(set(cats[ok])) < 2:
        return None
    x = _normalize_rows(vectors[ok].astype(np.float32))
    rng = np.random.default_rng(seed)
    q = np.sort(rng.choice(len(ok), size=min(max_queries, len(ok)), replace=False))
    sims = x[q] @ x.T
    sims[np.arange(len(q)), q] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    return float(np.mean(cats[ok][top] == cats[ok][q][:, None]))


def embedding_metrics(model: EmbeddingModel, inter: Interactions, content: pd.DataFrame, p: EmbeddingParams) -> dict[str, Any]:
    cats = content.set_index("content_id")["category"].reindex(model.item_ids).astype("string").fillna(UNKNOWN).str.lower().to_numpy(dtype=object)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 6)

    return {
        "users": int(inter.n_users),
        "contents": int(inter.n_items),
        "interactions": int(inter.weights.nnz),
        "positive_interactions": int((inter.weights.data > 0).sum()),
        "cold_contents": int(model.cold.sum()),
        "mf_dim": int(model.user_mf.shape[1]),
        "graph_dim": int(model.user_graph.shape[1]),
        "unified_dim": int(model.item_unified.shape[1]),
        "unified_blocks": model.encoder.block_dims(),
        "ridge_holdout_cosine": r(model.ridge_holdout_cosine),
        "neighbour_category_agreement@10": {
            "mf": r(neighbour_category_agreement(model.item_mf, cats, seed=p.seed)),
            "graph": r(neighbour_category_agreement(model.item_graph, cats, seed=p.seed)),
            "unified": r(neighbour_category_agreement(model.item_unified, cats, seed=p.seed)),
            "cold_start_map": r(
                neighbour_category_agreement(model.encoder.predict_collaborative(content.set_index("content_id").loc[model.item_ids].reset_index()), cats, seed=p.seed)
            ),
        },
    }


# ---------------------------------------------------------------------------------------------
# Stage I/O


def _vec_column(x: np.ndarray) -> pa.Array:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]).cast(pa.list_(pa.float32()))


def _matrix(col: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return flat.reshape(len(arr), dim) if len(arr) else np.zeros((0, dim), dtype=np.float32)


def save_model(model: EmbeddingModel, out_dir: Path) -> None:
    """Write ``users.parquet``, ``content.parquet``, ``encoder.pkl`` and ``meta.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    users = pa.table(
        {
            "user_id": pa.array(model.user_ids.astype(str).tolist(), type=pa.string()),
            "mf": _vec_column(model.user_mf),
            "graph": _vec_column(model.user_graph),
            "profile": _vec_column(model.user_profile),
        }
    )
    items = pa.table(
        {
            "content_id": pa.array(model.item_ids.astype(str).tolist(), type=pa.string()),
            "mf": _vec_column(model.item_mf),
            "graph": _vec_column(model.item_graph),
            "unified": _vec_column(model.item_unified),
            "n_interactions": pa.array(model.item_interactions, type=pa.int64()),
        }
    )
    pq.write_table(users, out_dir / "users.parquet")
    pq.write_table(items, out_dir / "content.parquet")
    if model.encoder.tfidf is not None:
        # sklearn caches id(stop_words) (a memory address) to skip a re-check: it would make the
        # pickle differ between identical runs; dropping it only means the check runs again
        model.encoder.tfidf.__dict__.pop("_stop_words_id", None)
    with (out_dir / "encoder.pkl").open("wb") as fh:
        pickle.dump(model.encoder, fh, protocol=pickle.HIGHEST_PROTOCOL)
    meta = {
        "mf_dim": int(model.user_mf.shape[1]),
        "graph_dim": int(model.user_graph.shape[1]),
        "unified_dim": int(model.item_unified.shape[1]),
        "unified_blocks": model.encoder.block_dims(),
        "ridge_holdout_cosine": model.ridge_holdout_cosine,
        "version": model_version(model),
    }
    atomic_write_json(out_dir / "meta.json", meta, sort_keys=False)


def load_model(in_dir: Path) -> EmbeddingModel:
    meta = json.loads((in_dir / "meta.json").read_text())
    users = pq.read_table(in_dir / "users.parquet")
    items = pq.read_table(in_dir / "content.parquet")
    with (in_dir / "encoder.pkl").open("rb") as fh:
        encoder = pickle.load(fh)  # our own artefact, written by save_model
    return EmbeddingModel(
        user_ids=np.array(users["user_id"].to_pylist(), dtype=object),
        item_ids=np.array(items["content_id"].to_pylist(), dtype=object),
        user_mf=_matrix(users["mf"], meta["mf_dim"]),
        item_mf=_matrix(items["mf"], meta["mf_dim"]),
        user_graph=_matrix(users["graph"], meta["graph_dim"]),
        item_graph=_matrix(items["graph"], meta["graph_dim"]),
        item_unified=_matrix(items["unified"], meta["unified_dim"]),
        user_profile=_matrix(users["profile"], meta["unified_dim"]),
        item_interactions=np.asarray(items["n_interactions"].to_numpy(), dtype=np.int64),
        encoder=encoder,
        ridge_holdout_cosine=meta.get("ridge_holdout_cosine"),
    )


def model_version(model: EmbeddingModel) -> str:
    """Content hash of the vectors (same inputs and params -> same version)."""
    h = hashlib.sha256()
    for x in (model.item_ids.astype(str), model.user_ids.astype(str)):
        h.update("\n".join(x.tolist()).encode())
    for m in (model.user_mf, model.item_mf, model.user_graph, model.item_graph, model.item_unified):
        h.update(np.ascontiguousarray(np.round(m, 5)).tobytes())
    return h.hexdigest()[:16]


def read_interim(paths: DataPaths) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Clean events (interaction columns), content and users from ``data/interim``."""
    events = pq.read_table(paths.of("interim_events"), columns=list(EVENT_COLUMNS)).to_pandas(
        types_mapper=arrow_string_mapper
    )
    content = pq.read_table(paths.of("interim_content")).to_pandas(types_mapper=arrow_string_mapper)
    users_path = paths.of("interim_users")
    users = pq.read_table(users_path).to_pandas(types_mapper=arrow_string_mapper) if users_path.exists() else pd.DataFrame({"user_id": []})
    return events, content, users


@dataclass(frozen=True)
class EmbeddingsResult:
    metrics: dict[str, Any]
    version: str
    seconds: float


def run(params: Mapping[str, Any], paths: DataPaths) -> EmbeddingsResult:
    p = EmbeddingParams.from_params(params)
    t0 = time.perf_counter()
    events, content, _ = read_interim(paths)
    model, inter = fit_embeddings(events, content, p)
    save_model(model, paths.of("embeddings"))
    cat = catalogue(content, events)
    metrics = embedding_metrics(model, inter, cat, p)
    metrics["version"] = model_version(model)
    write_metrics(paths.of("metrics_embeddings"), metrics)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("embeddings: %d users, %d contents (%d cold) in %.1f s", inter.n_users, inter.n_items, metrics["cold_contents"], seconds)
    return EmbeddingsResult(metrics=metrics, version=metrics["version"], seconds=seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    r = run(params, paths)
    m = r.metrics
    print(
        f"embeddings {r.version}: {m['users']} users, {m['contents']} contents ({m['cold_contents']} cold), "
        f"unified dim {m['unified_dim']}, ridge hold-out cosine {m['ridge_holdout_cosine']} in {r.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    # run from the importable module so pickled classes are components.retrieval.embeddings.*, not __main__.*
    from components.retrieval.embeddings import main as _main

    raise SystemExit(_main())
