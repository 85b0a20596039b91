"""Embeddings: collaborative (ALS), graph (NetMF) and unified content vectors with cold start.

The ``embeddings`` stage: fits the model on the interim data (:func:`~components.retrieval.embedding_model.fit_embeddings`),
saves it to ``data/embeddings`` and writes its quality checks to ``metrics/embeddings.json``.
The pieces: :mod:`~components.retrieval.interactions` (the interaction matrices),
:mod:`~components.retrieval.factorization` (ALS, NetMF), :mod:`~components.retrieval.content_encoder`
(the unified content vectors and the cold-start map) and :mod:`~components.retrieval.embedding_model`
(the fitted model, saved and loaded).

    python -m components.retrieval.embeddings --params params.yaml
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import stage_context, stage_parser
from components.core.io import write_metrics
from components.core.tuned import tuned_params
from components.retrieval.content_encoder import normalize_rows
from components.retrieval.embedding_model import (
    EmbeddingModel,
    fit_embeddings,
    model_version,
    save_model,
)
from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.interactions import UNKNOWN, Interactions, catalogue, read_interim

log = logging.getLogger(__name__)


def neighbour_category_agreement(vectors: np.ndarray, categories: np.ndarray, k: int = 10, max_queries: int = 2000, seed: int = 0) -> float | None:
    """Share of each content's k nearest neighbours (cosine) in its own category."""
    cats = np.asarray(categories, dtype=object)
    ok = np.flatnonzero((np.linalg.norm(vectors, axis=1) > 0) & (cats != UNKNOWN))
    if len(ok) <= k or len(set(cats[ok])) < 2:
        return None
    x = normalize_rows(vectors[ok].astype(np.float32))
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


@dataclass(frozen=True)
class EmbeddingsResult:
    metrics: dict[str, Any]
    version: str
    seconds: float


def run(params: Mapping[str, Any], paths: DataPaths) -> EmbeddingsResult:
    params = tuned_params(params, paths)  # the values the tune stage chose, as the evaluation uses
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
    raise SystemExit(main())
