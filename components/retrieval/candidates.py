"""Candidate generation: a FAISS content index, eleven candidate sources merged by quota, and recall.

Index (:class:`ContentIndex`)
    FAISS over the unified content embeddings (inner product on L2-normalised vectors = cosine),
    of the type ``candidates.index.type``: ``flat`` (exact), ``hnsw``, ``ivf`` or ``ivfpq``
    (optionally re-ranked with exact vectors, ``refine_factor``). Every index carries explicit
    int64 ids (``IndexIDMap2`` around flat / HNSW / refined IVF-PQ, native ids for IVF), so new
    uploads are added with ``add_with_ids`` without a rebuild. An index is saved as a versioned
    artefact: ``<dir>/<version>/{index.faiss, ids.parquet, manifest.json}`` plus ``<dir>/LATEST``;
    the version is a content hash, so the same vectors and settings give the same version. The
    pipeline builds single-threaded (HNSW insertion with several threads is not reproducible).

Sources — each returns ``(content_id, score, source)`` for one user, already-seen and
hidden / reported contents excluded
    * ``content``: cosine between the user profile and content embeddings (FAISS), kept when it
      is at least ``similarity_threshold``;
    * ``item_knn`` / ``user_knn``: neighbourhood CF with baseline biases ``b_ui = mu + b_u + b_i``
      (regularised alternating means of the net engagement weights ``r``) over the ``k`` most
      similar items ``j`` the user engaged with (for user-kNN: the ``k`` most similar users ``v``
      who engaged with ``i``); cosine similarities from implicit's ``ItemItemRecommender`` on
      column-normalised positive weights. ``knn.scoring``:
      ``global`` (default) — Koren's (KDD 2008) global neighbourhood model with the similarities
      as weights, ``b_ui + |N(u)|^-1/2 sum_j s_ij ((r_uj - b_uj) + 1)``: the baseline, the
      neighbours' deviations from their baselines, and the implicit "the user interacted with a
      neighbour at all" term, which rating-style formulas lack and top-N retrieval needs;
      ``normalised`` — the classic ``b_ui + sum_j s_ij (r_uj - b_uj) / (sum_j |s_ij| + shrinkage)``
      (a rating predictor: it ranks by baseline quality, weak for retrieval on these data);
      ``aggregate`` — ``sum_j s_ij [u interacted with j]`` (plain implicit ItemKNN, no biases). Only
      contents with at least one neighbour are candidates;
    * ``hybrid``: ``alpha * content + (1 - alpha) * collaborative`` after per-user min-max
      normalisation of each source's scores (collaborative = mean of item- and user-kNN);
    * ``mf`` (ALS dot product) and ``graph`` (NetMF dot product) from :mod:`components.retrieval.embedding_model`;
    * ``trending``: engagement growth ``(e[now-g, now) - e[now-2g, now-g)) / max(e[now-2g, now-g), 1)``
      with at least ``min_engagements`` recent engagements;
    * ``recent``: the most engaged contents of the last ``recent.window_hours`` (what is being
      watched now; on short-video data this beats all-time popularity by far);
    * ``ease``: EASE (Steck, WWW 2019), the closed-form item-item model
      ``B = I - P / diag(P)``, ``P = (X'X + lambda I)^-1`` on binary feedback; it inverts an
      items x items matrix, so it only runs up to ``ease.max_items`` contents (no library in the
      stack implements it; it is a Cholesky inverse and a division);
    * ``fresh``: contents available within ``max_age_hours``, ranked by
      ``exp(-age / max_age) * (1 + cos(profile, content)) / 2``;
    * ``followed``: contents of the creators the user follows (profile list plus follow events,
      minus later unfollows), newest first.
    ``popularity`` (positive events in the training period) is the baseline, not a source.

Merging
    Each source gets ``floor(quota * K)`` slots in ``mix`` order, skipping contents already taken;
    slots left (quotas summing below 1, sources running dry) go to the sources that still have
    contents, in proportion to their quotas; popularity fills whatever is still empty (users
    without history, tiny catalogues).

Evaluation (``evaluate``)
    Time-based hold-out: embeddings, neighbourhoods and source state are fitted on events before
    the cut (``cut_quantile`` of interaction times); the test set of a user is the contents of
    their positive events at or after the cut that they had not interacted with before it and
    that were available at the cut. Recall@K is averaged over users with a test set and training
    events. ``python -m components.retrieval.candidates --evaluate-all`` runs it on the synthetic data and
    both real data sets (``metrics/candidates_<dataset>.json``).

Neighbourhood scoring and quota merging are a few sparse products and a loop; no library
implements them, so they are written here. FAISS, implicit and scikit-learn do the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from scipy.linalg import lapack

from components.core.catalog import DataPaths
from components.core.config import Params, stage_context, stage_parser
from components.core.io import atomic_write_text, write_metrics
from components.core.schema import (
    CONSUMPTION_TYPES,
    CREATOR_TYPES,
    ENGAGEMENT_TYPES,
    POSITIVE_TYPES,
)
from components.core.splits import before, quantile_cut
from components.data.prepare import prepare_data
from components.retrieval.embedding_model import EmbeddingModel, fit_embeddings, load_model
from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.faiss_search import search, set_search_params
from components.retrieval.interactions import (
    UNKNOWN,
    Interactions,
    build_interactions,
    catalogue,
    interaction_events,
    read_interim,
)
from components.retrieval.pair_features import (
    KNN_SCORING,
    NEG_INF,
    PAIR_SOURCES,
    KnnState,
    PairState,
    minmax,
    normalisers,
    z_scores,
)

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = (
    "content", "item_knn", "user_knn", "hybrid", "mf", "graph", "ease", "trending", "recent", "fresh", "followed",
)
BASELINE = "popularity"
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivf", "ivfpq")
ADD_BATCH = 100_000
DATASETS: tuple[str, ...] = ("synthetic", "kuairand", "movielens")


# ---------------------------------------------------------------------------------------------
# Params


@dataclass(frozen=True)
class IndexParams:
    """``candidates.index`` (plus ``base.seed``: the training sample and k-means seed)."""

    type: str
    hnsw_m: int
    ef_construction: int
    ef_search: int
    nlist: int  # 0: about 4 sqrt(n), with at least 39 training points per list
    nprobe: int
    pq_m: int  # sub-quantisers: the largest divisor of the dimension not above this
    pq_bits: int
    refine_factor: int  # IVF-PQ: re-rank refine_factor * k PQ hits with exact vectors (0: off)
    build_threads: int  # 1 keeps HNSW / k-means builds reproducible; 0 = all threads
    max_train_per_list: int  # IVF training sample: at most this many vectors per list
    seed: int
    recall_k: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.type not in INDEX_TYPES:
            raise ValueError(f"candidates.index.type must be one of {INDEX_TYPES}, got {self.type!r}")
        if min(self.hnsw_m, self.ef_construction, self.ef_search, self.nprobe, self.pq_m, self.pq_bits) < 1:
            raise ValueError("candidates.index: sizes must be >= 1")

    @classmethod
    def from_mapping(cls, s: Mapping[str, Any]) -> IndexParams:
        """From a saved index manifest (every field written by ``asdict``)."""
        return cls(**{**s, "recall_k": tuple(int(k) for k in s["recall_k"])})


@dataclass(frozen=True)
class CandidateParams:
    """The ``candidates`` section of params.yaml for one data set (plus ``base.seed``)."""

    similarity_threshold: float
    alpha: float
    knn_k: int
    knn_shrinkage: float
    knn_bias_reg: float
    knn_scoring: str  # global | normalised | aggregate
    trending_window_hours: float
    recent_window_hours: float  # "recent": most engaged contents of this last window
    trending_min_engagements: int
    fresh_max_age_hours: float
    per_source: int  # contents each source returns at most
    per_user: int  # merged candidates written per user
    ease_lambda: float  # EASE ridge strength; 0 turns the source off
    ease_max_items: int  # EASE inverts an items x items Gram matrix: only small catalogues
    item_windows_hours: tuple[float, ...]  # item activity features
    mix: Mapping[str, float]
    index: IndexParams
    seed: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("candidates.alpha must be in [0, 1]")
        if not -1.0 <= self.similarity_threshold <= 1.0:
            raise ValueError("candidates.similarity_threshold must be a cosine in [-1, 1]")
        if self.knn_scoring not in KNN_SCORING:
            raise ValueError(f"candidates.knn.scoring must be one of {KNN_SCORING}")
        unknown = set(self.mix) - set(SOURCES)
        if unknown:
            raise ValueError(f"candidates.mix: unknown sources {sorted(unknown)}")
        if any(q < 0 for q in self.mix.values()) or sum(self.mix.values()) > 1.0 + 1e-9:
            raise ValueError("candidates.mix: quotas must be >= 0 and sum to at most 1")
        if self.knn_k < 1 or self.per_source < 1 or self.per_user < 1:
            raise ValueError("candidates: knn.k, per_source and per_user must be >= 1")

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any], dataset: str | None = None) -> CandidateParams:
        """The section with ``overrides.<dataset>`` (default: ``data.source``) applied."""
        cfg = Params.of(params).for_dataset(dataset)
        c, seed = cfg.candidates, cfg.base.seed
        return cls(
            similarity_threshold=c.similarity_threshold,
            alpha=c.alpha,
            knn_k=c.knn.k,
            knn_shrinkage=c.knn.shrinkage,
            knn_bias_reg=c.knn.bias_reg,
            knn_scoring=c.knn.scoring,
            trending_window_hours=c.trending.window_hours,
            recent_window_hours=c.recent.window_hours,
            trending_min_engagements=c.trending.min_engagements,
            fresh_max_age_hours=c.fresh.max_age_hours,
            per_source=c.per_source,
            per_user=c.per_user,
            ease_lambda=c.ease.lambda_,
            ease_max_items=c.ease.max_items,
            item_windows_hours=c.item_windows_hours,
            mix=dict(c.mix),
            index=IndexParams(seed=seed, **c.index.model_dump()),
            seed=seed,
        )


@dataclass(frozen=True)
class EvalParams:
    """``candidates.evaluation`` for one data set: the hold-out recall of the sources."""

    cut_quantile: float
    ks: tuple[int, ...]
    positive_types: tuple[str, ...]
    max_users: int  # 0: every test user

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any], dataset: str | None = None) -> EvalParams:
        return cls(**Params.of(params).for_dataset(dataset).candidates.evaluation.model_dump())


# ---------------------------------------------------------------------------------------------
# FAISS index


def _faiss() -> Any:
    import faiss

    return faiss


def auto_nlist(n: int, nlist: int = 0) -> int:
    """Lists for an IVF index: ``nlist`` or about ``4 sqrt(n)``, with >= 39 training points each."""
    want = nlist if nlist > 0 else round(4 * float(np.sqrt(max(n, 1))))
    return int(max(1, min(want, n // 39 if n >= 39 else 1)))


def pq_subquantizers(dim: int, wanted: int) -> int:
    return max(m for m in range(1, min(wanted, dim) + 1) if dim % m == 0)


def training_sample(x: np.ndarray, p: IndexParams) -> np.ndarray:
    """Vectors the IVF k-means (and PQ) train on: all, or ``max_train_per_list`` per list, seeded."""
    n_max = max(auto_nlist(len(x), p.nlist) * p.max_train_per_list, 256 * 40)
    if len(x) <= n_max:
        return x
    rows = np.sort(np.random.default_rng(p.seed).choice(len(x), size=n_max, replace=False))
    return np.ascontiguousarray(x[rows])


def make_index(dim: int, p: IndexParams, n_train: int) -> Any:
    """An empty index of type ``p.type`` that accepts ``add_with_ids`` (inner-product metric)."""
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if p.type == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if p.type == "hnsw":
        h = faiss.IndexHNSWFlat(dim, p.hnsw_m, ip)
        h.hnsw.efConstruction = p.ef_construction
        h.hnsw.efSearch = p.ef_search
        return faiss.IndexIDMap2(h)
    nlist = auto_nlist(n_train, p.nlist)
    quantizer = faiss.IndexFlatIP(dim)
    if p.type == "ivf":
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
        ivf.cp.seed = p.seed
        ivf.nprobe = p.nprobe
        ivf.own_fields = True
        quantizer.this.disown()
        return ivf
    bits = int(min(p.pq_bits, max(1, np.floor(np.log2(max(n_train // 39, 2))))))
    pq = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_subquantizers(dim, p.pq_m), bits, ip)
    pq.cp.seed = p.seed
    pq.pq.cp.seed = p.seed
    pq.nprobe = p.nprobe
    pq.own_fields = True
    quantizer.this.disown()
    if p.refine_factor <= 0:
        return pq
    refine = faiss.IndexRefineFlat(pq)
    refine.k_factor = float(p.refine_factor)
    refine.own_fields = True
    pq.this.disown()
    return faiss.IndexIDMap2(refine)


class ContentIndex:
    """A FAISS index over content vectors, addressed by content id, growable and versioned."""

    def __init__(self, index: Any, content_ids: Sequence[str], p: IndexParams, parent: str | None = None) -> None:
        self.index = index
        self.content_ids: list[str] = [str(c) for c in content_ids]
        self.p = p
        self.parent = parent

    @classmethod
    def build(cls, vectors: np.ndarray, content_ids: Sequence[str], p: IndexParams) -> ContentIndex:
        faiss = _faiss()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        threads = faiss.omp_get_max_threads()
        if p.build_threads > 0:
            faiss.omp_set_num_threads(p.build_threads)
        try:
            index = make_index(x.shape[1], p, len(x))
            if not index.is_trained:
                index.train(training_sample(x, p))
            for start in range(0, len(x), ADD_BATCH):
                stop = min(start + ADD_BATCH, len(x))
                index.add_with_ids(x[start:stop], np.arange(start, stop, dtype=np.int64))
        finally:
            faiss.omp_set_num_threads(threads)
        return cls(index, content_ids, p)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def add(self, content_ids: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Add new contents (e.g. uploads) without rebuilding; returns their index ids."""
        known = set(self.content_ids)
        fresh = [str(c) for c in content_ids]
        if dup := sorted(known.intersection(fresh)):
            raise ValueError(f"contents already indexed: {dup[:5]}")
        ids = np.arange(len(self.content_ids), len(self.content_ids) + len(fresh), dtype=np.int64)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self.content_ids.extend(fresh)
        return ids

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the ``k`` best contents per query; id -1 where fewer were found."""
        return search(self.index, queries, k, hnsw_ef_search=self.p.ef_search if self.p.type == "hnsw" else None)

    def version(self) -> str:
        faiss = _faiss()
        h = hashlib.sha256(np.asarray(faiss.serialize_index(self.index)).tobytes())
        h.update("\n".join(self.content_ids).encode())
        return h.hexdigest()[:16]

    def save(self, root: Path) -> Path:
        """Write a new version directory and point ``LATEST`` at it; returns the directory."""
        faiss = _faiss()
        version = self.version()
        out = root / version
        tmp = root / f".{version}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        faiss.write_index(self.index, str(tmp / "index.faiss"))
        pq.write_table(pa.table({"id": pa.array(np.arange(len(self.content_ids)), pa.int64()), "content_id": self.content_ids}), tmp / "ids.parquet")
        manifest = {
            "version": version,
            "parent": self.parent,
            "type": self.p.type,
            "dim": self.dim,
            "ntotal": self.ntotal,
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.p.__dict__.items()},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        atomic_write_text(root / "LATEST", version + "\n")
        self.parent = version
        return out

    @classmethod
    def load(cls, root: Path, version: str | None = None) -> ContentIndex:
        faiss = _faiss()
        version = version or (root / "LATEST").read_text().strip()
        d = root / version
        manifest = json.loads((d / "manifest.json").read_text())
        ids = pq.read_table(d / "ids.parquet").sort_by("id")["content_id"].to_pylist()
        p = IndexParams.from_mapping(manifest["params"])
        index = faiss.read_index(str(d / "index.faiss"))
        set_search_params(index, ef_search=p.ef_search, nprobe=p.nprobe, k_factor=p.refine_factor or None)
        return cls(index, ids, p, parent=version)


def index_recall(approx: ContentIndex, vectors: np.ndarray, queries: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Recall@K of the approximate index against exact inner-product search."""
    faiss = _faiss()
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(np.ascontiguousarray(vectors, dtype=np.float32))
    out: dict[str, float] = {}
    q = np.ascontiguousarray(queries, dtype=np.float32)
    for k in ks:
        kk = min(k, len(vectors))
        _, truth = exact.search(q, kk)
        _, got = approx.search(q, kk)
        hits = [len(np.intersect1d(t[t >= 0], g[g >= 0])) / max((t >= 0).sum(), 1) for t, g in zip(truth, got, strict=True)]
        out[f"recall@{k}"] = round(float(np.mean(hits)), 6) if hits else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# Neighbourhood CF with baseline biases


def baselines(weights: sp.csr_matrix, reg: float, iterations: int = 5) -> tuple[float, np.ndarray, np.ndarray]:
    """``mu, b_u, b_i`` by regularised alternating means over the observed net weights."""
    coo = weights.tocoo()
    n_u, n_i = weights.shape
    if coo.nnz == 0:
        return 0.0, np.zeros(n_u), np.zeros(n_i)
    r = coo.data.astype(np.float64)
    mu = float(r.mean())
    bu, bi = np.zeros(n_u), np.zeros(n_i)
    cnt_u = np.bincount(coo.row, minlength=n_u)
    cnt_i = np.bincount(coo.col, minlength=n_i)
    for _ in range(iterations):
        bi = np.bincount(coo.col, r - mu - bu[coo.row], minlength=n_i) / (cnt_i + reg)
        bu = np.bincount(coo.row, r - mu - bi[coo.col], minlength=n_u) / (cnt_u + reg)
    return mu, bu, bi


def cosine_knn(matrix: sp.csr_matrix, k: int, threads: int = 1) -> sp.csr_matrix:
    """Top-``k`` cosine neighbours of each column of ``matrix`` (implicit), self excluded."""
    from implicit.nearest_neighbours import ItemItemRecommender
    from sklearn.preprocessing import normalize

    # cosine = dot product of column-normalised vectors (what implicit's CosineRecommender does)
    model = ItemItemRecommender(K=k + 1, num_threads=threads)
    model.fit(normalize(matrix.tocsc().astype(np.float64), axis=0).tocsr(), show_progress=False)
    sim = model.similarity.tocsr().astype(np.float32)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    return sim


def fit_ease(positive: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE item-item weights (Steck, WWW 2019): ``B = I - P / diag(P)``, ``P = (X'X + lam I)^-1``
    on the binary user x item matrix, with a zero diagonal. Dense items x items, float32."""
    x = (positive > 0).astype(np.float32).tocsc()
    gram = np.asarray((x.T @ x).todense(), dtype=np.float32)
    gram[np.diag_indices_from(gram)] += np.float32(lam)
    # symmetric positive definite: Cholesky factor and inverse from it (LAPACK potrf + potri),
    # several times faster than a general LU inverse
    factor, info = lapack.spotrf(gram, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix is not positive definite (potrf info {info})")
    upper, info = lapack.spotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE inverse failed (potri info {info})")
    inv = np.triu(upper) + np.triu(upper, 1).T
    b = inv / (-np.diag(inv))[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return np.ascontiguousarray(b, dtype=np.float32)


def item_activity(events: pd.DataFrame, item_ids: np.ndarray, now: pd.Timestamp, windows_hours: Sequence[float]) -> pd.DataFrame:
    """Per content, from interactions before ``now``: engagements in each window before ``now``
    (``eng_<h>h``) and in total, interactions in total, like rate ``(likes + 1) / (views + 2)``,
    and hours since the first and the last interaction (NaN if never)."""
    ev = interaction_events(events)
    ev = ev[ev["timestamp"] < now]
    pos = pd.Index(np.asarray(item_ids).astype(str)).get_indexer(ev["content_id"].astype(str))
    keep = pos >= 0
    pos = pos[keep]
    typ = ev["event_type"].astype(str).to_numpy()[keep]
    age_h = ((now - pd.to_datetime(ev["timestamp"], utc=True)).dt.total_seconds().to_numpy() / 3600.0)[keep]
    n = len(item_ids)
    engaged = np.isin(typ, sorted(ENGAGEMENT_TYPES))
    out = pd.DataFrame(index=range(n))
    for h in windows_hours:
        sel = engaged & (age_h <= h)
        out[f"eng_{h:g}h"] = np.bincount(pos[sel], minlength=n).astype(np.float32)
    out["eng_total"] = np.bincount(pos[engaged], minlength=n).astype(np.float32)
    out["interactions"] = np.bincount(pos, minlength=n).astype(np.float32)
    likes = np.bincount(pos[typ == "like"], minlength=n)
    views = np.bincount(pos[np.isin(typ, CONSUMPTION_TYPES)], minlength=n)
    out["like_rate"] = ((likes + 1.0) / (np.maximum(views, likes) + 2.0)).astype(np.float32)
    first = np.full(n, np.nan)
    last = np.full(n, np.nan)
    if len(pos):
        ages = pd.DataFrame({"p": pos, "a": age_h}).groupby("p")["a"].agg(["max", "min"])
        first[ages.index.to_numpy()] = ages["max"].to_numpy()
        last[ages.index.to_numpy()] = ages["min"].to_numpy()
    out["hours_since_first"] = first.astype(np.float32)
    out["hours_since_last"] = last.astype(np.float32)
    return out


@dataclass
class Neighbourhood:
    """Item and user similarities, baselines and residuals of the training interactions."""

    mu: float
    b_user: np.ndarray
    b_item: np.ndarray
    residual: sp.csr_matrix  # r_ui - b_ui on observed pairs
    observed: sp.csr_matrix  # 1 on observed pairs
    rating: sp.csr_matrix  # r_ui (net weights) on observed pairs
    item_sim: sp.csr_matrix  # items × items
    user_sim: sp.csr_matrix  # users × users

    @classmethod
    def fit(cls, inter: Interactions, p: CandidateParams) -> Neighbourhood:
        w = inter.weights.tocsr().astype(np.float64)
        mu, bu, bi = baselines(w, p.knn_bias_reg)
        coo = w.tocoo()
        res = sp.csr_matrix((coo.data - mu - bu[coo.row] - bi[coo.col], (coo.row, coo.col)), shape=w.shape, dtype=np.float32)
        observed = sp.csr_matrix((np.ones(coo.nnz, np.float32), (coo.row, coo.col)), shape=w.shape)
        pos = inter.positive()
        return cls(
            mu=mu,
            b_user=bu.astype(np.float32),
            b_item=bi.astype(np.float32),
            residual=res,
            observed=observed,
            rating=w.astype(np.float32),
            item_sim=cosine_knn(pos, p.knn_k),
            user_sim=cosine_knn(pos.T.tocsr(), p.knn_k),
        )

    def state(self, p: CandidateParams) -> KnnState:
        """The scoring side (:class:`~components.retrieval.pair_features.KnnState`) under ``p``'s rule."""
        return KnnState(
            mu=self.mu,
            b_user=self.b_user,
            b_item=self.b_item,
            residual=self.residual,
            observed=self.observed,
            item_sim=self.item_sim,
            user_sim=self.user_sim,
            scoring=p.knn_scoring,
            shrinkage=p.knn_shrinkage,
        )

    def item_scores(self, rows: np.ndarray, p: CandidateParams, cols: np.ndarray | None = None) -> np.ndarray:
        """Item-kNN scores of users ``rows`` over all contents, or only the contents at ``cols``
        (-inf without a neighbour)."""
        return self.state(p).item_scores(rows, cols)

    def user_scores(self, rows: np.ndarray, p: CandidateParams, cols: np.ndarray | None = None) -> np.ndarray:
        """User-kNN scores of users ``rows`` over all contents, or only the contents at ``cols``
        (-inf without a neighbour)."""
        return self.state(p).user_scores(rows, cols)


# ---------------------------------------------------------------------------------------------
# Retriever: all sources over one catalogue


@dataclass(frozen=True)
class Candidates:
    """Ranked candidates of one user from one source (positions in the retriever's catalogue)."""

    items: np.ndarray  # int64 positions
    scores: np.ndarray  # float32, descending


def _top(scores: np.ndarray, k: int) -> list[Candidates]:
    """Per row: the best ``k`` finite scores, descending (ties by position, deterministic)."""
    out = []
    for row in scores:
        finite = np.flatnonzero(np.isfinite(row))
        part = finite[np.argpartition(-row[finite], k - 1)[:k]] if len(finite) > k else finite
        order = np.lexsort((part, -row[part]))
        sel = part[order]
        out.append(Candidates(sel.astype(np.int64), row[sel].astype(np.float32)))
    return out


def followed_creators(users: pd.DataFrame, events: pd.DataFrame) -> dict[str, set[str]]:
    """Creators each user follows: the profile list, then follow / unfollow events in time order."""
    out: dict[str, set[str]] = {}
    if "creators_followed" in users:
        for u, cl in zip(users["user_id"].astype(str), users["creators_followed"], strict=True):
            if isinstance(cl, list | tuple | np.ndarray) and len(cl):
                out[u] = {str(c) for c in cl}
    ev = events[events["event_type"].isin(CREATOR_TYPES) & events["creator_id"].notna()]
    ev = ev.sort_values("timestamp", kind="stable")
    for u, c, t in zip(ev["user_id"].astype(str), ev["creator_id"].astype(str), ev["event_type"].astype(str), strict=True):
        if t == "follow":
            out.setdefault(u, set()).add(c)
        else:
            out.get(u, set()).discard(c)
    # the real-data adapters' sentinel for "no creator id in this data set" is nobody to follow
    return {u: s - {UNKNOWN, ""} for u, s in out.items() if s - {UNKNOWN, ""}}


def _text_or_none(values: pd.Series) -> np.ndarray:
    return np.array([None if pd.isna(v) else str(v) for v in values], dtype=object)


def preferred_categories(users: pd.DataFrame) -> dict[str, list[str]]:
    if "preferred_categories" not in users:
        return {}
    return {
        str(u): [str(c) for c in cl]
        for u, cl in zip(users["user_id"].astype(str), users["preferred_categories"], strict=True)
        if isinstance(cl, list | tuple | np.ndarray) and len(cl)
    }


@dataclass
class Retriever:
    """Source state at time ``now``: embeddings, index, neighbourhoods, trending, fresh, follows."""

    model: EmbeddingModel
    inter: Interactions
    index: ContentIndex
    knn: Neighbourhood
    items: pd.DataFrame  # catalogue aligned with the index ids: content_id, creator_id, available_at
    trending: Candidates
    popularity: Candidates
    follows: dict[str, set[str]]
    now: pd.Timestamp
    p: CandidateParams
    vectors: np.ndarray  # unified vectors aligned with ``items`` (grows with add_content)
    preferred: dict[str, list[str]] = field(default_factory=dict)  # declared categories per user
    recent: Candidates | None = None  # most engaged in the last recent_window_hours
    ease_b: np.ndarray | None = None  # EASE weights (None: catalogue too large or lambda 0)
    activity: pd.DataFrame | None = None  # item_activity of the fitted catalogue
    _user_row: dict[str, int] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        model: EmbeddingModel,
        events: pd.DataFrame,
        content: pd.DataFrame,
        users: pd.DataFrame,
        now: pd.Timestamp,
        p: CandidateParams,
        emb_p: EmbeddingParams,
        index: ContentIndex | None = None,
    ) -> Retriever:
        """Build every source's state from events before ``now`` and the embedding model."""
        ev = events[events["timestamp"] < now]
        inter = build_interactions(ev, emb_p, item_ids=model.item_ids, user_ids=model.user_ids)
        cat = catalogue(content, ev).set_index("content_id").reindex(model.item_ids)
        items = pd.DataFrame(
            {
                "content_id": model.item_ids.astype(str),
                "creator_id": _text_or_none(cat["creator_id"]) if "creator_id" in cat else None,
                "available_at": pd.to_datetime(cat["available_at"], utc=True).to_numpy(),
            }
        )
        if index is None:
            index = ContentIndex.build(model.item_unified, items["content_id"].tolist(), p.index)
        r = cls(
            model=model,
            inter=inter,
            index=index,
            knn=Neighbourhood.fit(inter, p),
            items=items,
            trending=trending_scores(ev, model.item_ids, now, p),
            popularity=popularity_scores(ev, model.item_ids),
            follows=followed_creators(users, ev),
            now=now,
            p=p,
            vectors=model.item_unified,
            preferred=preferred_categories(users),
            activity=item_activity(ev, model.item_ids, now, p.item_windows_hours),
            recent=recent_scores(ev, model.item_ids, now, p.recent_window_hours),
        )
        if p.ease_lambda > 0 and 0 < inter.n_items <= p.ease_max_items:
            r.ease_b = fit_ease(inter.positive(), p.ease_lambda)
        r._user_row = inter.user_index()
        return r

    # ---- helpers
    @property
    def n_fit(self) -> int:
        return int(self.inter.n_items)

    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        return np.array([self._user_row.get(str(u), -1) for u in user_ids], dtype=np.int64)

    def _exclude(self, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Set seen and blocked contents to -inf (rows of unknown users keep everything)."""
        known = rows >= 0
        if known.any():
            mask = (self.inter.seen[rows[known]] + self.inter.blocked[rows[known]]).tocoo()
            sub = scores[known]
            sub[mask.row, mask.col] = NEG_INF
            scores[known] = sub
        return scores

    def _dense(self, rows: np.ndarray, fn: Any, width: int | None = None) -> np.ndarray:
        known = rows >= 0
        out = np.full((len(rows), self.n_fit if width is None else width), NEG_INF, dtype=np.float32)
        if known.any():
            out[known] = fn(rows[known])
        return out

    def profiles(self, rows: np.ndarray) -> np.ndarray:
        known = rows >= 0
        out = np.zeros((len(rows), self.model.item_unified.shape[1]), dtype=np.float32)
        out[known] = self.model.user_profile[rows[known]]
        return out

    # ---- sources (batch over user rows; -1 = user without training events)
    def content(self, rows: np.ndarray, k: int, queries: np.ndarray | None = None) -> list[Candidates]:
        q = self.profiles(rows) if queries is None else queries
        n_seen = np.diff(self.inter.seen.indptr)
        extra = int(max((n_seen[r] for r in rows if r >= 0), default=0))
        scores, ids = self.index.search(q, k + extra)
        out = []
        for i, r in enumerate(rows):
            ok = (ids[i] >= 0) & (scores[i] >= self.p.similarity_threshold) & (np.linalg.norm(q[i]) > 0)
            sel, sc = ids[i][ok], scores[i][ok]
            if r >= 0 and len(sel):
                excl = np.union1d(self.inter.seen[r].indices, self.inter.blocked[r].indices)
                keep = ~np.isin(sel, excl)
                sel, sc = sel[keep], sc[keep]
            out.append(Candidates(sel[:k].astype(np.int64), sc[:k].astype(np.float32)))
        return out

    def item_knn(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return _top(self._exclude(rows, self._dense(rows, lambda r: self.knn.item_scores(r, self.p))), k)

    def user_knn(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return _top(self._exclude(rows, self._dense(rows, lambda r: self.knn.user_scores(r, self.p))), k)

    def mf(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return _top(self._exclude(rows, self._dense(rows, lambda r: self.model.user_mf[r] @ self.model.item_mf.T)), k)

    def ease_scores(self, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """EASE scores of known user rows over the fitted catalogue (or its contents ``cols``)."""
        assert self.ease_b is not None
        return self.pair_state()._ease(rows, cols)

    def ease(self, rows: np.ndarray, k: int) -> list[Candidates]:
        if self.ease_b is None:
            return [Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in rows]
        return _top(self._exclude(rows, self._dense(rows, self.ease_scores)), k)

    def graph(self, rows: np.ndarray, k: int) -> list[Candidates]:
        has = np.linalg.norm(self.model.item_graph, axis=1) > 0

        def fn(r: np.ndarray) -> np.ndarray:
            s = self.model.user_graph[r] @ self.model.item_graph.T
            return np.where(has[None, :], s, NEG_INF)

        return _top(self._exclude(rows, self._dense(rows, fn)), k)

    def hybrid(self, rows: np.ndarray, k: int, parts: Mapping[str, list[Candidates]] | None = None) -> list[Candidates]:
        """alpha * content + (1 - alpha) * mean(item-kNN, user-kNN), each min-max normalised per user."""
        parts = dict(parts or {})
        for name in ("content", "item_knn", "user_knn"):
            if name not in parts:
                parts[name] = getattr(self, name)(rows, k)
        out = []
        a = self.p.alpha
        for i in range(len(rows)):
            total: dict[int, float] = {}
            for name, w in (("content", a), ("item_knn", (1 - a) / 2), ("user_knn", (1 - a) / 2)):
                c = parts[name][i]
                for item, s in zip(c.items.tolist(), minmax(c.scores).tolist(), strict=True):
                    total[item] = total.get(item, 0.0) + w * s
            if not total:
                out.append(Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32)))
                continue
            ids = np.fromiter(total.keys(), dtype=np.int64, count=len(total))
            sc = np.fromiter(total.values(), dtype=np.float32, count=len(total))
            order = np.lexsort((ids, -sc))[:k]
            out.append(Candidates(ids[order], sc[order]))
        return out

    def _global(self, ranked: Candidates, rows: np.ndarray, k: int) -> list[Candidates]:
        out = []
        for r in rows:
            if r >= 0:
                excl = np.union1d(self.inter.seen[r].indices, self.inter.blocked[r].indices)
                keep = ~np.isin(ranked.items, excl)
                out.append(Candidates(ranked.items[keep][:k], ranked.scores[keep][:k]))
            else:
                out.append(Candidates(ranked.items[:k], ranked.scores[:k]))
        return out

    def trending_for(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return self._global(self.trending, rows, k)

    def recent_for(self, rows: np.ndarray, k: int) -> list[Candidates]:
        if self.recent is None:
            return [Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in rows]
        return self._global(self.recent, rows, k)

    def popular(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return self._global(self.popularity, rows, k)

    def _age_hours(self) -> np.ndarray:
        avail = pd.to_datetime(self.items["available_at"], utc=True)
        return ((self.now - avail).dt.total_seconds() / 3600.0).to_numpy(dtype=np.float64)

    def fresh(self, rows: np.ndarray, k: int, queries: np.ndarray | None = None) -> list[Candidates]:
        age = self._age_hours()
        max_age = self.p.fresh_max_age_hours
        pool = np.flatnonzero((age >= 0) & (age <= max_age))
        q = self.profiles(rows) if queries is None else queries
        out = np.full((len(rows), len(self.items)), NEG_INF, dtype=np.float32)
        if len(pool):
            vec = self.item_vectors(pool)
            cos = q @ vec.T
            out[:, pool] = (np.exp(-age[pool] / max_age)[None, :] * (1.0 + cos) / 2.0).astype(np.float32)
        return _top(self._exclude_wide(rows, out), k)

    def followed(self, rows: np.ndarray, user_ids: Sequence[str], k: int) -> list[Candidates]:
        age = self._age_hours()
        creators = self.items["creator_id"].astype("string").fillna("").to_numpy(dtype=object)
        out = np.full((len(rows), len(self.items)), NEG_INF, dtype=np.float32)
        for i, u in enumerate(user_ids):
            f = self.follows.get(str(u))
            if f:
                sel = np.flatnonzero(np.isin(creators, list(f)) & (age >= 0))
                out[i, sel] = (1.0 / (1.0 + age[sel] / 24.0)).astype(np.float32)
        return _top(self._exclude_wide(rows, out), k)

    def _exclude_wide(self, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """:meth:`_exclude` on a score matrix that may include contents added after fitting."""
        head = np.ascontiguousarray(scores[:, : self.n_fit])
        scores[:, : self.n_fit] = self._exclude(rows, head)
        return scores

    def item_vectors(self, positions: np.ndarray) -> np.ndarray:
        """Unified vectors by catalogue position (fitted contents and contents added later)."""
        return self.vectors[positions]

    # ---- all sources, merging, one-user API
    def all_sources(self, user_ids: Sequence[str], k: int | None = None) -> dict[str, list[Candidates]]:
        k = k or self.p.per_source
        rows = self.user_rows(user_ids)
        q = self._queries(user_ids, rows)
        parts: dict[str, list[Candidates]] = {
            "content": self.content(rows, k, q),
            "item_knn": self.item_knn(rows, k),
            "user_knn": self.user_knn(rows, k),
        }
        parts["hybrid"] = self.hybrid(rows, k, parts)
        parts["mf"] = self.mf(rows, k)
        parts["graph"] = self.graph(rows, k)
        parts["ease"] = self.ease(rows, k)
        parts["trending"] = self.trending_for(rows, k)
        parts["recent"] = self.recent_for(rows, k)
        parts["fresh"] = self.fresh(rows, k, q)
        parts["followed"] = self.followed(rows, user_ids, k)
        return parts

    def pair_state(self) -> PairState:
        """The arrays the pair features read (:mod:`components.retrieval.pair_features`), over
        this retriever's fitted members; built once per retriever."""
        key = (id(self.model), id(self.knn), id(self.inter), id(self.ease_b), id(self.activity), self.p)
        got = self.__dict__.get("_pair_state")
        if got is not None and got[0] == key:
            return got[1]  # type: ignore[no-any-return]
        m = self.model
        state = PairState(
            user_mf=m.user_mf,
            item_mf=m.item_mf,
            user_graph=m.user_graph,
            item_graph=m.item_graph,
            item_unified=m.item_unified,
            knn=self.knn.state(self.p),
            ease_b=self.ease_b,
            ease_x=(self.inter.positive() > 0).astype(np.float32) if self.ease_b is not None else None,
            activity=self.activity_matrix if self.activity is not None else None,
            activity_columns=[str(c) for c in self.activity.columns] if self.activity is not None else [],
            n_fit=self.n_fit,
        )
        self.__dict__["_pair_state"] = (key, state)
        return state

    def dense_scores(
        self, rows: np.ndarray, source: str, queries: np.ndarray | None = None, cols: np.ndarray | None = None
    ) -> np.ndarray:
        """One pair source's raw scores of user rows over the fitted catalogue, or over its
        contents at positions ``cols`` only (NaN: undefined, e.g. unknown users, contents without
        a neighbour or without a graph vector); :meth:`PairState.scores`."""
        q = self.profiles(rows) if queries is None else queries
        return self.pair_state().scores(rows, source, q, cols)

    def _queries(self, user_ids: Sequence[str], rows: np.ndarray) -> np.ndarray:
        q = self.profiles(rows)
        for i, r in enumerate(rows):
            if r < 0:
                q[i] = self.cold_profile(str(user_ids[i]))
        return q

    def pair_stats(self, user_ids: Sequence[str], batch: int = 256) -> np.ndarray:
        """``[n_users, len(PAIR_SOURCES), 2]`` float32: each pair source's mean and standard
        deviation over the user's whole catalogue (NaN when undefined), the normalisers of the
        ``z_<source>`` features. Computed in batch, so that :meth:`pair_features_at` can then
        score any few contents of the user without scoring the catalogue."""
        users = [str(u) for u in user_ids]
        out = np.full((len(users), len(PAIR_SOURCES), 2), np.nan, dtype=np.float32)
        state = self.pair_state()
        for b0 in range(0, len(users), batch):
            chunk = users[b0 : b0 + batch]
            rows = self.user_rows(chunk)
            out[b0 : b0 + len(chunk)] = state.stats(rows, self._queries(chunk, rows))
        return out

    @property
    def activity_matrix(self) -> np.ndarray:
        got = self.__dict__.get("_activity_matrix")
        if got is None:
            assert self.activity is not None
            got = self.activity.to_numpy(dtype=np.float32)
            self.__dict__["_activity_matrix"] = got
        return got

    def pair_features_at(self, user_id: str, positions: np.ndarray, stats: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`pair_features` of one user and the contents at catalogue ``positions``, given
        the user's :meth:`pair_stats` row (:meth:`PairState.features_at`, what serving calls on
        the exported arrays)."""
        rows = self.user_rows([user_id])
        q = self._queries([user_id], rows)
        return self.pair_state().features_at(int(rows[0]), q[0], positions, stats)

    def pair_features(self, user_ids: Sequence[str], content_ids: Sequence[str], batch: int = 256) -> pd.DataFrame:
        """Ranking features of arbitrary (user, content) pairs, defined identically whether or not
        a source retrieved the pair: each pair source's raw score (``score_<source>``) and its
        z-score over the user's whole catalogue (``z_<source>``), plus the content's activity
        (:func:`item_activity`, prefixed ``item_``). NaN where a score is undefined."""
        users = np.asarray([str(u) for u in user_ids], dtype=object)
        pos = pd.Index(self.index.content_ids[: self.n_fit]).get_indexer(pd.Index([str(c) for c in content_ids]))
        out = {f"{kind}_{s}": np.full(len(users), np.nan, dtype=np.float32) for s in PAIR_SOURCES for kind in ("score", "z")}
        state = self.pair_state()
        order = np.argsort(users, kind="stable")
        uniq, starts = np.unique(users[order], return_index=True)
        bounds = np.append(starts, len(order))
        for b0 in range(0, len(uniq), batch):
            chunk = uniq[b0 : b0 + batch]
            rows = self.user_rows(list(chunk))
            q = self._queries(list(chunk), rows)
            for s in PAIR_SOURCES:
                dense = state.scores(rows, s, q)
                mean, std = normalisers(dense)
                for i in range(len(chunk)):
                    sel = order[bounds[b0 + i] : bounds[b0 + i + 1]]
                    p_ = pos[sel]
                    ok = p_ >= 0
                    vals = np.full(len(sel), np.nan, dtype=np.float32)
                    vals[ok] = dense[i, p_[ok]]
                    out[f"score_{s}"][sel] = vals
                    out[f"z_{s}"][sel] = z_scores(vals, mean[i], std[i])
        out.update(state.activity_columns_at(pos))
        return pd.DataFrame(out)

    def cold_profile(self, user_id: str) -> np.ndarray:
        """Profile of a user without training events: preferred categories, when known."""
        prefs = self.preferred.get(user_id, [])
        return self.model.profile_from_categories(prefs) if prefs else np.zeros(self.model.item_unified.shape[1], np.float32)

    def retrieve(self, user_id: str, k: int | None = None) -> pd.DataFrame:
        """Merged candidates of one user: ``content_id, score, source``."""
        k = k or self.p.per_user
        parts = self.all_sources([user_id], max(k, self.p.per_source))
        fallback = self.popular(self.user_rows([user_id]), k)[0]
        items, scores, sources = merge({s: v[0] for s, v in parts.items()}, self.p.mix, k, fallback)
        return pd.DataFrame(
            {"content_id": [self.index.content_ids[i] for i in items], "score": scores, "source": sources}
        )

    def source_frame(self, user_id: str, source: str, k: int | None = None) -> pd.DataFrame:
        """One source's candidates for one user: ``content_id, score, source``."""
        c = self.all_sources([user_id], k or self.p.per_source)[source][0]
        return pd.DataFrame(
            {"content_id": [self.index.content_ids[i] for i in c.items], "score": c.scores, "source": source}
        )

    def add_content(self, content: pd.DataFrame) -> np.ndarray:
        """Embed new uploads from their metadata and add them to the index (no rebuild)."""
        vec = self.model.encoder.embed(content.reset_index(drop=True))
        ids = self.index.add(content["content_id"].astype(str).tolist(), vec)
        upload = pd.to_datetime(content["upload_timestamp"], utc=True) if "upload_timestamp" in content else pd.Series(self.now, index=content.index)
        new = pd.DataFrame(
            {
                "content_id": content["content_id"].astype(str).to_numpy(),
                "creator_id": _text_or_none(content["creator_id"]) if "creator_id" in content else None,
                "available_at": upload.fillna(self.now).to_numpy(),
            }
        )
        self.items = pd.concat([self.items, new], ignore_index=True)
        self.vectors = np.vstack([self.vectors, vec]).astype(np.float32)
        return ids


def fit_retrieval(
    events: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    cut: pd.Timestamp,
    cp: CandidateParams,
    ep: EmbeddingParams,
    *,
    embeddings: EmbeddingModel | None = None,
    index: ContentIndex | None = None,
) -> Retriever:
    """Every retrieval source as of ``cut`` from the events before it; the embeddings are fitted
    on those events unless given (a stage's saved model), the index built unless given. The
    retrieval step of :class:`components.pipeline.Pipeline`."""
    model = embeddings if embeddings is not None else fit_embeddings(events, content, ep, now=cut)[0]
    return Retriever.fit(model, events, content, users, cut, cp, ep, index=index)


def trending_scores(events: pd.DataFrame, item_ids: np.ndarray, now: pd.Timestamp, p: CandidateParams) -> Candidates:
    """Engagement growth over the last window vs. the one before (ranked, ties by volume)."""
    g = pd.Timedelta(hours=p.trending_window_hours)
    ev = events[events["event_type"].isin(sorted(ENGAGEMENT_TYPES)) & events["content_id"].notna()]
    idx = pd.Index(item_ids.astype(str))
    pos = idx.get_indexer(ev["content_id"].astype(str))
    t = ev["timestamp"]
    recent = (t >= now - g) & (t < now) & (pos >= 0)
    prev = (t >= now - 2 * g) & (t < now - g) & (pos >= 0)
    e1 = np.bincount(pos[recent.to_numpy()], minlength=len(idx)).astype(np.float64)
    e0 = np.bincount(pos[prev.to_numpy()], minlength=len(idx)).astype(np.float64)
    growth = (e1 - e0) / np.maximum(e0, 1.0)
    ok = np.flatnonzero(e1 >= p.trending_min_engagements)
    order = ok[np.lexsort((ok, -e1[ok], -growth[ok]))]
    return Candidates(order.astype(np.int64), growth[order].astype(np.float32))


def recent_scores(events: pd.DataFrame, item_ids: np.ndarray, now: pd.Timestamp, window_hours: float) -> Candidates:
    """Contents ranked by engagements in ``[now - window, now)`` (what is being watched now)."""
    ev = events[events["event_type"].isin(sorted(ENGAGEMENT_TYPES)) & events["content_id"].notna()]
    t = ev["timestamp"]
    ev = ev[((t >= now - pd.Timedelta(hours=window_hours)) & (t < now)).to_numpy()]
    pos = pd.Index(np.asarray(item_ids).astype(str)).get_indexer(ev["content_id"].astype(str))
    cnt = np.bincount(pos[pos >= 0], minlength=len(item_ids)).astype(np.float64)
    ok = np.flatnonzero(cnt > 0)
    order = ok[np.lexsort((ok, -cnt[ok]))]
    return Candidates(order.astype(np.int64), cnt[order].astype(np.float32))


def popularity_scores(events: pd.DataFrame, item_ids: np.ndarray, positive_types: Sequence[str] = POSITIVE_TYPES) -> Candidates:
    """The baseline: contents ranked by positive events in the training period."""
    ev = interaction_events(events)
    ev = ev[ev["event_type"].isin(list(positive_types))]
    pos = pd.Index(item_ids.astype(str)).get_indexer(ev["content_id"].astype(str))
    cnt = np.bincount(pos[pos >= 0], minlength=len(item_ids)).astype(np.float64)
    ok = np.flatnonzero(cnt > 0)
    order = ok[np.lexsort((ok, -cnt[ok]))]
    return Candidates(order.astype(np.int64), cnt[order].astype(np.float32))


def merge(
    lists: Mapping[str, Candidates], mix: Mapping[str, float], k: int, fallback: Candidates | None = None
) -> tuple[list[int], list[float], list[str]]:
    """Quota merge: ``floor(quota * k)`` slots per source in mix order, then a quota-weighted fill.

    Sources outside ``mix`` only fill slots every mixed source left empty; ``fallback`` (the
    popularity list) fills what is still empty after that. Returns (positions, scores
    normalised per source to [0, 1], source of each candidate).
    """
    if fallback is not None:
        lists = {**lists, BASELINE: fallback}
    order = [s for s in mix if s in lists] + [s for s in lists if s not in mix and s != BASELINE]
    if fallback is not None:
        order.append(BASELINE)
    norm = {s: minmax(lists[s].scores) for s in order}
    taken: dict[int, tuple[float, str]] = {}
    cursor = dict.fromkeys(order, 0)

    def take(src: str, n: int) -> None:
        c = lists[src]
        got = 0
        while got < n and cursor[src] < len(c.items) and len(taken) < k:
            item = int(c.items[cursor[src]])
            if item not in taken:
                taken[item] = (float(norm[src][cursor[src]]), src)
                got += 1
            cursor[src] += 1

    for s in order:
        take(s, int(np.floor(float(mix.get(s, 0.0)) * k + 1e-9)))
    # fill: the remaining slots in proportion to the quotas of sources that still have contents
    weight = {s: float(mix.get(s, 0.0)) for s in order}
    while len(taken) < k:
        live = [s for s in order if cursor[s] < len(lists[s].items) and weight[s] > 0]
        if not live:
            live = [s for s in order if cursor[s] < len(lists[s].items) and s != BASELINE]
            weight = dict.fromkeys(order, 1.0)
        if not live and BASELINE in order and cursor[BASELINE] < len(lists[BASELINE].items):
            live = [BASELINE]
        if not live:
            break
        total = sum(weight[s] for s in live)
        remaining = k - len(taken)
        for s in live:
            take(s, max(1, int(np.floor(weight[s] / total * remaining))))
    items = list(taken)
    return items, [taken[i][0] for i in items], [taken[i][1] for i in items]


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class HoldOut:
    cut: pd.Timestamp
    train: pd.DataFrame
    truth: dict[str, set[str]]  # user -> test contents
    test_positives: int
    dropped_seen: int
    dropped_unavailable: int


def hold_out(events: pd.DataFrame, content: pd.DataFrame, ev_p: EvalParams) -> HoldOut:
    """Split at the ``cut_quantile`` of interaction times; test = later positives on new contents."""
    inter = interaction_events(events)
    cut = quantile_cut(inter["timestamp"], ev_p.cut_quantile, interpolation="linear")
    train = events[before(events["timestamp"], cut)]
    tr = interaction_events(train)
    test = inter[~before(inter["timestamp"], cut) & inter["event_type"].isin(list(ev_p.positive_types))]
    test = test[test["user_id"].isin(set(tr["user_id"].astype(str)))]
    pairs = test[["user_id", "content_id"]].astype(str).drop_duplicates()
    seen = set(zip(tr["user_id"].astype(str), tr["content_id"].astype(str), strict=True))
    is_seen = np.array([(u, c) in seen for u, c in zip(pairs["user_id"], pairs["content_id"], strict=True)], dtype=bool)
    available = set(catalogue(content, train, cut)["content_id"])
    is_avail = pairs["content_id"].isin(available).to_numpy()
    keep = pairs[~is_seen & is_avail]
    truth: dict[str, set[str]] = {}
    for u, c in zip(keep["user_id"], keep["content_id"], strict=True):
        truth.setdefault(u, set()).add(c)
    return HoldOut(cut, train, truth, len(keep), int(is_seen.sum()), int((~is_seen & ~is_avail).sum()))


def _recall(lists: Sequence[Sequence[str]], truth: Sequence[set[str]], k: int) -> float:
    vals = [len(t.intersection(lst[:k])) / len(t) for lst, t in zip(lists, truth, strict=True)]
    return round(float(np.mean(vals)), 6) if vals else 0.0


@dataclass
class HoldOutRun:
    """Everything fitted at the cut and every test user's candidates from every source."""

    split: HoldOut
    model: EmbeddingModel
    retriever: Retriever
    users: list[str]
    parts: dict[str, list[Candidates]]  # source (and the popularity baseline) -> one per user


def hold_out_run(
    events: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    emb_p: EmbeddingParams,
    p: CandidateParams,
    ev_p: EvalParams,
    batch: int = 256,
) -> HoldOutRun:
    """Fit embeddings and sources on the events before the cut; retrieve for every test user."""
    split = hold_out(events, content, ev_p)
    retr = fit_retrieval(split.train, content, users, split.cut, p, emb_p)
    model = retr.model
    user_list = sorted(split.truth)
    if ev_p.max_users and len(user_list) > ev_p.max_users:
        rng = np.random.default_rng(p.seed)
        user_list = sorted(rng.choice(user_list, size=ev_p.max_users, replace=False).tolist())
    k_max = max(ev_p.ks)
    parts: dict[str, list[Candidates]] = {s: [] for s in (*SOURCES, BASELINE)}
    for start in range(0, len(user_list), batch):
        chunk = user_list[start : start + batch]
        got = retr.all_sources(chunk, max(k_max, p.per_source))
        got[BASELINE] = retr.popular(retr.user_rows(chunk), k_max)
        for s, lst in got.items():
            parts[s].extend(lst)
    return HoldOutRun(split, model, retr, user_list, parts)


def recall_report(run: HoldOutRun, mix: Mapping[str, float], ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """Recall@K of every source, the popularity baseline and the quota-merged set."""
    ids = run.retriever.index.content_ids
    truth = [run.split.truth[u] for u in run.users]
    k_max = max(ks)
    out: dict[str, dict[str, float]] = {}
    for s, lst in run.parts.items():
        lists = [[ids[i] for i in c.items[:k_max]] for c in lst]
        out[s] = {f"@{k}": _recall(lists, truth, k) for k in ks}
    merged: dict[str, float] = {}
    for k in ks:
        lists = []
        for i in range(len(run.users)):
            one = {s: v[i] for s, v in run.parts.items() if s != BASELINE}
            items, _, _ = merge(one, mix, k, run.parts[BASELINE][i])
            lists.append([ids[j] for j in items])
        merged[f"@{k}"] = _recall(lists, truth, k)
    out["merged"] = merged
    return out


def evaluate(
    events: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    emb_p: EmbeddingParams,
    p: CandidateParams,
    ev_p: EvalParams,
    batch: int = 256,
) -> dict[str, Any]:
    """Recall@K per source, merged and popularity on a time-based hold-out (see module doc)."""
    run = hold_out_run(events, content, users, emb_p, p, ev_p, batch)
    recall = recall_report(run, p.mix, ev_p.ks)
    lift = {
        f"@{k}": (round(recall["merged"][f"@{k}"] / recall[BASELINE][f"@{k}"], 4) if recall[BASELINE][f"@{k}"] > 0 else None)
        for k in ev_p.ks
    }
    rows = run.retriever.user_rows(run.users[:500])
    queries = run.retriever.profiles(rows[rows >= 0])
    split = run.split
    return {
        "cut": split.cut.isoformat(),
        "train_events": len(split.train),
        "test_users": len(run.users),
        "test_positives": int(sum(len(split.truth[u]) for u in run.users)),
        "test_pairs_dropped_seen_before_cut": split.dropped_seen,
        "test_pairs_dropped_unavailable_at_cut": split.dropped_unavailable,
        "catalogue": int(run.retriever.n_fit),
        "positive_types": list(ev_p.positive_types),
        "recall": recall,
        "merged_lift_over_popularity": lift,
        "index": {"type": p.index.type, **index_recall(run.retriever.index, run.model.item_unified, queries, p.index.recall_k)},
    }


# ---------------------------------------------------------------------------------------------
# Stage


@dataclass(frozen=True)
class CandidatesResult:
    metrics: dict[str, Any]
    index_version: str
    users: int
    rows: int
    seconds: float


def candidate_table(retr: Retriever, user_ids: Sequence[str], k: int, batch: int = 256) -> pd.DataFrame:
    """Merged candidates of many users: ``user_id, content_id, score, source, rank``."""
    frames = []
    ids = retr.index.content_ids
    for start in range(0, len(user_ids), batch):
        chunk = list(user_ids[start : start + batch])
        parts = retr.all_sources(chunk, max(k, retr.p.per_source))
        fallback = retr.popular(retr.user_rows(chunk), k)
        for i, u in enumerate(chunk):
            items, scores, sources = merge({s: v[i] for s, v in parts.items()}, retr.p.mix, k, fallback[i])
            frames.append(
                pd.DataFrame(
                    {
                        "user_id": u,
                        "content_id": [ids[j] for j in items],
                        "score": np.asarray(scores, dtype=np.float32),
                        "source": sources,
                        "rank": np.arange(len(items), dtype=np.int32),
                    }
                )
            )
    if not frames:
        return pd.DataFrame({"user_id": [], "content_id": [], "score": [], "source": [], "rank": []})
    return pd.concat(frames, ignore_index=True)


def run(params: Mapping[str, Any], paths: DataPaths, dataset: str | None = None) -> CandidatesResult:
    """Stage: index + candidates for every user at the end of the data, and hold-out recall."""
    t0 = time.perf_counter()
    dataset = dataset or Params.of(params).data.source
    p = CandidateParams.from_params(params, dataset)
    emb_p = EmbeddingParams.from_params(params)
    ev_p = EvalParams.from_params(params, dataset)
    events, content, users = read_interim(paths)
    model = load_model(paths.of("embeddings"))
    now = pd.Timestamp(interaction_events(events)["timestamp"].max()) + pd.Timedelta(milliseconds=1)
    retr = Retriever.fit(model, events, content, users, now, p, emb_p)
    out_index = retr.index.save(paths.of("faiss_index"))
    table = candidate_table(retr, [str(u) for u in model.user_ids], p.per_user)
    paths.of("candidates").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), paths.of("candidates_table"))
    metrics = {
        "dataset": dataset,
        "index_version": out_index.name,
        "users": len(model.user_ids),
        "candidates": len(table),
        "candidates_per_source": {str(k): int(v) for k, v in table["source"].value_counts().sort_index().items()},
        "evaluation": evaluate(events, content, users, emb_p, p, ev_p),
    }
    write_metrics(paths.of("metrics_candidates"), metrics)
    seconds = round(time.perf_counter() - t0, 3)
    log.info("candidates: %d rows for %d users, index %s, in %.1f s", len(table), len(model.user_ids), out_index.name, seconds)
    return CandidatesResult(metrics, out_index.name, len(model.user_ids), len(table), seconds)


# ---------------------------------------------------------------------------------------------
# Evaluation on all three data sets


def evaluate_dataset(params: Mapping[str, Any], dataset: str, work: Path | None = None) -> dict[str, Any]:
    """Hold-out recall of one named data set, ingested and preprocessed into a throw-away folder."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        paths = prepare_data(params, dataset, Path(tmp))
        events, content, users = read_interim(paths)
    p = CandidateParams.from_params(params, dataset)
    emb_p = EmbeddingParams.from_params(params)
    return {"dataset": dataset, **evaluate(events, content, users, emb_p, p, EvalParams.from_params(params, dataset))}


def recall_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table: one row per source (plus merged and popularity), one column per data set × K."""
    ds = list(results)
    ks = list(next(iter(results.values()))["recall"]["merged"]) if results else []
    head = "| source | " + " | ".join(f"{d} {k}" for d in ds for k in ks) + " |"
    sep = "|---" * (1 + len(ds) * len(ks)) + "|"
    lines = [head, sep]
    for s in (*SOURCES, "merged", BASELINE):
        cells = [f"{results[d]['recall'][s][k]:.3f}" for d in ds for k in ks]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--evaluate-all", action="store_true", help="hold-out recall on synthetic, KuaiRand and MovieLens")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=DATASETS)
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    if args.evaluate_all:
        results = {}
        for d in args.datasets:
            res = evaluate_dataset(params, d)
            write_metrics(paths.of("metrics_candidates_dataset", dataset=d), res)
            results[d] = res
        print(recall_table(results))
        return 0
    r = run(params, paths)
    ev = r.metrics["evaluation"]
    print(
        f"candidates: {r.rows} rows for {r.users} users, index {r.index_version}; hold-out recall merged "
        f"{ev['recall']['merged']} vs popularity {ev['recall'][BASELINE]} in {r.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
