"""The ``params.yaml`` sections of the batch pipeline (data, features, retrieval, ranking,
evaluation, drift, tuning): one Pydantic model per section, no defaults, unknown keys rejected
(:class:`~components.core.section.Section`); :class:`components.core.config.Params` assembles them."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, Self

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from components.core.schema import USER_EVENT_TYPES
from components.core.section import IsoDate, Overrides, Section, Seed


class Base(Section):
    seed: Seed


class Data(Section):
    #: the drop ingested: one of DATASETS in the pipeline; a brought split's own name in evaluation
    source: str


class Datagen(Section):
    n_users: PositiveInt
    n_items: PositiveInt
    n_creators: PositiveInt
    n_categories: PositiveInt
    n_events: PositiveInt
    start: IsoDate
    days: PositiveInt
    bad_event_rate: float = Field(ge=0, lt=0.5)
    exploration_share: float = Field(ge=0, le=1)
    chunk_events: PositiveInt


class IngestLimits(Section):
    """``ingest`` keys: the validation bounds of a record."""

    max_watch_duration_s: float
    max_text_chars: int
    max_id_chars: int
    future_tolerance_s: float
    min_timestamp: str | None  # None: no lower bound
    min_rating: float
    max_rating: float
    #: device_type / os / network longer than this are quarantined (``field_too_long``)
    max_field_chars: int = Field(64, gt=0)


class Ingest(IngestLimits):
    overrides: Overrides


class Preprocess(Section):
    session_gap_minutes: float


class Features(Section):
    snapshot_hours: PositiveFloat
    lambda_decay: NonNegativeFloat  # per day: weight = exp(-lambda_decay * age_days)
    decay_unit: Literal["days"]
    growth_window_hours: PositiveFloat
    creator_rate_window_days: float
    last_n_viewed: NonNegativeInt
    max_categories: PositiveInt
    text_dim: PositiveInt
    tfidf_max_features: int
    engagement_weights: dict[str, float]

    @field_validator("engagement_weights")
    @classmethod
    def _user_event_types(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = set(weights) - set(USER_EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types {sorted(unknown)}")
        return weights


class Feast(Section):
    project: str
    online_store: Literal["sqlite", "redis"]
    materialize_overlap_hours: float
    registry_cache_ttl_s: int
    feature_service: str


class Embeddings(Section):
    factors: int
    regularization: float
    alpha: float
    negative_alpha: float
    iterations: int
    threads: int
    event_weights: dict[str, float]
    watch_ratio_weight: float
    watch_ratio_cap: float
    graph_dim: int
    graph_window: int
    graph_negative: float
    graph_rank: int
    graph_max_nodes: int
    text_dim: int
    tfidf_max_features: int
    ridge_alpha: float
    cold_blend: float
    min_ridge_interactions: int
    block_weights: dict[str, float]


class Knn(Section):
    k: int
    shrinkage: float
    bias_reg: float
    scoring: str


class Trending(Section):
    window_hours: float
    min_engagements: int


class Recent(Section):
    window_hours: float


class Fresh(Section):
    max_age_hours: float


class Ease(Section):
    lambda_: float = Field(alias="lambda")
    max_items: int
    window: int = Field(0, ge=0)  # sequence window (positions); 0 = plain EASE
    window_weight: float = Field(0.0, ge=0.0)


class Index(Section):
    type: str
    hnsw_m: int
    ef_construction: int
    ef_search: int
    nlist: int
    nprobe: int
    pq_m: int
    pq_bits: int
    refine_factor: int
    build_threads: int
    max_train_per_list: int
    recall_k: tuple[int, ...]


class CandidateEvaluation(Section):
    cut_quantile: float
    ks: tuple[int, ...]
    positive_types: tuple[str, ...]
    max_users: int


class Candidates(Section):
    similarity_threshold: float
    alpha: float
    per_source: int
    per_user: int
    knn: Knn
    trending: Trending
    recent: Recent
    fresh: Fresh
    ease: Ease
    item_windows_hours: tuple[float, ...]
    mix: dict[str, float]
    index: Index
    evaluation: CandidateEvaluation
    overrides: Overrides


class Exploration(Section):
    epsilon: float
    strategy: str
    ucb_c: float
    dpp_theta: float


class RankingModel(Section):
    """``ranking`` keys the model reads."""

    backend: str
    objective: str
    heads: dict[str, float]
    l2_lambda: NonNegativeFloat
    learning_rate: PositiveFloat
    lr_decay: float = Field(gt=0, le=1)
    n_estimators: PositiveInt
    early_stopping_rounds: NonNegativeInt  # 0 disables early stopping (validation is still scored)
    num_leaves: int = Field(ge=2)
    max_depth: PositiveInt
    min_child_samples: PositiveInt
    validation_fraction: float = Field(gt=0, lt=1)
    eval_at: PositiveInt
    n_threads: PositiveInt
    base_feature: str  # main head boosts from this feature ("auto": best z_* on training groups; "": off)
    base_weight: float
    #: compare the ranker with the best single source on validation and serve their tuned blend
    blend: bool = True


class RankingTrainingSet(Section):
    """``ranking`` keys of the training set (the ranking stage's)."""

    training_cuts: PositiveInt
    label_window_hours: PositiveFloat
    negatives_per_group: NonNegativeInt
    #: request groups (users) kept per cut, a seeded sample when more are active (0: all)
    max_groups_per_cut: NonNegativeInt = 0


class Ranking(RankingTrainingSet, RankingModel):
    """The ``ranking`` section: the model's keys, then the training set's."""


#: ``ranking`` keys of the training set (the stage's); the model reads the others.
TRAINING_SET_KEYS: set[str] = set(RankingTrainingSet.model_fields)


class EvaluateProtocol(Section):
    """``evaluate`` keys of one protocol run (for one data set, after its override)."""

    protocol: str
    cut_quantile: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    positive_types: tuple[str, ...]  # empty: any interaction is relevant
    ks: tuple[int, ...]
    beyond_k: int
    curve_max_k: int
    inner_folds: PositiveInt
    #: temporal_per_user: each validation fold first drops the events at or after this quantile
    #: of its source's interaction times, then holds out each user's last ``test_fraction`` (None:
    #: nest without dropping; see ``evaluation.protocols.fold_parts``)
    inner_cut_quantile: float | None = Field(default=None, gt=0, lt=1)
    negatives_per_group: int
    feast_features: bool
    max_test_users: int  # 0: all
    #: runs with seeds base.seed + 0 .. repeats - 1; figures are mean ± 95 % t-interval over them
    repeats: PositiveInt = 1


class BroughtSplit(Section):
    """``evaluate.brought``: the ingestion rules of a split brought as files (``--train-file``)."""

    #: earliest timestamp accepted (ISO-8601); None: no lower bound (the ``ingest`` one is for
    #: the short-video log, not for a published data set)
    min_timestamp: str | None

    @field_validator("min_timestamp")
    @classmethod
    def _iso(cls, v: str | None) -> str | None:
        if v is not None:
            dt.datetime.fromisoformat(v)  # ValueError when not a timestamp
        return v


class Evaluate(EvaluateProtocol):
    #: ``ranking`` keys laid over the ``ranking`` section when evaluating (per data set in overrides)
    ranking: dict[str, Any]
    brought: BroughtSplit
    overrides: Overrides


class Drift(Section):
    current_days: PositiveFloat
    reference_days: PositiveFloat
    drift_share: float = Field(gt=0, le=1)
    num_stattest: str | None
    cat_stattest: str | None
    stattest_threshold: float | None
    min_rows: PositiveInt
    max_rows: int
    max_columns: NonNegativeInt  # 0: every column
    feature_tables: tuple[str, ...]
    exclude_columns: tuple[str, ...]
    engagement_types: tuple[str, ...]
    ignore_event_types: tuple[str, ...]
    score_log: str
    retrain_on: tuple[str, ...]

    @model_validator(mode="after")
    def _rows(self) -> Self:
        if self.max_rows < self.min_rows:
            raise ValueError("need min_rows <= max_rows")
        return self


class Tuning(Section):
    """``tuning``: the Optuna study of :mod:`components.tuning.stage` (validation carved from train)."""

    trials: PositiveInt = 20
    timeout_s: NonNegativeFloat = 0.0  # 0: no time limit (the trials bound the study)
    apply: bool = True  # the evaluation lays data/tuning/<name>.json over its params
    ease_lambda: tuple[PositiveFloat, PositiveFloat] = (10.0, 5000.0)  # log-uniform search range
    ease_window: tuple[NonNegativeInt, NonNegativeInt] = (0, 20)  # uniform; 0 = plain EASE
    ease_window_weight: tuple[NonNegativeFloat, NonNegativeFloat] = (0.0, 4.0)  # uniform
    # which studies run, in components.tuning.studies.STUDIES order; each has its own budget
    studies: tuple[str, ...] = ("ease", "als", "knn", "mix", "ranker")
    ranker_trials: PositiveInt = 4  # the ranker study's trials (each trains every head)
    als_factors: tuple[PositiveInt, PositiveInt] = (16, 128)
    als_regularization: tuple[PositiveFloat, PositiveFloat] = (0.01, 10.0)
    als_alpha: tuple[PositiveFloat, PositiveFloat] = (1.0, 40.0)
    als_iterations: tuple[PositiveInt, PositiveInt] = (5, 30)
    knn_k: tuple[PositiveInt, PositiveInt] = (10, 400)
    knn_shrinkage: tuple[PositiveFloat, PositiveFloat] = (0.1, 100.0)
    num_leaves: tuple[PositiveInt, PositiveInt] = (7, 127)
    learning_rate: tuple[PositiveFloat, PositiveFloat] = (0.01, 0.2)
    n_estimators: tuple[PositiveInt, PositiveInt] = (100, 600)
    min_child_samples: tuple[PositiveInt, PositiveInt] = (5, 100)
    #: the folds study's values of ``evaluate.inner_cut_quantile`` (None: nest without dropping)
    inner_cut_quantiles: tuple[float | None, ...] = (None, 0.6, 0.7, 0.8, 0.9, 0.95)
    #: the folds study's values of ``evaluate.negatives_per_group`` (one value: not searched)
    fold_negatives: tuple[PositiveInt, ...] = (100,)

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        known = ("ease", "als", "knn", "mix", "ranker", "folds")
        if not self.fold_negatives:
            raise ValueError("tuning.fold_negatives: need at least one value")
        if not self.inner_cut_quantiles or any(q is not None and not 0 < q < 1 for q in self.inner_cut_quantiles):
            raise ValueError(f"tuning.inner_cut_quantiles: need values in (0, 1) or null, got {list(self.inner_cut_quantiles)}")
        unknown = sorted(set(self.studies) - set(known))
        if unknown:
            raise ValueError(f"tuning.studies: unknown {unknown}; known: {list(known)}")
        for name in ("ease_lambda", "ease_window", "ease_window_weight", "als_factors", "als_regularization", "als_alpha", "als_iterations", "knn_k",
                     "knn_shrinkage", "num_leaves", "learning_rate", "n_estimators", "min_child_samples"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"tuning.{name}: need low <= high, got [{low}, {high}]")
        return self
