"""The FAISS content index (:class:`ContentIndex`) and its recall against exact search.

FAISS over the unified content embeddings (inner product on L2-normalised vectors = cosine),
of the type ``candidates.index.type``: ``flat`` (exact), ``hnsw``, ``ivf`` or ``ivfpq``
(optionally re-ranked with exact vectors, ``refine_factor``). Every index carries explicit
int64 ids (``IndexIDMap2`` around flat / HNSW / refined IVF-PQ, native ids for IVF), so new
uploads are added with ``add_with_ids`` without a rebuild. An index is saved as a versioned
artefact: ``<dir>/<version>/{index.faiss, ids.parquet, manifest.json}`` plus ``<dir>/LATEST``;
the version is a content hash, so the same vectors and settings give the same version. The
pipeline builds single-threaded (HNSW insertion with several threads is not reproducible).
The search rule itself is shared with serving (:mod:`components.retrieval.faiss_search`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.io import atomic_write_text
from components.retrieval.faiss_search import search, set_search_params
from components.retrieval.params import IndexParams

ADD_BATCH = 100_000


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
