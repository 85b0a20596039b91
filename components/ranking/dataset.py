"""The ranker's training set: candidates at a cut labelled from the events after it.

One request group per (user, time cut): the candidates the serving path would have produced at
the cut (the quota-merged list of :func:`components.retrieval.retriever.candidate_table`, refitted on
the events before the cut, with its source, merged score and rank) together with every content
the user actually interacted with in ``(cut, cut + window]`` (a positive the retrieval missed is
added). Labels come only from events in that window (:mod:`components.ranking.labels`).

Candidates without any event in the window are the negatives; ``negatives_per_group`` of them
are sampled per group: the ones with the smallest keyed hash of (seed, cut, user, content)
(:func:`sample_keys`). A row's key depends on that row alone, so the sample depends neither on
input order, nor on which other candidates a machine's retrieval produced (a positional
generator shifted every later key when one candidate differed), nor on ``PYTHONHASHSEED``. Every row is stamped ``event_timestamp = cut``; its
features are joined later (:func:`components.pipeline.Pipeline.training_set`: pair features for
every row alike, retrieved or added, so "not retrieved" cannot leak the label, then the
FeatureService's point-in-time features, :func:`add_features`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.config import TRAINING_SET_KEYS, Params, RankingTrainingSet, Seed
from components.features.point_in_time import training_frame
from components.ranking.labels import LABEL_COLUMNS, outcome_labels, utc, utc_series
from components.ranking.split import time_split

if TYPE_CHECKING:
    from feast import FeatureStore

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


class TrainingSetParams(RankingTrainingSet):
    """``ranking`` keys of the training set (the model keys are :class:`RankerParams`'), with
    ``base.seed`` for the negative sample."""

    seed: Seed

    @property
    def window(self) -> pd.Timedelta:
        return pd.Timedelta(hours=self.label_window_hours)

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> TrainingSetParams:
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.ranking.model_dump(include=TRAINING_SET_KEYS))


def window_pairs(events: pd.DataFrame, cut: pd.Timestamp, window: pd.Timedelta) -> pd.DataFrame:
    """(user_id, content_id) pairs with any event in ``(cut, cut + window]``."""
    ts = utc_series(events["timestamp"])
    keep = events["content_id"].notna() & (ts > cut) & (ts <= cut + window)
    if "event_type" in events:
        keep &= events["event_type"].astype(str) != "content_upload"
    sub = events.loc[keep, ["user_id", "content_id"]]
    return pd.DataFrame(
        {"user_id": sub["user_id"].astype(str), "content_id": sub["content_id"].astype(str)}
    ).drop_duplicates()


def group_key(user_id: str, cut: pd.Timestamp) -> str:
    return f"{user_id}@{utc(cut).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def training_cuts(end: Any, n: int, window: pd.Timedelta) -> list[pd.Timestamp]:
    """``n`` day boundaries, one day apart, the last the first from which ``window`` reaches
    ``end``; oldest first."""
    last = (utc(end) - window).ceil("D")
    return [last - pd.Timedelta(days=i) for i in range(n - 1, -1, -1)]


def sample_groups(users: Iterable[Any], cap: int, seed: int, cut: pd.Timestamp) -> list[str]:
    """At most ``cap`` of ``users`` (0: all), sorted: a uniform sample by the same seeded pair
    hash as the negatives (:func:`sample_keys`), so it does not depend on the input order."""
    ordered = sorted(str(u) for u in users)
    if cap <= 0 or len(ordered) <= cap:
        return ordered
    ids = pd.Series(ordered)
    keys = sample_keys(ids, pd.Series([""] * len(ids)), seed, utc(cut))
    return sorted(ids.iloc[np.argsort(keys, kind="stable")[:cap]].tolist())


def _candidates_and_positives(
    candidates: pd.DataFrame, pairs: pd.DataFrame, wanted: set[str]
) -> pd.DataFrame:
    """The wanted users' candidates (``in_candidates = 1``) outer-joined with their window
    pairs, sorted by user and content."""
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
    return rows.sort_values(["user_id", "content_id"], kind="stable").reset_index(drop=True)


def sample_keys(user_ids: pd.Series, content_ids: pd.Series, seed: int, cut: pd.Timestamp) -> np.ndarray:
    """A uniform key in [0, 1) per (user, content): pandas' SipHash of the pair under a 128-bit
    key made of ``seed`` and the cut's second (the same on any machine and in any process)."""
    pairs = pd.DataFrame({"u": user_ids.astype(str).to_numpy(), "c": content_ids.astype(str).to_numpy()})
    hash_key = f"{seed % 10**8:08d}{int(cut.value // 1_000_000_000) % 10**8:08d}"
    h = pd.util.hash_pandas_object(pairs, index=False, hash_key=hash_key).to_numpy(dtype=np.uint64)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _sample_negatives(
    rows: pd.DataFrame, pairs: pd.DataFrame, cut: pd.Timestamp, negatives: int, seed: int
) -> pd.DataFrame:
    """Every row with an event in the window, and ``negatives`` sampled untouched rows per user."""
    touched = (
        rows.merge(pairs.assign(_t=True), on=["user_id", "content_id"], how="left")["_t"]
        .notna()
        .to_numpy()
    )
    key = sample_keys(rows["user_id"], rows["content_id"], seed, cut)
    key[touched] = -1.0
    ranked = rows.assign(_key=key, _touched=touched).sort_values(["user_id", "_key"], kind="stable")
    pos = ranked.groupby("user_id", sort=False).cumcount().to_numpy()
    n_touched = ranked.groupby("user_id", sort=False)["_touched"].transform("sum").to_numpy()
    keep = ranked["_touched"].to_numpy() | (pos < n_touched + negatives)
    return (
        ranked[keep]
        .drop(columns=["_key", "_touched"])
        .sort_values(["user_id", "content_id"], kind="stable")
        .reset_index(drop=True)
    )


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
    cut = utc(cut)
    pairs = window_pairs(events, cut, window)
    wanted = set(pairs["user_id"]) if users is None else {str(u) for u in users}
    pairs = pairs[pairs["user_id"].isin(wanted)]
    rows = _candidates_and_positives(candidates, pairs, wanted)
    out = _sample_negatives(rows, pairs, cut, negatives_per_group, seed)
    out = pd.concat(
        [out, outcome_labels(out.assign(_start=cut), events, window, start_col="_start")], axis=1
    )
    out["group_id"] = [group_key(u, cut) for u in out["user_id"]]
    out["event_timestamp"] = pd.Series(cut, index=out.index).astype("datetime64[ns, UTC]")
    return out


def add_features(store: FeatureStore, rows: pd.DataFrame, service: str) -> pd.DataFrame:
    """The FeatureService's features as of each row's ``event_timestamp`` (point in time)."""
    return training_frame(store, rows, service, timestamp_col="event_timestamp")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric columns that are neither labels, keys, request metadata nor timestamps.

    The merged list's own columns (``retrieval_score``, ``retrieval_rank``) are
    left out: positives added from outside the candidate list have none, so the model would
    learn "not retrieved means engaged", which never holds in serving. The retrieval signal
    comes instead from :meth:`components.retrieval.retriever.Retriever.pair_features` (``score_*``,
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


def holdout_rows(frame: pd.DataFrame, validation_fraction: float) -> pd.DataFrame:
    """The ranker's own validation groups (the latest by time) of its candidate rows."""
    rows = ranker_rows(frame)
    return rows[time_split(rows, validation_fraction)].reset_index(drop=True)
