"""Ranking stage: the ranker trained on the pipeline's training set, its artefact and metrics.

Training set (:mod:`components.ranking.dataset`, composed by :class:`components.pipeline.Pipeline`)
    One request group per (user, time cut): the serving candidates at the cut (retrieval
    refitted on the events before it) together with every content the user interacted with in
    ``(cut, cut + window]``, labelled from that window (:mod:`components.ranking.labels`),
    negatives sampled, pair features for every row alike, and the FeatureService
    ``feast.feature_service`` through Feast's point-in-time join (a feature row stamped after
    the cut is never used).

Groups
    The users with an event in a cut's label window, at most ``ranking.max_groups_per_cut`` of
    them (a seeded sample): on a simulated stream every user is active every day with many
    events, and the training set (and the ranker's training time) would grow with both.

Cuts
    ``ranking.training_cuts`` day boundaries: the last is the first day boundary from which the
    label window reaches the end of the data, the others one day apart before it. Later cuts are
    the later groups the ranker's time-based validation split holds out. Embeddings and sources
    are refitted at every cut on the events before it (the stage's ``data/candidates`` list is
    built at the end of the data and excludes what users saw since, so it cannot serve a past
    cut).

Outputs
    The ranker under ``data/models/ranker`` (``LATEST`` names it), its validation groups with
    identifiers, labels and features (``data/ranking``), and ``metrics/ranking.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import stage_context, stage_parser
from components.core.io import atomic_write_parquet, atomic_write_text, write_metrics
from components.core.tuned import tuned_params
from components.features.feast_repo import StoreSettings, open_store
from components.pipeline import Pipeline, TrainingPart
from components.ranking.artefact import save
from components.ranking.dataset import (
    TrainingSetParams,
    feature_columns,
    holdout_rows,
    sample_groups,
    training_cuts,
    window_pairs,
)
from components.ranking.labels import LABEL_COLUMNS
from components.ranking.model import RankerModel
from components.retrieval.interactions import interaction_events, read_interim

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankingResult:
    model_dir: Path
    version: str
    rows: int
    groups: int
    metrics: dict[str, Any]


def training_parts(
    pipe: Pipeline, tp: TrainingSetParams, paths: DataPaths, store: FeatureStore
) -> Iterator[TrainingPart]:
    """One part per training cut: retrieval refitted on the events before the cut, the users
    with an event in its label window, features from the project's store."""
    events, content, users = read_interim(paths)
    end = interaction_events(events)["timestamp"].max()
    for cut in training_cuts(end, tp.training_cuts, tp.window):
        active = sample_groups(window_pairs(events, cut, tp.window)["user_id"].unique(), tp.max_groups_per_cut, tp.seed, cut)
        fitted = pipe.fit(events, content, users, cut)
        fitted.store = store
        yield TrainingPart(fitted, events, active, tp.window, tp.negatives_per_group, tp.seed)


def pipeline_training_set(
    params: Mapping[str, Any], paths: DataPaths, store: FeatureStore
) -> pd.DataFrame:
    """The stage's training set: every cut's candidates (refitted at the cut) and labels,
    features from the params' FeatureService."""
    pipe = Pipeline.of(params)
    return pipe.training_set(training_parts(pipe, TrainingSetParams.from_params(params), paths, store))


def write_holdout(frame: pd.DataFrame, model: RankerModel, path: Path) -> Path:
    """Write the validation groups with identifiers, labels and every feature column, atomically."""
    rows = holdout_rows(frame, model.params.validation_fraction)
    keep = [c for c in ("group_id", "user_id", "content_id", "event_timestamp", "source") if c in rows]
    keep += [c for c in LABEL_COLUMNS if c in rows]
    keep += [c for c in feature_columns(rows) if c not in keep]
    out = rows[keep].sort_values(["group_id", "content_id"], kind="mergesort").reset_index(drop=True)
    atomic_write_parquet(path, out, index=False)
    log.info("holdout: %d rows in %d groups -> %s", len(out), out["group_id"].nunique(), path)
    return path


def ranking_metrics(
    frame: pd.DataFrame, model: RankerModel, service: str, window: pd.Timedelta
) -> dict[str, Any]:
    """``metrics/ranking.json``: the training set's shape and label rates, the ranker's
    validation metrics, and ``labels_until``: the end of the last cut's label window (the
    ranker was trained on the events up to then, as labels: the registry's ``trained_until``)."""
    cuts = pd.to_datetime(frame["event_timestamp"].unique(), utc=True)
    return {
        "version": model.version,
        "feature_service": service,
        "rows": len(frame),
        "groups": int(frame["group_id"].nunique()),
        "cuts": sorted(str(t) for t in frame["event_timestamp"].unique()),
        "labels_until": str(cuts.max() + window),
        "features": len(model.feature_cols),
        "label_rates": {
            c: round(float(frame[c].mean()), 6) for c in LABEL_COLUMNS if c != "label_watch_ratio"
        },
        "added_positives": int((frame["in_candidates"] == 0).sum()),
        "training": model.training_metrics,
    }


def run(params: Mapping[str, Any], paths: DataPaths) -> RankingResult:
    """Stage: training set → ranker artefact under ``data/models/ranker`` + metrics."""
    params = tuned_params(params, paths)  # the values the tune stage chose, as the evaluation uses
    settings = StoreSettings.from_params(params)
    store = open_store(paths, settings)
    pipe = Pipeline.of(params, feature_service=settings.feature_service)
    parts = training_parts(pipe, TrainingSetParams.from_params(params), paths, store)
    model, frame = pipe.train_on(parts, created_from="pipeline")
    out = save(model, paths.of("ranker"))
    atomic_write_text(paths.of("ranker_latest"), model.version + "\n")
    write_holdout(frame, model, paths.of("ranking_holdout"))
    window = TrainingSetParams.from_params(params).window
    metrics = ranking_metrics(frame, model, settings.feature_service, window)
    write_metrics(paths.of("metrics_ranking"), metrics)
    return RankingResult(out, model.version, len(frame), metrics["groups"], metrics)


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    r = run(params, paths)
    print(
        f"ranking: {r.rows} rows in {r.groups} groups; ranker {r.version} -> {r.model_dir}; "
        f"validation {r.metrics['training']['combined']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
