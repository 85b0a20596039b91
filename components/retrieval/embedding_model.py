"""The embedding model of one training run (:class:`EmbeddingModel`): how it is fitted
(:func:`fit_embeddings`: ALS, NetMF, the content encoder, user profiles) and its artefact
(:func:`save_model`, :func:`load_model`, :func:`model_version`).

User profile
    A user's vector in the unified space is the normalised positive-weighted sum of the unified
    vectors of the contents they engaged with, with the collaborative block replaced by the
    user's ALS factor; users without events fall back on their declared preferred categories.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.integrity import sha256_hex, verified_bytes
from components.core.io import atomic_write_bytes, atomic_write_json
from components.retrieval.content_encoder import ContentEncoder, normalize_rows
from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.factorization import fit_als, graph_adjacency, netmf
from components.retrieval.interactions import Interactions, build_interactions, catalogue


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
    mf_norm = normalize_rows(item_mf)
    has_mf = np.linalg.norm(item_mf, axis=1) > 0
    warm = (n_pos >= p.min_ridge_interactions) & has_mf
    enc.cf_dim = item_mf.shape[1]
    holdout = _ridge_holdout_cosine(enc, cat[warm], mf_norm[warm], p.seed) if warm.sum() else None
    enc.fit_ridge(cat[warm], mf_norm[warm])
    predicted = enc.predict_collaborative(cat)
    share_own = np.where(has_mf, n_pos / (n_pos + p.cold_blend), 0.0).astype(np.float32)[:, None]
    collaborative = normalize_rows(share_own * mf_norm + (1.0 - share_own) * predicted)
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
# The saved model (data/embeddings)


def _vec_column(x: np.ndarray) -> pa.Array:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]).cast(pa.list_(pa.float32()))


def _matrix(col: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return flat.reshape(len(arr), dim) if len(arr) else np.zeros((0, dim), dtype=np.float32)


def encoder_pickle(encoder: ContentEncoder) -> bytes:
    """The encoder's pickle, the same bytes for the same fitted encoder."""
    if encoder.tfidf is not None:
        # sklearn caches id(stop_words) (a memory address) to skip a re-check: it would make the
        # pickle differ between identical runs; dropping it only means the check runs again
        encoder.tfidf.__dict__.pop("_stop_words_id", None)
    return pickle.dumps(encoder, protocol=pickle.HIGHEST_PROTOCOL)


def save_model(model: EmbeddingModel, out_dir: Path) -> None:
    """Write ``users.parquet``, ``content.parquet``, ``encoder.pkl`` and ``meta.json`` (last,
    atomically, with the pickle's SHA-256)."""
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
    encoder = encoder_pickle(model.encoder)
    atomic_write_bytes(out_dir / "encoder.pkl", encoder)
    meta = {
        "mf_dim": int(model.user_mf.shape[1]),
        "graph_dim": int(model.user_graph.shape[1]),
        "unified_dim": int(model.item_unified.shape[1]),
        "unified_blocks": model.encoder.block_dims(),
        "ridge_holdout_cosine": model.ridge_holdout_cosine,
        "version": model_version(model),
        "encoder_sha256": sha256_hex(encoder),  # checked before the pickle is loaded
    }
    atomic_write_json(out_dir / "meta.json", meta, sort_keys=False)


def load_model(in_dir: Path) -> EmbeddingModel:
    """The model :func:`save_model` wrote. Unpickling runs code, so ``encoder.pkl`` is loaded
    only when its bytes have the SHA-256 ``meta.json`` recorded: a tampered, truncated or
    unrecorded pickle raises :class:`~components.core.integrity.IntegrityError` (naming the
    file and both hashes) before anything is unpickled."""
    meta = json.loads((in_dir / "meta.json").read_text())
    encoder_bytes = verified_bytes(
        in_dir / "encoder.pkl", meta.get("encoder_sha256"), recorded_in=str(in_dir / "meta.json")
    )
    users = pq.read_table(in_dir / "users.parquet")
    items = pq.read_table(in_dir / "content.parquet")
    encoder = pickle.loads(encoder_bytes)  # verified against meta.json above
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
