"""The ``export`` stage: the serving artefact set, from the pipeline's own artefacts.

Fits the batch :class:`~components.retrieval.retriever.Retriever` at the candidates stage's cut
(the end of the events) over the saved embeddings and FAISS index, turns the candidates stage's
table into the per-user snapshot (plus the users with declared categories but no events, and
the cold row), and writes what a request reads (:mod:`components.retrieval.serving_set`): index,
snapshot, per-user profiles and normalisers, the pair-feature arrays, item vectors and feature
rows, trending / recent / popular lists, seen contents and reports, and a manifest with the
producing versions (code, data and model hashes). Serving maps that set and fits nothing.

A set that would not match its inputs is never written: an index built for other embeddings
or a candidates table naming unknown users or contents fails the stage, saying what to run
(serving used to rebuild them silently at start-up).

    python -m components.retrieval.export --params params.yaml
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.core.catalog import PROJECT_ROOT, DataPaths
from components.core.config import stage_context, stage_parser
from components.core.tuned import tuned_params
from components.features.feast_repo import StoreSettings, open_store
from components.features.item_cache import ItemFeatureCache
from components.pipeline import Pipeline
from components.retrieval.embedding_model import encoder_pickle, load_model
from components.retrieval.index import ContentIndex
from components.retrieval.interactions import interaction_events, read_interim
from components.retrieval.retriever import Retriever, candidate_table
from components.retrieval.serving_set import (
    ArtifactSet,
    RankedList,
    SeenSets,
    ServingIndex,
    artifacts_dir,
    write_artifacts,
)
from components.retrieval.snapshot import COLD_USER, CandidateSnapshot

log = logging.getLogger(__name__)

#: the modules whose code the set's contents depend on (hashed into the manifest)
CODE = (
    "components/retrieval/export.py",
    "components/retrieval/candidates.py",
    "components/retrieval/params.py",
    "components/retrieval/index.py",
    "components/retrieval/collaborative.py",
    "components/retrieval/sources.py",
    "components/retrieval/retriever.py",
    "components/retrieval/embeddings.py",
    "components/retrieval/embedding_params.py",
    "components/retrieval/interactions.py",
    "components/retrieval/factorization.py",
    "components/retrieval/content_encoder.py",
    "components/retrieval/embedding_model.py",
    "components/retrieval/pair_features.py",
    "components/retrieval/faiss_search.py",
    "components/retrieval/serving_set.py",
    "components/retrieval/snapshot.py",
)


class ExportError(RuntimeError):
    """The pipeline's artefacts do not fit together; the message says which stage to re-run."""


def seen_by_user(events: pd.DataFrame) -> dict[str, frozenset[str]]:
    """Contents each user interacted with (any event with a content but an upload)."""
    ev = interaction_events(events)
    frame = pd.DataFrame(
        {"u": ev["user_id"].astype(str).to_numpy(), "c": ev["content_id"].astype(str).to_numpy()}
    ).drop_duplicates()
    return {str(u): frozenset(g.tolist()) for u, g in frame.groupby("u", sort=False)["c"]}


def reporters_by_content(events: pd.DataFrame) -> dict[str, set[str]]:
    """The distinct users who reported each content."""
    rep = events[(events["event_type"].astype(str) == "report") & events["content_id"].notna()]
    return {
        str(c): set(g.astype(str))
        for c, g in rep.groupby(rep["content_id"].astype(str), sort=False)["user_id"]
    }


def snapshot_users(retr: Retriever) -> list[str]:
    """The snapshot's users: the batch's (model rows), then users with declared categories only."""
    known = [str(u) for u in retr.model.user_ids]
    have = set(known)
    return known + sorted(u for u in retr.preferred if u not in have and u != COLD_USER)


def build_snapshot(retr: Retriever, table: pd.DataFrame | None, k: int) -> CandidateSnapshot:
    """Candidates and pair normalisers of :func:`snapshot_users` plus the cold row, as the
    retriever computes them; ``table`` (the candidates stage's output) for the batch's users.
    Raises :class:`ExportError` when the table does not fit the retriever."""
    t0 = time.perf_counter()
    users = snapshot_users(retr)
    batch = [str(u) for u in retr.model.user_ids]
    if table is None:
        table = candidate_table(retr, batch, k)
    else:
        table = table[table["user_id"].astype(str).isin(set(batch))]
    rest = candidate_table(retr, [*users[len(batch) :], COLD_USER], k)
    everyone = [*users, COLD_USER]
    try:
        snap = CandidateSnapshot.from_table(
            pd.concat([table, rest], ignore_index=True), retr.index.content_ids, retr.pair_stats(everyone), everyone
        )
    except (ValueError, KeyError) as exc:
        raise ExportError(f"the candidates table does not fit the retriever ({exc}): run `dvc repro candidates`") from exc
    log.info("candidate snapshot: %d users, %d candidates in %.1f s", snap.n_users, len(snap.positions), time.perf_counter() - t0)
    return snap


def artifact_set(
    retr: Retriever,
    snapshot: CandidateSnapshot,
    seen: Mapping[str, frozenset[str]],
    reporters: Mapping[str, set[str]],
    items: ItemFeatureCache | None,
) -> ArtifactSet:
    """What serving needs of a fitted retriever and its snapshot, and nothing else."""
    users = [str(u) for u in snapshot.user_ids]
    rows = retr.user_rows(users)
    ids = retr.index.content_ids
    empty = RankedList(np.zeros(0, np.int64), np.zeros(0, np.float32))
    return ArtifactSet(
        now=pd.Timestamp(retr.now),
        content_ids=list(ids),
        item_vectors=np.asarray(retr.vectors, dtype=np.float32),
        index=ServingIndex(retr.index.index, retr.index.p.type, retr.index.p.ef_search),
        snapshot=snapshot,
        queries=retr._queries(users, rows),
        model_rows=rows,
        known=rows >= 0,
        pair=retr.pair_state(),
        trending=RankedList(retr.trending.items, retr.trending.scores),
        recent=RankedList(retr.recent.items, retr.recent.scores) if retr.recent is not None else None,
        popular=RankedList(retr.popularity.items, retr.popularity.scores) if retr.popularity is not None else empty,
        seen=SeenSets.from_sets(seen, ids),
        reporters={str(c): set(u) for c, u in reporters.items()},
        items=items,
        encoder_pickle=encoder_pickle(retr.model.encoder),
    )


def fit_retriever(params: Mapping[str, Any], paths: DataPaths) -> tuple[Retriever, pd.DataFrame]:
    """The retriever at the end of the events over the saved embeddings and index (the
    pipeline's retrieval step, :meth:`components.pipeline.Pipeline.fit`), and the events;
    :class:`ExportError` when the index does not belong to the embeddings. With the tuned
    values (:func:`~components.core.tuned.tuned_params`), as the candidates stage fitted it."""
    params = tuned_params(params, paths)
    events, content, users = read_interim(paths)
    emb = load_model(paths.of("embeddings"))
    try:
        index = ContentIndex.load(paths.of("faiss_index"))
    except (OSError, ValueError, KeyError) as exc:
        raise ExportError(f"no usable FAISS index under {paths.of('faiss_index')} ({exc}): run `dvc repro candidates`") from exc
    if index.content_ids != [str(c) for c in emb.item_ids]:
        raise ExportError("the FAISS index does not match the embeddings' catalogue: run `dvc repro candidates`")
    now = pd.Timestamp(interaction_events(events)["timestamp"].max()) + pd.Timedelta(milliseconds=1)
    fitted = Pipeline.of(params).fit(events, content, users, now, embeddings=emb, index=index)
    return fitted.retriever, events


def _digest(paths: Sequence[Path]) -> str | None:
    h = hashlib.sha256()
    found = False
    for p in paths:
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                found = True
                h.update(f.as_posix().encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16] if found else None


def producer(paths: DataPaths, retr: Retriever) -> dict[str, Any]:
    """The producing versions: hashes of the code, the input data and the ranker beside the set."""
    ranker = paths.of("ranker_latest")
    return {
        "code": {c: _digest([PROJECT_ROOT / c]) for c in CODE},
        "data": {
            "interim": _digest([paths.interim]),
            "embeddings": _digest([paths.of("embeddings")]),
            "candidates": _digest([paths.of("candidates_table")]),
            "index": retr.index.parent,
        },
        "model": ranker.read_text().strip() if ranker.exists() else None,
    }


def item_features(params: Mapping[str, Any], paths: DataPaths) -> ItemFeatureCache:
    """Item feature rows as materialised (the feature store's offline sources)."""
    settings = StoreSettings.from_params(params)
    return ItemFeatureCache.from_offline(open_store(paths, settings), settings.feature_service)


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    contents: int
    users: int
    candidates: int
    megabytes: float
    seconds: float


def run(params: Mapping[str, Any], paths: DataPaths, out: Path | None = None) -> ExportResult:
    """Fit, build the snapshot and write the set to ``out`` (default ``data/serving/artifacts``)
    and ``metrics/export.json``."""
    t0 = time.perf_counter()
    retr, events = fit_retriever(params, paths)  # with the tuned values, as the candidates stage
    path = paths.of("candidates_table")
    if not path.exists():
        raise ExportError(f"no candidates table at {path}: run `dvc repro candidates`")
    table = pd.read_parquet(path, columns=["user_id", "content_id", "score", "source", "rank"])
    snapshot = build_snapshot(retr, table, retr.p.per_user)
    s = artifact_set(retr, snapshot, seen_by_user(events), reporters_by_content(events), item_features(params, paths))
    directory = write_artifacts(out or artifacts_dir(paths), s, producer(paths, retr))
    size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    result = ExportResult(
        directory=directory,
        contents=len(s.content_ids),
        users=snapshot.n_users,
        candidates=len(snapshot.positions),
        megabytes=round(size / 2**20, 2),
        seconds=round(time.perf_counter() - t0, 2),
    )
    paths.metrics.mkdir(parents=True, exist_ok=True)
    metrics = {k: v for k, v in result.__dict__.items() if k not in ("directory", "seconds")}
    paths.of("metrics_export").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    log.info("serving artefact set %s: %s", directory, result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, default=None, help="where to write the set (default data/serving/artifacts)")
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    try:
        run(params, paths, args.out)
    except ExportError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
