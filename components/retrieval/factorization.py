"""Collaborative (implicit's ALS) and graph (NetMF) factors of the interaction matrix.

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
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.interactions import Interactions

#: Largest NetMF matrix (entries) built dense; bigger graphs use sparse row blocks.
DENSE_NETMF_MAX_ENTRIES = 120_000_000


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
