"""Serving's reader of the exported artefact set (:mod:`components.retrieval.serving_set`).

:func:`open_artifacts` maps every array with ``mmap_mode="r"`` (N worker processes on one host
share one copy through the page cache; start-up reads no events and fits nothing) and refuses a
set it cannot serve (missing, a file whose SHA-256 differs from the manifest's or that the manifest does
not list, checked before anything is opened; another schema version, arrays of the wrong shape or dtype,
another pair-feature version, a production model asking for pair features the set does not
produce) with an :class:`ArtifactError` that says what to run. It imports no training code:
the set's format, the pair-feature maths and the FAISS search rule only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

from components.core.integrity import IntegrityError, check_sums
from components.retrieval.faiss_search import set_search_params
from components.retrieval.pair_features import PAIR_SOURCES, KnnState, PairState, as_csr
from components.retrieval.serving_set import (
    ENCODER_FILE,
    SCHEMA_VERSION,
    ArtifactSet,
    RankedList,
    SeenSets,
    ServingIndex,
    artifacts_dir,
    feature_version,
)
from components.retrieval.snapshot import CandidateSnapshot

if TYPE_CHECKING:
    from components.features.item_cache import ItemFeatureCache

log = logging.getLogger(__name__)

HOW_TO_FIX = "run `dvc repro export` (or `python -m components.retrieval.export --params params.yaml`)"


class ArtifactError(RuntimeError):
    """The serving artefact set is missing or does not match this serving code."""


# ---------------------------------------------------------------------------------------------
# Reading


def read_manifest(directory: Path) -> dict[str, Any]:
    """The set's manifest, checked against this code (:class:`ArtifactError` otherwise)."""
    path = Path(directory) / "manifest.json"
    if not path.exists():
        raise ArtifactError(f"no serving artefact set at {directory} (manifest.json missing): {HOW_TO_FIX}")
    manifest: dict[str, Any] = json.loads(path.read_text())
    got = manifest.get("schema_version")
    if got != SCHEMA_VERSION:
        raise ArtifactError(
            f"serving artefact set {directory} has schema version {got}, this serving code reads {SCHEMA_VERSION}: {HOW_TO_FIX}"
        )
    fv = feature_version()
    if manifest.get("feature_version") != fv:
        raise ArtifactError(
            f"serving artefact set {directory} was exported for pair-feature version {manifest.get('feature_version')}, "
            f"this serving code computes version {fv}: {HOW_TO_FIX}"
        )
    return manifest


class _Arrays:
    """Memory-mapped arrays of a set, each checked against the manifest's shape and dtype."""

    def __init__(self, root: Path, table: Mapping[str, Mapping[str, Any]]) -> None:
        self.root, self.table = root, table
        for name, spec in table.items():
            path = root / name
            if not path.exists():
                raise ArtifactError(f"serving artefact set {root}: {name} is missing: {HOW_TO_FIX}")
            a = np.load(path, mmap_mode="r")
            if list(a.shape) != list(spec["shape"]) or str(a.dtype) != spec["dtype"]:
                raise ArtifactError(
                    f"serving artefact set {root}: {name} is {a.dtype}{list(a.shape)}, the manifest says "
                    f"{spec['dtype']}{list(spec['shape'])}: {HOW_TO_FIX}"
                )

    def has(self, name: str) -> bool:
        return f"{name}.npy" in self.table

    def __getitem__(self, name: str) -> np.ndarray:
        if not self.has(name):
            raise ArtifactError(f"serving artefact set {self.root}: the manifest lists no {name}.npy: {HOW_TO_FIX}")
        # plain ndarray views of the mapping: np.memmap's Python-level slicing costs per request
        return np.load(self.root / f"{name}.npy", mmap_mode="r").view(np.ndarray)

    def csr(self, name: str, shape: Sequence[int]) -> sp.csr_matrix:
        parts = {k: self[f"{name}.{k}"] for k in ("data", "indices", "indptr")}
        return as_csr(parts, (int(shape[0]), int(shape[1])))


def _check(ok: bool, root: Path, what: str) -> None:
    if not ok:
        raise ArtifactError(f"serving artefact set {root} is inconsistent: {what}: {HOW_TO_FIX}")


def _read_items(root: Path, arrays: _Arrays, meta: Mapping[str, Any]) -> ItemFeatureCache:
    from components.features.item_cache import ItemFeatureCache

    ids = pq.read_table(root / "items" / "ids.parquet")
    views = meta["views"]
    return ItemFeatureCache(
        ids=pd.Index(ids["content_id"].to_pylist()),
        matrix=arrays["items/matrix"],
        columns=list(meta["columns"]),
        asof=datetime.fromisoformat(meta["asof"]) if meta["asof"] else None,
        creators=np.asarray(ids["creator_id"].to_pylist(), dtype=object) if meta["has_creators"] else np.array([], dtype=object),
        view_cols={v["name"]: np.asarray(arrays[f"items/view{i}.cols"]) for i, v in enumerate(views)},
        view_ts={v["name"]: arrays[f"items/view{i}.ts"] for i, v in enumerate(views)},
        view_ttl_s={v["name"]: int(v["ttl_s"]) for v in views},
    )


def _read_index(root: Path, meta: Mapping[str, Any]) -> ServingIndex:
    import faiss

    path = root / "index.faiss"
    if not path.exists():
        raise ArtifactError(f"serving artefact set {root}: index.faiss is missing: {HOW_TO_FIX}")
    try:  # flat codes (the HNSW / flat storage) memory-mapped, shared between workers
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:  # index types without a mapped reader
        index = faiss.read_index(str(path))
    set_search_params(index, ef_search=int(meta["ef_search"]))
    return ServingIndex(index, str(meta["type"]), int(meta["ef_search"]))


def open_artifacts(directory: Path) -> ArtifactSet:
    """Map the set under ``directory``; :class:`ArtifactError` (saying what to run) when it is
    missing or does not match this code."""
    t0 = time.perf_counter()
    root = Path(directory)
    manifest = read_manifest(root)
    try:  # a parser (FAISS, Parquet, NumPy headers) never sees a changed file
        check_sums(root, manifest.get("files"), recorded_in=str(root / "manifest.json"), skip=("manifest.json",))
    except IntegrityError as exc:
        raise ArtifactError(f"{exc}: {HOW_TO_FIX}") from exc
    log.info("serving artefact set %s: %d file hashes checked in %.2f s", root, len(manifest["files"]), time.perf_counter() - t0)
    arrays = _Arrays(root, manifest["arrays"])
    content_ids = [str(c) for c in pq.read_table(root / "contents.parquet")["content_id"].to_pylist()]
    n = len(content_ids)
    index = _read_index(root, manifest["index"])
    snapshot = CandidateSnapshot.load(root / "snapshot")
    vectors = arrays["catalogue/item_vectors"]
    pm = manifest["pair"]
    shapes = pm["sparse_shapes"]
    _check(index.ntotal == n == len(vectors) == snapshot.n_items, root, f"index {index.ntotal}, ids {n}, vectors {len(vectors)}, snapshot {snapshot.n_items} contents")
    rows = len(snapshot.user_ids)
    queries, model_rows, known = arrays["users/queries"], arrays["users/model_rows"], arrays["users/known"]
    _check(len(queries) == len(model_rows) == len(known) == rows, root, f"{rows} snapshot rows, {len(queries)} profiles")
    _check(snapshot.stats.shape[1:] == (len(PAIR_SOURCES), 2), root, f"normalisers of shape {snapshot.stats.shape}")
    kn = pm["knn"]
    knn = KnnState(
        mu=float(kn["mu"]),
        b_user=arrays["pair/knn.b_user"],
        b_item=arrays["pair/knn.b_item"],
        residual=arrays.csr("pair/knn.residual", shapes["residual"]),
        observed=arrays.csr("pair/knn.observed", shapes["observed"]),
        item_sim=arrays.csr("pair/knn.item_sim", shapes["item_sim"]),
        user_sim=arrays.csr("pair/knn.user_sim", shapes["user_sim"]),
        scoring=str(kn["scoring"]),
        shrinkage=float(kn["shrinkage"]),
    )
    pair = PairState(
        user_mf=arrays["pair/user_mf"],
        item_mf=arrays["pair/item_mf"],
        user_graph=arrays["pair/user_graph"],
        item_graph=arrays["pair/item_graph"],
        item_unified=vectors,
        knn=knn,
        ease_b=arrays["pair/ease_b"] if pm["ease"] else None,
        ease_x=arrays.csr("pair/ease_x", shapes["ease_x"]) if pm["ease"] else None,
        activity=arrays["pair/activity"] if arrays.has("pair/activity") else None,
        activity_columns=list(pm["activity_columns"]),
        n_fit=int(pm["n_fit"]),
    )
    _check(0 < pair.n_fit <= n and len(pair.item_mf) == pair.n_fit, root, f"{pair.n_fit} fitted contents of {n}")

    def ranked(name: str) -> RankedList:
        return RankedList(arrays[f"lists/{name}.items"], arrays[f"lists/{name}.scores"])

    seen_users = [str(u) for u in pq.read_table(root / "seen" / "users.parquet")["user_id"].to_pylist()]
    rep = pq.read_table(root / "reporters.parquet").to_pydict()
    reporters: dict[str, set[str]] = {}
    for c, u in zip(rep["content_id"], rep["user_id"], strict=True):
        reporters.setdefault(str(c), set()).add(str(u))
    out = ArtifactSet(
        now=pd.Timestamp(manifest["now"]),
        content_ids=content_ids,
        item_vectors=vectors,
        index=index,
        snapshot=snapshot,
        queries=queries,
        model_rows=model_rows,
        known=known,
        pair=pair,
        trending=ranked("trending"),
        recent=ranked("recent") if manifest["lists"]["recent"] else None,
        popular=ranked("popular"),
        seen=SeenSets(seen_users, arrays["seen/indptr"], arrays["seen/positions"]),
        reporters=reporters,
        items=_read_items(root, arrays, manifest["item_features"]) if manifest["item_features"] else None,
        manifest=manifest,
        encoder_file=root / ENCODER_FILE if (root / ENCODER_FILE).exists() else None,
    )
    log.info("serving artefact set %s mapped in %.2f s: %d contents, %d users", root, time.perf_counter() - t0, n, snapshot.n_users)
    return out


def check_model(artifacts: ArtifactSet, feature_cols: Sequence[str], version: str) -> None:
    """Refuse a model that asks for pair features the set's pair-feature definition does not
    produce (it was trained with another definition)."""
    produced = set(artifacts.manifest["pair"]["columns"])
    pair_like = {f"{k}_{s}" for s in PAIR_SOURCES for k in ("score", "z")}
    missing = [c for c in feature_cols if (c in pair_like or c.startswith(("score_", "z_"))) and c not in produced]
    if missing:
        raise ArtifactError(
            f"model {version} needs pair features {missing[:5]} that the serving artefact set does not produce: "
            "train and export with the same code: run `dvc repro ranking export`"
        )


__all__ = [
    "HOW_TO_FIX",
    "ArtifactError",
    "ArtifactSet",
    "artifacts_dir",
    "check_model",
    "open_artifacts",
    "read_manifest",
]
