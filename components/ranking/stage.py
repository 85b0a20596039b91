"""Ranking stage: training sets labelled from later events, the log-and-join helper, and training.

Training set (:func:`build_training_set`)
    One request group per (user, time cut): the candidates the serving path would have produced
    at the cut (the candidates stage's quota-merged list, refitted on the events before the cut,
    with its source, merged score and rank) together with every content the user actually
    interacted with in ``(cut, cut + window]`` (a positive the retrieval missed is added).
    Retrieval features are pair features (every pair source's score and per-user z-score, the
    content's recent activity) computed for every row alike, retrieved or added, so "not
    retrieved" cannot leak the label. Labels come only from events in that window:

    * ``label_engaged``: like / share / comment / save / follow / complete_view / replay;
    * ``label_like``, ``label_share``, ``label_complete_view``;
    * ``label_watch_ratio``: the largest watch ratio of the window's views (NaN if not viewed);
    * ``label_negative``: skip / hide / report;
    * ``relevance``: 3 share / comment / save / follow, 2 complete_view / like / replay, 1 viewed,
      0 nothing or only negative events.

    Candidates without any event in the window are the negatives; ``negatives_per_group`` of them
    are sampled per group with a generator seeded from ``base.seed`` (rows sorted first, so the
    sample does not depend on input order). Every row is stamped ``event_timestamp = cut`` and its
    features come from the FeatureService ``feast.feature_service`` through Feast's point-in-time
    join (:func:`components.features.point_in_time.training_frame`): a feature row stamped after the cut is
    never used.

Cuts
    ``ranking.training_cuts`` day boundaries: the last is the first day boundary from which the
    label window reaches the end of the data, the others one day apart before it. Later cuts are
    the later groups the ranker's time-based validation split holds out. Embeddings and sources
    are refitted at every cut on the events before it (the stage's ``data/candidates`` list is
    built at the end of the data and excludes what users saw since, so it cannot serve a past
    cut).

Log and join (:func:`join_outcomes`)
    Logged impressions (request_id, user_id, content_id, timestamp, model_version, propensity,
    feature snapshot columns) joined with the same labels from the user's events on that content
    in ``[timestamp, timestamp + window]``.

Only the labelling and the joins are written here; retrieval, the point-in-time join and the
boosting are :mod:`components.retrieval.candidates`, Feast and :mod:`components.ranking.ranker`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import TRAINING_SET_KEYS, Params, stage_context, stage_parser
from components.core.io import atomic_write_parquet, atomic_write_text, write_metrics
from components.core.schema import (
    CONSUMPTION_TYPES,
    CONTENT_NEGATIVE_TYPES,
    LIGHT_POSITIVE_TYPES,
    POSITIVE_TYPES,
    STRONG_POSITIVE_TYPES,
)

if TYPE_CHECKING:
    from feast import FeatureStore

    from components.ranking.ranker import RankerModel
    from components.retrieval.candidates import Retriever

log = logging.getLogger(__name__)

LABEL_COLUMNS: tuple[str, ...] = (
    "label_engaged",
    "label_like",
    "label_share",
    "label_complete_view",
    "label_watch_ratio",
    "label_negative",
    "relevance",
)
RETRIEVAL_COLUMNS: tuple[str, ...] = ("retrieval_score", "retrieval_rank")
#: columns of a training frame that are never model features
NON_FEATURES = frozenset(
    {
        *LABEL_COLUMNS,
        "user_id",
        "content_id",
        "creator_id",
        "group_id",
        "event_timestamp",
        "timestamp",
        "cut",
        "source",
        "in_candidates",
        "request_ts_s",
        "utc_offset_min",
        "device_type",
        "network",
        "request_id",
        "model_version",
        "propensity",
    }
)


@dataclass(frozen=True)
class TrainingSetParams:
    """``ranking`` keys of the training set (the model keys are :class:`RankerParams`')."""

    training_cuts: int
    label_window_hours: float
    negatives_per_group: int
    seed: int

    def __post_init__(self) -> None:
        if self.training_cuts < 1:
            raise ValueError("ranking.training_cuts must be >= 1")
        if self.label_window_hours <= 0:
            raise ValueError("ranking.label_window_hours must be > 0")
        if self.negatives_per_group < 0:
            raise ValueError("ranking.negatives_per_group must be >= 0")

    @property
    def window(self) -> pd.Timedelta:
        return pd.Timedelta(hours=self.label_window_hours)

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> TrainingSetParams:
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.ranking.model_dump(include=TRAINING_SET_KEYS))


# ---------------------------------------------------------------------------------------------
# Labels


def _utc(ts: Any) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _utc_series(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")


def _naive_utc(s: pd.Series) -> np.ndarray:
    """UTC instants as a plain ``datetime64[ns]`` array (tz-aware ``to_numpy`` gives objects)."""
    return _utc_series(s).dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def outcome_labels(
    keys: pd.DataFrame,
    events: pd.DataFrame,
    window: pd.Timedelta,
    *,
    start_col: str = "start",
    include_start: bool = False,
) -> pd.DataFrame:
    """Labels of each ``keys`` row (user_id, content_id, ``start_col``) from the user's events on
    that content in ``(start, start + window]`` (``[start, ...]`` with ``include_start``).

    Returns a frame aligned with ``keys`` (same index) holding :data:`LABEL_COLUMNS`.
    """
    k = pd.DataFrame(
        {
            "_row": np.arange(len(keys)),
            "user_id": keys["user_id"].astype(str).to_numpy(),
            "content_id": keys["content_id"].astype(str).to_numpy(),
            "_start": _naive_utc(keys[start_col]),
        }
    )
    ts = _utc_series(events["timestamp"])
    near = events["content_id"].notna()
    if len(k):
        lo = pd.Timestamp(k["_start"].min()).tz_localize("UTC")
        hi = pd.Timestamp(k["_start"].max()).tz_localize("UTC") + window
        near &= (ts >= lo) & (ts <= hi)
    ev = events.loc[near, ["user_id", "content_id", "event_type", "timestamp"]]
    ev = pd.DataFrame(
        {
            "user_id": ev["user_id"].astype(str).to_numpy(),
            "content_id": ev["content_id"].astype(str).to_numpy(),
            "event_type": ev["event_type"].astype(str).to_numpy(),
            "_t": _naive_utc(ev["timestamp"]),
            "watch_ratio": (
                events.loc[ev.index, "watch_ratio"].to_numpy(dtype="float64", na_value=np.nan)
                if "watch_ratio" in events
                else np.nan
            ),
        }
    )
    m = k.merge(ev, on=["user_id", "content_id"], how="inner")
    after = m["_t"] >= m["_start"] if include_start else m["_t"] > m["_start"]
    m = m[after & (m["_t"] <= m["_start"] + window)]
    typ = m["event_type"]
    flags = pd.DataFrame(
        {
            "_row": m["_row"].to_numpy(),
            "label_engaged": typ.isin(POSITIVE_TYPES).to_numpy(),
            "label_like": (typ == "like").to_numpy(),
            "label_share": (typ == "share").to_numpy(),
            "label_complete_view": (typ == "complete_view").to_numpy(),
            "label_negative": typ.isin(CONTENT_NEGATIVE_TYPES).to_numpy(),
            "_viewed": typ.isin(CONSUMPTION_TYPES).to_numpy(),
            "_g3": typ.isin(STRONG_POSITIVE_TYPES).to_numpy(),
            "_g2": typ.isin(LIGHT_POSITIVE_TYPES).to_numpy(),
            "label_watch_ratio": m["watch_ratio"].where(typ.isin(CONSUMPTION_TYPES)).to_numpy(),
        }
    )
    agg = (
        flags.astype({c: "float64" for c in flags.columns if c != "_row"})
        .groupby("_row")
        .max()
        .reindex(np.arange(len(keys)))
    )
    out = pd.DataFrame(index=keys.index)
    for c in (
        "label_engaged",
        "label_like",
        "label_share",
        "label_complete_view",
        "label_negative",
    ):
        out[c] = (agg[c].fillna(0.0).to_numpy() > 0).astype(np.int8)
    out["label_watch_ratio"] = agg["label_watch_ratio"].to_numpy(dtype="float64")
    g3 = agg["_g3"].fillna(0.0).to_numpy() > 0
    g2 = agg["_g2"].fillna(0.0).to_numpy() > 0
    viewed = agg["_viewed"].fillna(0.0).to_numpy() > 0
    out["relevance"] = np.select([g3, g2, viewed], [3, 2, 1], 0).astype(np.int8)
    out = out[list(LABEL_COLUMNS)]
    return out


def _window_pairs(events: pd.DataFrame, cut: pd.Timestamp, window: pd.Timedelta) -> pd.DataFrame:
    """(user_id, content_id) pairs with any event in ``(cut, cut + window]``."""
    ts = _utc_series(events["timestamp"])
    keep = events["content_id"].notna() & (ts > cut) & (ts <= cut + window)
    if "event_type" in events:
        keep &= events["event_type"].astype(str) != "content_upload"
    sub = events.loc[keep, ["user_id", "content_id"]]
    return pd.DataFrame(
        {"user_id": sub["user_id"].astype(str), "content_id": sub["content_id"].astype(str)}
    ).drop_duplicates()


def group_key(user_id: str, cut: pd.Timestamp) -> str:
    return f"{user_id}@{_utc(cut).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def build_training_set(
    events: pd.DataFrame,
    candidates: pd.DataFrame,
    cut: Any,
    window: pd.Timedelta,
    *,
    negatives_per_group: int = 50,
    seed: int = 42,
    users: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Labelled rows of one cut: candidates ∪ the window's interactions, negatives sampled.

    ``candidates`` holds the serving candidates at the cut (``user_id, content_id`` plus any
    retrieval columns: ``score, source, rank``). Groups are the users
    with an event in the window (or ``users``). Only events in ``(cut, cut + window]`` label a
    row; the features are joined later (:func:`add_features`).
    """
    cut = _utc(cut)
    pairs = _window_pairs(events, cut, window)
    wanted = set(pairs["user_id"]) if users is None else {str(u) for u in users}
    pairs = pairs[pairs["user_id"].isin(wanted)]
    cand = candidates.copy()
    cand["user_id"] = cand["user_id"].astype(str)
    cand["content_id"] = cand["content_id"].astype(str)
    cand = cand[cand["user_id"].isin(wanted)].drop_duplicates(["user_id", "content_id"])
    cand = cand.rename(columns={"score": "retrieval_score", "rank": "retrieval_rank"})
    cand["in_candidates"] = np.int8(1)
    rows = cand.merge(pairs, on=["user_id", "content_id"], how="outer")
    rows["in_candidates"] = rows["in_candidates"].fillna(0).astype(np.int8)
    if "source" in rows:
        rows["source"] = rows["source"].astype(object).where(rows["source"].notna(), "none")
    rows = rows.sort_values(["user_id", "content_id"], kind="stable").reset_index(drop=True)
    # keep every row with an event in the window; sample the untouched candidates
    touched = (
        rows.merge(pairs.assign(_t=True), on=["user_id", "content_id"], how="left")["_t"]
        .notna()
        .to_numpy()
    )
    rng = np.random.default_rng([seed, int(cut.value // 1_000_000_000)])
    key = rng.random(len(rows))
    key[touched] = -1.0
    ranked = rows.assign(_key=key, _touched=touched).sort_values(["user_id", "_key"], kind="stable")
    pos = ranked.groupby("user_id", sort=False).cumcount().to_numpy()
    n_touched = ranked.groupby("user_id", sort=False)["_touched"].transform("sum").to_numpy()
    keep = ranked["_touched"].to_numpy() | (pos < n_touched + negatives_per_group)
    out = (
        ranked[keep]
        .drop(columns=["_key", "_touched"])
        .sort_values(["user_id", "content_id"], kind="stable")
        .reset_index(drop=True)
    )
    out = pd.concat(
        [out, outcome_labels(out.assign(_start=cut), events, window, start_col="_start")], axis=1
    )
    out["group_id"] = [group_key(u, cut) for u in out["user_id"]]
    out["event_timestamp"] = pd.Series(cut, index=out.index).astype("datetime64[ns, UTC]")
    return out


def join_outcomes(
    impressions: pd.DataFrame, events: pd.DataFrame, window: pd.Timedelta
) -> pd.DataFrame:
    """Logged impressions with the labels of the user's events on the content within
    ``[timestamp, timestamp + window]`` (log-and-join training data; the impression columns,
    feature snapshot included, are kept as logged)."""
    missing = [c for c in ("user_id", "content_id", "timestamp") if c not in impressions]
    if missing:
        raise KeyError(f"impressions need columns {missing}")
    labels = outcome_labels(impressions, events, window, start_col="timestamp", include_start=True)
    out = impressions.drop(columns=[c for c in LABEL_COLUMNS if c in impressions])
    return pd.concat([out, labels], axis=1)


# ---------------------------------------------------------------------------------------------
# Candidates at a cut and features


def serving_candidates(
    retr: Retriever, user_ids: Sequence[str], k: int, batch: int = 256
) -> pd.DataFrame:
    """The merged serving candidates (``user_id, content_id, score, source, rank``) of
    :func:`components.retrieval.candidates.candidate_table`; the ranking features of each row come from
    :meth:`~components.retrieval.candidates.Retriever.pair_features`."""
    from components.retrieval.candidates import candidate_table

    return candidate_table(retr, [str(u) for u in user_ids], k, batch)


def training_cuts(end: Any, n: int, window: pd.Timedelta) -> list[pd.Timestamp]:
    """``n`` day boundaries, one day apart, the last the first from which ``window`` reaches
    ``end``; oldest first."""
    last = (_utc(end) - window).ceil("D")
    return [last - pd.Timedelta(days=i) for i in range(n - 1, -1, -1)]


def add_features(store: FeatureStore, rows: pd.DataFrame, service: str) -> pd.DataFrame:
    """The FeatureService's features as of each row's ``event_timestamp`` (point in time)."""
    from components.features.point_in_time import training_frame

    return training_frame(store, rows, service, timestamp_col="event_timestamp")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric columns that are neither labels, keys, request metadata nor timestamps.

    The merged list's own columns (``retrieval_score``, ``retrieval_rank``) are
    left out: positives added from outside the candidate list have none, so the model would
    learn "not retrieved means engaged", which never holds in serving. The retrieval signal
    comes instead from :meth:`components.retrieval.candidates.Retriever.pair_features` (``score_*``,
    ``z_*``, ``item_*``), defined for every row alike.
    """
    cols = []
    for c in frame.columns:
        if c in NON_FEATURES or c in RETRIEVAL_COLUMNS or c.startswith("_"):
            continue
        s = frame[c]
        if pd.api.types.is_bool_dtype(s) or (
            pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_datetime64_any_dtype(s)
        ):
            cols.append(c)
    return cols


# ---------------------------------------------------------------------------------------------
# Stage


@dataclass(frozen=True)
class RankingResult:
    model_dir: Path
    version: str
    rows: int
    groups: int
    metrics: dict[str, Any]


def pipeline_training_set(
    params: Mapping[str, Any], paths: DataPaths, store: FeatureStore
) -> pd.DataFrame:
    """The stage's training set: every cut's candidates (refitted at the cut) and labels,
    features from the params' FeatureService."""
    from components.retrieval.candidates import CandidateParams, Retriever
    from components.retrieval.embeddings import (
        EmbeddingParams,
        fit_embeddings,
        interaction_events,
        read_interim,
    )

    tp = TrainingSetParams.from_params(params)
    dataset = Params.of(params).data.source
    cp = CandidateParams.from_params(params, dataset)
    ep = EmbeddingParams.from_params(params)
    events, content, users = read_interim(paths)
    end = interaction_events(events)["timestamp"].max()
    parts = []
    for cut in training_cuts(end, tp.training_cuts, tp.window):
        active = sorted(_window_pairs(events, cut, tp.window)["user_id"].unique())
        model, _ = fit_embeddings(events, content, ep, now=cut)
        retr = Retriever.fit(model, events, content, users, cut, cp, ep)
        cand = serving_candidates(retr, active, cp.per_user)
        part = build_training_set(
            events,
            cand,
            cut,
            tp.window,
            negatives_per_group=tp.negatives_per_group,
            seed=tp.seed,
            users=active,
        )
        pair = retr.pair_features(part["user_id"].tolist(), part["content_id"].tolist())
        part = pd.concat([part.reset_index(drop=True), pair], axis=1)
        log.info("cut %s: %d groups, %d rows", cut, part["group_id"].nunique(), len(part))
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True)
    service = Params.of(params).feast.feature_service
    return add_features(store, rows, service)


def ranker_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the ranker learns from: the serving candidates only.

    Positives the retrieval missed stay in the training set (they measure retrieval recall and
    feed log-and-join), but not in the ranker's rows: negatives are sampled among candidates
    only, so with the missed positives in, "scores like a non-candidate" would mean "engaged",
    and serving never ranks a non-candidate.
    """
    if "in_candidates" not in frame:
        return frame
    return frame[frame["in_candidates"].to_numpy() == 1].reset_index(drop=True)


def train(
    frame: pd.DataFrame,
    params: Mapping[str, Any],
    service: str,
    created_from: str = "",
    ranker: Any = None,
) -> RankerModel:
    """Train the ranker on the candidate rows of ``frame`` (``ranker``: RankerParams, default
    from ``params``)."""
    from components.ranking.ranker import RankerParams, train_ranker

    rows = ranker_rows(frame)
    return train_ranker(
        rows,
        feature_columns(rows),
        ranker if ranker is not None else RankerParams.from_params(params),
        feature_service=service,
        created_from=created_from,
    )


def holdout_rows(frame: pd.DataFrame, validation_fraction: float) -> pd.DataFrame:
    """The ranker's own validation groups (the latest by time) of its candidate rows."""
    from components.ranking.ranker import time_split

    rows = ranker_rows(frame)
    return rows[time_split(rows, validation_fraction)].reset_index(drop=True)


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


def run(params: Mapping[str, Any], paths: DataPaths) -> RankingResult:
    """Stage: training set → ranker artefact under ``data/models/ranker`` + metrics."""
    from components.features.feast_repo import StoreSettings, open_store
    from components.ranking.ranker import save

    settings = StoreSettings.from_params(params)
    store = open_store(paths, settings)
    frame = pipeline_training_set(params, paths, store)
    model = train(frame, params, settings.feature_service, created_from="pipeline")
    out = save(model, paths.of("ranker"))
    atomic_write_text(paths.of("ranker_latest"), model.version + "\n")
    write_holdout(frame, model, paths.of("ranking_holdout"))
    groups = int(frame["group_id"].nunique())
    metrics: dict[str, Any] = {
        "version": model.version,
        "feature_service": settings.feature_service,
        "rows": len(frame),
        "groups": groups,
        "cuts": sorted(str(t) for t in frame["event_timestamp"].unique()),
        "features": len(model.feature_cols),
        "label_rates": {
            c: round(float(frame[c].mean()), 6) for c in LABEL_COLUMNS if c != "label_watch_ratio"
        },
        "added_positives": int((frame["in_candidates"] == 0).sum()),
        "training": model.training_metrics,
    }
    write_metrics(paths.of("metrics_ranking"), metrics)
    return RankingResult(out, model.version, len(frame), groups, metrics)


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
