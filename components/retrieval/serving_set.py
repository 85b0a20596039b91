"""The serving artefact set: its format, its in-memory form and its writer (the ``export`` side).

Layout of ``data/serving/artifacts/`` (:func:`artifacts_dir`)::

    manifest.json          schema version, producing versions, and shape / dtype of every array
    index.faiss            the FAISS content index (read with IO_FLAG_MMAP_IFC: flat codes mapped)
    contents.parquet       content ids in catalogue (index id) order
    catalogue/*.npy        item vectors (DPP, real-time interest, content score)
    snapshot/              per-user candidates and pair normalisers (:class:`CandidateSnapshot`)
    users/*.npy            per snapshot row: content profile, model row, known-to-the-batch flag
    pair/*.npy             :class:`~components.retrieval.pair_features.PairState` arrays (CSR as
                           data / indices / indptr)
    lists/*.npy            trending, recent and popular lists (positions, scores)
    seen/                  contents each user interacted with (CSR over catalogue positions)
    reporters.parquet      (content_id, user_id) of every report (moderation counts)
    encoder.pkl            the content encoder: vectors of contents uploaded after the export
    items/                 item feature rows (:class:`~components.features.item_cache.ItemFeatureCache`)

Every array is an ``.npy`` file that serving opens with ``mmap_mode="r"``
(:mod:`components.serving.artifacts`, the reader): N worker processes on one host share one
copy through the page cache. This module imports no fitting code (numpy, pandas, pyarrow,
scipy, FAISS, the pair-feature maths), so both the export stage and serving use it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from components.core.catalog import DataPaths
from components.core.integrity import file_sums
from components.core.io import atomic_write_text
from components.retrieval import pair_features
from components.retrieval.faiss_search import search
from components.retrieval.pair_features import PAIR_SOURCES, PairState
from components.retrieval.snapshot import CandidateSnapshot

if TYPE_CHECKING:
    from components.features.item_cache import ItemFeatureCache

SCHEMA_VERSION = 1
ENCODER_FILE = "encoder.pkl"


def artifacts_dir(paths: DataPaths) -> Path:
    """Where the export stage writes the set and serving reads it (``data/serving/artifacts``)."""
    return paths.of("serving_artifacts")


def feature_version() -> str:
    """Version of the pair-feature definition: its sources and the source of the module that
    computes them (an exported set is only valid for the code that will compute its features)."""
    h = hashlib.sha256(",".join(PAIR_SOURCES).encode())
    h.update(Path(pair_features.__file__).read_bytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The set in memory


@dataclass(frozen=True)
class RankedList:
    """A global list (trending, recent, popular): catalogue positions and scores, descending."""

    items: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class SeenSets:
    """Contents each user interacted with before the cut, as CSR rows over catalogue positions."""

    users: Sequence[str]
    indptr: np.ndarray
    positions: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rows", {str(u): i for i, u in enumerate(self.users)})

    def of(self, user_id: str) -> np.ndarray:
        r = self._rows.get(user_id, -1)  # type: ignore[attr-defined]
        if r < 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.positions[int(self.indptr[r]) : int(self.indptr[r + 1])], dtype=np.int64)

    @classmethod
    def from_sets(cls, seen: Mapping[str, frozenset[str]], content_ids: Sequence[str]) -> SeenSets:
        """From user -> content ids (contents outside the catalogue are dropped: never served)."""
        catalogue = pd.Index([str(c) for c in content_ids])
        users = [str(u) for u in seen]
        rows = [catalogue.get_indexer(pd.Index(sorted(seen[u]))) for u in users]
        rows = [np.sort(r[r >= 0]).astype(np.int32) for r in rows]
        counts = np.array([len(r) for r in rows], dtype=np.int64)
        return cls(
            users=users,
            indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            positions=np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32),
        )


@dataclass
class ServingIndex:
    """The exported FAISS index addressed by catalogue position (ids are positions), and the
    contents added since the export (uploads) in an exact inner-product index of their own:
    the exported index is memory-mapped read-only and shared by the workers, so it cannot grow
    (FAISS aborts the process on an add to a mapped index). A search asks both and keeps the
    best ``k``."""

    index: Any
    type: str
    ef_search: int
    added: Any = None  # faiss IndexIDMap2(IndexFlatIP) of the contents added since the export

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) + self.n_added

    @property
    def n_added(self) -> int:
        return int(self.added.ntotal) if self.added is not None else 0

    def add(self, vectors: np.ndarray, positions: np.ndarray) -> None:
        """Index contents added after the export at their catalogue ``positions``."""
        if self.added is None:
            import faiss

            self.added = faiss.IndexIDMap2(faiss.IndexFlatIP(int(self.index.d)))
        self.added.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(positions, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = search(self.index, queries, k, hnsw_ef_search=self.ef_search if self.type == "hnsw" else None)
        if not self.n_added:
            return scores, ids
        s2, i2 = search(self.added, queries, k)
        scores = np.concatenate([np.where(ids < 0, -np.inf, scores), s2], axis=1)
        ids = np.concatenate([ids, i2], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


@dataclass
class ArtifactSet:
    """Everything a request reads. ``snapshot`` rows are users; ``queries`` / ``model_rows`` /
    ``known`` are aligned with them (``known``: the batch had the user's events; the others are
    users with declared categories only, and the cold row)."""

    now: pd.Timestamp
    content_ids: list[str]
    item_vectors: np.ndarray  # float32 [contents, d]
    index: ServingIndex
    snapshot: CandidateSnapshot
    queries: np.ndarray  # float32 [snapshot rows, d]
    model_rows: np.ndarray  # int64 [snapshot rows]: the PairState's user row, -1 if none
    known: np.ndarray  # bool [snapshot rows]
    pair: PairState
    trending: RankedList
    recent: RankedList | None
    popular: RankedList
    seen: SeenSets
    reporters: dict[str, set[str]]
    items: ItemFeatureCache | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    # the content encoder (new uploads' vectors from their metadata), pickled: written by the
    # export (``encoder.pkl``); serving reads the file only when the first upload arrives
    encoder_pickle: bytes | None = None
    encoder_file: Path | None = None


# ---------------------------------------------------------------------------------------------
# Writing


def _put(root: Path, name: str, array: np.ndarray) -> None:
    path = root / f"{name}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(array))


def _put_csr(root: Path, name: str, m: sp.csr_matrix) -> list[int]:
    m = m.tocsr()
    m.sort_indices()
    _put(root, f"{name}.data", m.data)
    _put(root, f"{name}.indices", m.indices)
    _put(root, f"{name}.indptr", m.indptr)
    return [int(m.shape[0]), int(m.shape[1])]


def _put_list(root: Path, name: str, ranked: RankedList) -> None:
    _put(root, f"lists/{name}.items", np.asarray(ranked.items, dtype=np.int64))
    _put(root, f"lists/{name}.scores", np.asarray(ranked.scores, dtype=np.float32))


def _array_table(root: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(root.rglob("*.npy")):
        a = np.load(path, mmap_mode="r")
        out[path.relative_to(root).as_posix()] = {"shape": list(a.shape), "dtype": str(a.dtype)}
    return out


def _write_items(root: Path, items: ItemFeatureCache) -> dict[str, Any]:
    d = root / "items"
    d.mkdir(parents=True, exist_ok=True)
    _put(root, "items/matrix", np.asarray(items.matrix))
    for i, view in enumerate(items.view_cols):
        _put(root, f"items/view{i}.cols", np.asarray(items.view_cols[view], dtype=np.int64))
        _put(root, f"items/view{i}.ts", np.asarray(items.view_ts[view]))
    creators = np.asarray(items.creators, dtype=object)
    pq.write_table(
        pa.table(
            {
                "content_id": pa.array([str(c) for c in items.ids], pa.string()),
                "creator_id": pa.array([None if c is None else str(c) for c in creators] if len(creators) else [None] * len(items.ids), pa.string()),
            }
        ),
        d / "ids.parquet",
    )
    return {
        "columns": list(items.columns),
        "asof": items.asof.isoformat() if items.asof is not None else None,
        "views": [{"name": v, "ttl_s": int(items.view_ttl_s.get(v, 0))} for v in items.view_cols],
        "has_creators": bool(len(creators)),
    }


def write_artifacts(directory: Path, s: ArtifactSet, producer: Mapping[str, Any]) -> Path:
    """Write the set (replacing one already there, atomically by directory rename)."""
    import faiss

    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    faiss.write_index(s.index.index, str(tmp / "index.faiss"))
    pq.write_table(pa.table({"content_id": pa.array(s.content_ids, pa.string())}), tmp / "contents.parquet")
    _put(tmp, "catalogue/item_vectors", np.asarray(s.item_vectors, dtype=np.float32))
    s.snapshot.save(tmp / "snapshot")
    _put(tmp, "users/queries", np.asarray(s.queries, dtype=np.float32))
    _put(tmp, "users/model_rows", np.asarray(s.model_rows, dtype=np.int64))
    _put(tmp, "users/known", np.asarray(s.known, dtype=bool))
    p = s.pair
    for name in ("user_mf", "item_mf", "user_graph", "item_graph"):
        _put(tmp, f"pair/{name}", np.asarray(getattr(p, name), dtype=np.float32))
    _put(tmp, "pair/knn.b_user", p.knn.b_user)
    _put(tmp, "pair/knn.b_item", p.knn.b_item)
    shapes = {name: _put_csr(tmp, f"pair/knn.{name}", getattr(p.knn, name)) for name in ("residual", "observed", "item_sim", "user_sim")}
    if p.ease_b is not None and p.ease_x is not None:
        _put(tmp, "pair/ease_b", p.ease_b)
        shapes["ease_x"] = _put_csr(tmp, "pair/ease_x", p.ease_x)
    if p.activity is not None:
        _put(tmp, "pair/activity", np.asarray(p.activity, dtype=np.float32))
    _put_list(tmp, "trending", s.trending)
    _put_list(tmp, "popular", s.popular)
    if s.recent is not None:
        _put_list(tmp, "recent", s.recent)
    _put(tmp, "seen/indptr", s.seen.indptr)
    _put(tmp, "seen/positions", s.seen.positions)
    pq.write_table(pa.table({"user_id": pa.array([str(u) for u in s.seen.users], pa.string())}), tmp / "seen" / "users.parquet")
    pairs = [(c, u) for c, who in s.reporters.items() for u in sorted(who)]
    pq.write_table(
        pa.table({"content_id": pa.array([c for c, _ in pairs], pa.string()), "user_id": pa.array([u for _, u in pairs], pa.string())}),
        tmp / "reporters.parquet",
    )
    items_meta = _write_items(tmp, s.items) if s.items is not None else None
    if s.encoder_pickle is not None:
        (tmp / ENCODER_FILE).write_bytes(s.encoder_pickle)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "feature_version": feature_version(),
        "producer": dict(producer),
        "now": pd.Timestamp(s.now).isoformat(),
        "contents": len(s.content_ids),
        "users": s.snapshot.n_users,
        "index": {"type": s.index.type, "ef_search": s.index.ef_search, "ntotal": s.index.ntotal, "dim": int(s.index.index.d)},
        "pair": {
            "sources": list(PAIR_SOURCES),
            "columns": pair_features.feature_columns(p.activity_columns),
            "activity_columns": list(p.activity_columns),
            "n_fit": int(p.n_fit),
            "knn": {"mu": float(p.knn.mu), "scoring": p.knn.scoring, "shrinkage": float(p.knn.shrinkage)},
            "sparse_shapes": shapes,
            "ease": p.ease_b is not None,
        },
        "lists": {"recent": s.recent is not None},
        "item_features": items_meta,
        "arrays": _array_table(tmp),
        "files": file_sums(tmp),  # checked by serving before anything is loaded
    }
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2) + "\n")  # last
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    return directory


__all__ = [
    "ENCODER_FILE",
    "SCHEMA_VERSION",
    "ArtifactSet",
    "RankedList",
    "SeenSets",
    "ServingIndex",
    "artifacts_dir",
    "feature_version",
    "write_artifacts",
]
