"""The one composition of the stage cores: fit retrieval at a cut, build the training set from
the events after it, train the ranker, score candidates.

Every caller that runs the model pipeline goes through :class:`Pipeline` (built once from the
params by :meth:`Pipeline.of`): the ranking stage (one part per training cut, the project's
feature store), the evaluation protocols and cross-validation (one part per nested validation
fold, each with a store built from its own train part), the batch feed (the stage artefacts:
saved embeddings, the latest ranker, the project's store) and serving's export. Changing how
two stages fit together is an edit here only.

    fit(events before the cut)          retrieval: embeddings (or the saved ones), every source
      → candidates(users)               the quota-merged serving candidates
      → training_set(parts)             candidates ∪ later positives, labels, sampled negatives,
                                        pair features, then the FeatureService point in time
      → train(frame)                    the GBDT heads on the candidate rows
      → score(fitted, model, users)     the candidates with their features and the ranker score

:mod:`components.data.prepare` composes the data stages (a drop, ingest, preprocess) the same
way for evaluations of a named data set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.catalog import DataPaths
from components.core.config import Params
from components.features.compute import run as features_run
from components.features.feast_repo import StoreSettings, open_store
from components.features.store import apply
from components.ranking.dataset import (
    add_features,
    build_training_set,
    feature_columns,
    ranker_rows,
)
from components.ranking.model import RankerModel
from components.ranking.params import RankerParams
from components.ranking.train import train_ranker
from components.retrieval.embedding_model import EmbeddingModel
from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.index import ContentIndex
from components.retrieval.params import CandidateParams
from components.retrieval.retriever import Retriever, candidate_table, fit_retrieval

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

#: the columns of a candidate row that scoring keeps (the merged retrieval score is not a feature)
CANDIDATE_KEYS = ["user_id", "content_id", "source", "rank"]


@dataclass
class Fitted:
    """Retrieval fitted as of ``cut``, and the feature store its rows take features from
    (``None``: pair features only)."""

    retriever: Retriever
    cut: pd.Timestamp
    store: FeatureStore | None = None


@dataclass(frozen=True)
class TrainingPart:
    """One cut's request groups: the users' candidates from ``fitted``, labelled by the events
    of ``labels`` in ``(cut, cut + window]``."""

    fitted: Fitted
    labels: pd.DataFrame
    users: Sequence[str]
    window: pd.Timedelta
    negatives: int
    seed: int
    #: appended to the group ids, so groups of parts with the same cut stay apart
    name: str = ""
    #: the time the ranker's validation split orders the part by (``None``: its cut)
    order_time: pd.Timestamp | None = None


@dataclass(frozen=True)
class Pipeline:
    """The stage cores' parameters for one data set, and the steps that compose them."""

    params: Mapping[str, Any]
    retrieval: CandidateParams
    embeddings: EmbeddingParams
    ranker: RankerParams
    #: the FeatureService of rows with a store and of the trained model ("": pair features only)
    feature_service: str

    @classmethod
    def of(
        cls,
        params: Mapping[str, Any],
        dataset: str | None = None,
        *,
        ranker: RankerParams | None = None,
        feature_service: str | None = None,
    ) -> Pipeline:
        """From the params (``dataset``: its candidate overrides; default ``data.source``);
        ``ranker`` and ``feature_service`` default to the ``ranking`` and ``feast`` sections."""
        cfg = Params.of(params)
        return cls(
            params=params,
            retrieval=CandidateParams.from_params(params, dataset or cfg.data.source),
            embeddings=EmbeddingParams.from_params(params),
            ranker=ranker if ranker is not None else RankerParams.from_params(params),
            feature_service=cfg.feast.feature_service if feature_service is None else feature_service,
        )

    # ---- retrieval

    def fit(
        self,
        events: pd.DataFrame,
        content: pd.DataFrame,
        users: pd.DataFrame,
        cut: pd.Timestamp,
        *,
        embeddings: EmbeddingModel | None = None,
        index: ContentIndex | None = None,
    ) -> Fitted:
        """Retrieval as of ``cut`` (:func:`components.retrieval.retriever.fit_retrieval`)."""
        retr = fit_retrieval(
            events, content, users, cut, self.retrieval, self.embeddings, embeddings=embeddings, index=index
        )
        return Fitted(retr, cut)

    def candidates(self, fitted: Fitted, user_ids: Sequence[str]) -> pd.DataFrame:
        """The serving candidates of ``user_ids``: ``user_id, content_id, score, source, rank``."""
        return candidate_table(fitted.retriever, [str(u) for u in user_ids], self.retrieval.per_user)

    # ---- features

    def build_store(
        self, root: Path, events: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame
    ) -> FeatureStore:
        """A Feast store under ``root`` whose features come from ``events`` only (the features
        stage on them, then ``feast apply``)."""
        paths = DataPaths(root)
        paths.interim.mkdir(parents=True, exist_ok=True)
        for name, frame in (("interim_events", events), ("interim_content", content), ("interim_users", users)):
            pq.write_table(pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False), paths.of(name))
        features_run(self.params, paths)
        store = open_store(paths, StoreSettings.from_params(self.params))
        apply(store)
        return store

    def store_features(self, store: FeatureStore | None, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` with the FeatureService's features as of each ``event_timestamp`` (as they
        are without a store)."""
        return rows if store is None else add_features(store, rows, self.feature_service)

    @staticmethod
    def pair_features(retriever: Retriever, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` with the pair features of each (user, content): every pair source's score
        and per-user z-score, the content's activity; defined for every row alike."""
        pair = retriever.pair_features(rows["user_id"].tolist(), rows["content_id"].tolist())
        return pd.concat([rows.reset_index(drop=True), pair], axis=1)

    def row_features(self, fitted: Fitted, rows: pd.DataFrame) -> pd.DataFrame:
        """Pair features of every (user, content) row, then the store's features."""
        return self.store_features(fitted.store, self.pair_features(fitted.retriever, rows))

    # ---- training

    def labelled_rows(self, part: TrainingPart) -> pd.DataFrame:
        """One part's labelled candidates and later positives with their pair features."""
        fitted = part.fitted
        cand = self.candidates(fitted, part.users)
        rows = build_training_set(
            part.labels,
            cand,
            fitted.cut,
            part.window,
            negatives_per_group=part.negatives,
            seed=part.seed,
            users=part.users,
        )
        rows = self.pair_features(fitted.retriever, rows)
        if part.name:
            rows["group_id"] = rows["group_id"] + part.name
        return rows

    def training_set(self, parts: Iterable[TrainingPart]) -> pd.DataFrame:
        """Every part's rows with their features, stacked. Consecutive parts with the same store
        take its features in one point-in-time join. ``parts`` may be a generator: each part's
        retrieval is dropped once its rows are built."""
        frames = []
        built = (_PartRows.of(p, self.labelled_rows(p)) for p in parts)
        for _, run in groupby(built, key=lambda r: id(r.store)):
            group = list(run)
            joined = self.store_features(group[0].store, pd.concat([g.rows for g in group], ignore_index=True))
            start = 0
            for g in group:
                frames.append(_ordered(joined.iloc[start : start + len(g.rows)].copy(), g))
                start += len(g.rows)
        return pd.concat(frames, ignore_index=True)

    def train(self, frame: pd.DataFrame, created_from: str = "") -> RankerModel:
        """The ranker from the candidate rows of a training set."""
        rows = ranker_rows(frame)
        return train_ranker(
            rows, feature_columns(rows), self.ranker, feature_service=self.feature_service, created_from=created_from
        )

    def train_on(self, parts: Iterable[TrainingPart], created_from: str = "") -> tuple[RankerModel, pd.DataFrame]:
        """The training set of ``parts`` and the ranker trained on it."""
        frame = self.training_set(parts)
        return self.train(frame, created_from), frame

    # ---- scoring

    def score(self, fitted: Fitted, model: RankerModel, user_ids: Sequence[str]) -> pd.DataFrame:
        """The serving candidates of ``user_ids`` at the fit's cut, with their features and the
        ranker's ``score``."""
        cand = self.candidates(fitted, user_ids)[CANDIDATE_KEYS]
        rows = cand.assign(event_timestamp=pd.Series(fitted.cut, index=cand.index).astype("datetime64[ns, UTC]"))
        scored = self.row_features(fitted, rows)
        scored["score"] = model.predict(scored[model.feature_cols])
        return scored


@dataclass(frozen=True)
class _PartRows:
    """A part's rows with what :meth:`Pipeline.training_set` still needs of the part (its store,
    cut, name and order time), without keeping its fitted retrieval alive."""

    rows: pd.DataFrame
    store: FeatureStore | None
    cut: pd.Timestamp
    name: str
    order_time: pd.Timestamp | None

    @classmethod
    def of(cls, part: TrainingPart, rows: pd.DataFrame) -> _PartRows:
        return cls(rows, part.fitted.store, part.fitted.cut, part.name, part.order_time)


def _ordered(rows: pd.DataFrame, part: _PartRows) -> pd.DataFrame:
    """Stamp a part's rows with its order time (after the feature join, which used the cut)."""
    if part.order_time is not None:
        rows["event_timestamp"] = pd.Series(part.order_time, index=rows.index).astype("datetime64[ns, UTC]")
    log.info("part %s: cut %s, %d groups, %d rows", part.name or "-", part.cut, rows["group_id"].nunique(), len(rows))
    return rows
