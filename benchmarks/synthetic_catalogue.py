"""A 1M-content / 100k-user serving world for the load benchmark, scaled up from a built project.

The batch pipeline on one laptop does not reach a million contents (the embeddings and every
candidate source score users against the whole catalogue), so this builds the *serving* state
of such a catalogue directly, in the exact formats serving loads (the serving artefact set of
:mod:`components.serving.artifacts`, a Feast online store, a model registry), by replicating the
real artefacts of a project built by ``make demo``:

* contents: the project's ``I0`` contents copied ``ceil(n_items / I0)`` times ("universes");
  copy ``c`` of content ``i`` sits at catalogue position ``c * I0 + i``. Its unified embedding
  is the original plus Gaussian noise (cosine ~0.99 to the original, so the HNSW index holds a
  million distinct points with the original's cluster structure), re-normalised; MF and graph
  vectors, activity, item features and the item-kNN neighbours (within the same copy) are the
  original's;
* users: the project's ``U0`` users copied into groups; user ``u`` of group ``g`` is a copy of
  user ``u mod U0`` living in universe ``g``: its interactions, user-kNN neighbours, candidate
  list (the candidates stage's, mapped into universe ``g``), pair normalisers, user features in
  the online store and embeddings are the original's. Contents of universes no user group lives
  in are the cold long tail;
* the ranker: the project's production model, registered into the new world's registry.

Not replicated: EASE (at a million contents the candidates stage turns it off too, so its two
pair features are NaN), the seen-content sets (the snapshot already excludes what each user saw)
and declared categories. The world is cached under ``--out`` (default
``.cache/catalogue-1m``); the FAISS HNSW build over a million vectors is the slow part
(~5 min on 2 cores).

    .venv/bin/python -m benchmarks.synthetic_catalogue --items 1000000 --users 100000
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from components.core.catalog import PROJECT_ROOT, DataPaths

log = logging.getLogger("synthetic_catalogue")

DEFAULT_OUT = PROJECT_ROOT / ".cache" / "catalogue-1m"
RAW_USER = "bench-u{:06d}"  # raw user ids the benchmark sends (the app pseudonymises them)


def content_id(j: int) -> str:
    return f"m{j:07d}"


def _tile_rows(a: np.ndarray, base_of: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[base_of])


def _blocks(m: sp.spmatrix, row_base: np.ndarray, col_shift: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A big sparse matrix whose row ``r`` is row ``row_base[r]`` of ``m`` with its columns
    shifted by ``col_shift[r]`` (the copy's universe), columns beyond ``shape[1]`` dropped."""
    m = m.tocsr()
    counts = np.diff(m.indptr)[row_base]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    starts = m.indptr[row_base]
    # gather every row's slice in one vectorised pass
    offs = np.arange(int(indptr[-1]), dtype=np.int64) - np.repeat(indptr[:-1], counts)
    src = np.repeat(starts, counts) + offs
    cols = m.indices[src].astype(np.int64) + np.repeat(col_shift, counts)
    data = m.data[src]
    keep = cols < shape[1]
    rows = np.repeat(np.arange(len(row_base)), counts)
    out = sp.csr_matrix((data[keep], (rows[keep], cols[keep])), shape=shape)
    out.sort_indices()
    return out


def build(source: Path, out: Path, n_items: int, n_users: int, seed: int = 42) -> Path:
    from components.core.config import load_params
    from components.data.ingestion.pseudonyms import hmac_key_from_env, pseudonym
    from components.deploy.registry import ModelRegistry
    from components.features.feast_repo import StoreSettings, open_store
    from components.features.item_cache import ItemFeatureCache
    from components.features.online import ServingFeatureFetcher
    from components.features.store import apply
    from components.retrieval.collaborative import Neighbourhood
    from components.retrieval.embedding_model import EmbeddingModel
    from components.retrieval.export import artifact_set, build_snapshot, fit_retriever, producer
    from components.retrieval.index import ContentIndex
    from components.retrieval.interactions import Interactions
    from components.retrieval.retriever import Retriever
    from components.retrieval.serving_set import artifacts_dir, write_artifacts
    from components.retrieval.snapshot import COLD_USER, CandidateSnapshot
    from components.retrieval.sources import Candidates

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    params = load_params(source / "params.yaml")
    src_paths = DataPaths(source)
    r0, _ = fit_retriever(params, src_paths)
    table = pd.read_parquet(src_paths.of("candidates_table"), columns=["user_id", "content_id", "score", "source", "rank"])
    s0 = build_snapshot(r0, table, r0.p.per_user)
    m0, k0 = r0.model, r0.knn
    i0, u0 = r0.n_fit, len(m0.user_ids)
    if len(r0.index.content_ids) != i0:
        raise ValueError("the source catalogue has contents added after fitting")
    copies = math.ceil(n_items / i0)
    groups = math.ceil(n_users / u0)
    if groups > copies:
        raise ValueError(f"{n_users} users need {groups} universes, the catalogue has {copies}")
    log.info("source: %d contents, %d users -> %d copies, %d user groups", i0, u0, copies, groups)

    j = np.arange(n_items, dtype=np.int64)
    ibase, icopy = j % i0, j // i0
    u = np.arange(n_users, dtype=np.int64)
    ubase, ugroup = u % u0, u // u0
    key = hmac_key_from_env(dict(os.environ))
    user_ids = np.array([pseudonym(RAW_USER.format(x), key) for x in u], dtype=object)
    item_ids = np.array([content_id(x) for x in j], dtype=object)

    # embeddings: originals, unified vectors with noise (distinct points for the HNSW index)
    uni = _tile_rows(m0.item_unified, ibase).astype(np.float32)
    dim = uni.shape[1]
    for a in range(0, n_items, 200_000):
        b = min(a + 200_000, n_items)
        block = uni[a:b]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        block += (rng.standard_normal(block.shape).astype(np.float32) * (0.1 / math.sqrt(dim))) * norms
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    model = EmbeddingModel(
        user_ids=user_ids,
        item_ids=item_ids,
        user_mf=_tile_rows(m0.user_mf, ubase),
        item_mf=_tile_rows(m0.item_mf, ibase),
        user_graph=_tile_rows(m0.user_graph, ubase),
        item_graph=_tile_rows(m0.item_graph, ibase),
        item_unified=uni,
        user_profile=_tile_rows(m0.user_profile, ubase),
        item_interactions=np.where(icopy < groups, m0.item_interactions[ibase], 0),
        encoder=m0.encoder,
        ridge_holdout_cosine=m0.ridge_holdout_cosine,
    )
    log.info("embeddings in %.0f s", time.perf_counter() - t0)

    # interactions and neighbourhoods, each copy in its universe
    ushape, ishape = (n_users, n_items), (n_items, n_items)
    ushift = ugroup * i0

    def users_x_items(m: sp.spmatrix) -> sp.csr_matrix:
        return _blocks(m, ubase, ushift, ushape)

    inter = Interactions(
        user_ids=user_ids,
        item_ids=item_ids,
        weights=users_x_items(r0.inter.weights),
        seen=users_x_items(r0.inter.seen),
        blocked=users_x_items(r0.inter.blocked),
    )
    knn = Neighbourhood(
        mu=k0.mu,
        b_user=_tile_rows(k0.b_user, ubase),
        b_item=_tile_rows(k0.b_item, ibase),
        residual=users_x_items(k0.residual),
        observed=users_x_items(k0.observed),
        rating=users_x_items(k0.rating),
        item_sim=_blocks(k0.item_sim, ibase, icopy * i0, ishape),
        user_sim=_blocks(k0.user_sim, ubase, ugroup * u0, (n_users, n_users)),
    )
    log.info("sparse structures in %.0f s (item-kNN %d entries)", time.perf_counter() - t0, knn.item_sim.nnz)

    def globally(c: Candidates) -> Candidates:
        """A global list over every user universe, interleaved (rank r of every copy, then r+1)."""
        pos = (c.items[:, None] + np.arange(groups)[None, :] * i0).reshape(-1)
        sc = np.repeat(c.scores, groups)
        ok = pos < n_items
        return Candidates(pos[ok].astype(np.int64), sc[ok].astype(np.float32))

    act = r0.activity
    assert act is not None
    activity = pd.DataFrame(_tile_rows(act.to_numpy(), ibase), columns=act.columns)
    items = pd.DataFrame(
        {
            "content_id": item_ids.astype(str),
            "creator_id": [f"{c}-{k}" if c is not None else None for c, k in zip(r0.items["creator_id"].to_numpy()[ibase], icopy, strict=True)],
            "available_at": r0.items["available_at"].to_numpy()[ibase],
        }
    )
    log.info("building the FAISS %s index over %d vectors ...", r0.index.p.type, n_items)
    t1 = time.perf_counter()
    index = ContentIndex.build(uni, item_ids.tolist(), replace(r0.index.p, build_threads=0))
    t_index = time.perf_counter() - t1
    log.info("index built in %.0f s", t_index)
    retr = Retriever(
        model=model,
        inter=inter,
        index=index,
        knn=knn,
        items=items,
        trending=globally(r0.trending),
        popularity=globally(r0.popularity),
        follows={},
        now=r0.now,
        p=r0.p,
        vectors=uni,
        preferred={},
        recent=globally(r0.recent) if r0.recent is not None else None,
        ease_b=None,
        activity=activity,
    )
    retr._user_row = {str(x): i for i, x in enumerate(user_ids)}

    # candidate snapshot: each user the original's list, mapped into its universe
    counts = np.diff(s0.indptr)
    rows_of = np.concatenate([ubase, [s0.cold_row]])
    shift = np.concatenate([ushift, [0]])
    n = counts[rows_of]
    indptr = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    offs = np.arange(int(indptr[-1]), dtype=np.int64) - np.repeat(indptr[:-1], n)
    src = np.repeat(s0.indptr[rows_of], n) + offs
    snapshot = CandidateSnapshot(
        user_ids=pd.Index([*user_ids.tolist(), COLD_USER]),
        indptr=indptr,
        positions=(s0.positions[src].astype(np.int64) + np.repeat(shift, n)).astype(np.int32),
        sources=np.asarray(s0.sources[src]),
        scores=np.asarray(s0.scores[src]),
        stats=np.asarray(s0.stats[rows_of]),
        source_names=list(s0.source_names),
        n_items=n_items,
    )

    # item features: the originals' rows
    settings = StoreSettings.from_params(params)
    store0 = open_store(src_paths, settings)
    cache0 = ItemFeatureCache.from_offline(store0, settings.feature_service)
    rows0 = cache0.ids.get_indexer(pd.Index([str(c) for c in r0.index.content_ids]))
    take = rows0[ibase]
    if (take < 0).any():
        raise ValueError("source contents without item features")
    item_cache = ItemFeatureCache(
        ids=pd.Index(item_ids.astype(str)),
        matrix=np.ascontiguousarray(cache0.matrix[take]),
        columns=list(cache0.columns),
        asof=cache0.asof,
        creators=np.asarray(items["creator_id"].to_numpy(), dtype=object),
        view_cols=dict(cache0.view_cols),
        view_ts={v: np.asarray(ts)[take] for v, ts in cache0.view_ts.items()},
        view_ttl_s=dict(cache0.view_ttl_s),
    )

    # the world's project root: params, feature store with every user's online features, registry
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(PROJECT_ROOT / "feature_repo", out / "feature_repo", ignore=shutil.ignore_patterns("__pycache__", "data"))
    (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    paths = DataPaths(out)
    store = open_store(paths, settings)
    apply(store)
    fetcher0 = ServingFeatureFetcher(store0, settings.feature_service, cache0)
    t1 = time.perf_counter()
    _copy_online_users(store0, store, fetcher0.user_refs, [str(x) for x in m0.user_ids], user_ids, ubase)
    t_online = time.perf_counter() - t1
    with ModelRegistry(src_paths) as reg0:
        prod = reg0.deployment().production
        if prod is None:
            raise ValueError("the source project has no production model: run `make demo` first")
        model_dir = reg0.artefact_dir(prod.version)
    with ModelRegistry(paths, actor="benchmark") as reg:
        at = datetime.now(UTC)
        rec = reg.register(model_dir, metrics={}, data_version="synthetic-1m", now=at)
        for i, stage in enumerate(("shadow", "canary", "production")):
            reg.promote(rec.version, stage, reason="benchmark world", now=at + timedelta(seconds=i + 1))

    t1 = time.perf_counter()
    made = producer(src_paths, r0)
    made["synthetic"] = f"{n_items} contents, {n_users} users, {copies} copies of {i0} contents of {source}"
    write_artifacts(artifacts_dir(paths), artifact_set(retr, snapshot, {}, {}, item_cache), made)
    log.info("serving artefact set written in %.0f s", time.perf_counter() - t1)
    meta = {
        "items": n_items,
        "users": n_users,
        "source_items": i0,
        "source_users": u0,
        "copies": copies,
        "user_groups": groups,
        "candidates": int(indptr[-1]),
        "item_knn_entries": int(knn.item_sim.nnz),
        "index": r0.index.p.type,
        "index_build_s": round(t_index, 1),
        "online_write_s": round(t_online, 1),
        "model": rec.version,
        "seconds": round(time.perf_counter() - t0, 1),
        "raw_user_format": RAW_USER,
    }
    (out / "catalogue.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("synthetic world ready in %s: %s", out, meta)
    return out


def _copy_online_users(store0: Any, store: Any, refs: list[str], users0: list[str], user_ids: np.ndarray, ubase: np.ndarray) -> None:
    """Every synthetic user gets its original's online feature rows (all views, timestamps kept)."""
    views = sorted({ref.split(":", 1)[0] for ref in refs})
    for view in views:
        names = [f.name for f in store0.get_feature_view(view).features]
        got = store0.get_online_features(features=[f"{view}:{n}" for n in names], entity_rows=[{"user_id": x} for x in users0]).to_dict(include_event_timestamps=True)
        ts = None
        for n in names:
            if f"{n}__ts" in got:
                ts = got[f"{n}__ts"]
                break
        frame0 = pd.DataFrame({n: got[n] for n in names})
        have = frame0.notna().any(axis=1).to_numpy()
        stamp = pd.to_datetime(pd.Series(ts if ts is not None else [0] * len(users0)), unit="s", utc=True)
        rows = ubase[have[ubase]]
        frame = frame0.iloc[rows].reset_index(drop=True)
        frame.insert(0, "user_id", user_ids[have[ubase]])
        frame["event_timestamp"] = stamp.iloc[rows].reset_index(drop=True)
        t = time.perf_counter()
        for a in range(0, len(frame), 20_000):
            store.write_to_online_store(view, frame.iloc[a : a + 20_000])
        log.info("online store: %s, %d users in %.0f s", view, len(frame), time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=PROJECT_ROOT, help="a project built by `make demo`")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("RECO_DEMO", "1")
    build(args.source, args.out, args.items, args.users, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
