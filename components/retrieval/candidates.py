"""Candidate generation: a FAISS content index, eleven candidate sources merged by quota, and recall.

The ``candidates`` stage: fits the :class:`~components.retrieval.retriever.Retriever` at the end of
the interim data over the saved embeddings, saves the FAISS index (``data/models/faiss``), writes
every user's merged candidates (``data/candidates``) and the hold-out recall
(:mod:`~components.retrieval.holdout`) to ``metrics/candidates.json``. The pieces:
:mod:`~components.retrieval.params`, :mod:`~components.retrieval.index` (FAISS),
:mod:`~components.retrieval.collaborative` (kNN, EASE), :mod:`~components.retrieval.sources`
(trending, recent, popularity, the quota merge) and :mod:`~components.retrieval.retriever`.

``python -m components.retrieval.candidates --evaluate-all`` runs the hold-out evaluation on the
synthetic data and both real data sets (``metrics/candidates_<dataset>.json``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.catalog import DataPaths
from components.core.config import Params, stage_context, stage_parser
from components.core.io import write_metrics
from components.core.tuned import tuned_params
from components.data.prepare import prepare_data
from components.retrieval.embedding_model import load_model
from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.holdout import evaluate
from components.retrieval.interactions import interaction_events, read_interim
from components.retrieval.params import BASELINE, SOURCES, CandidateParams, EvalParams
from components.retrieval.retriever import Retriever, candidate_table

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("synthetic", "kuairand", "movielens")


@dataclass(frozen=True)
class CandidatesResult:
    metrics: dict[str, Any]
    index_version: str
    users: int
    rows: int
    seconds: float


def run(params: Mapping[str, Any], paths: DataPaths, dataset: str | None = None) -> CandidatesResult:
    """Stage: index + candidates for every user at the end of the data, and hold-out recall."""
    if dataset is None:  # the pipeline's own data: the values the tune stage chose
        params = tuned_params(params, paths)
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
