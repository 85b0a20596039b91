"""Typed ``params.yaml`` and the stage CLIs' shared arguments.

``params.yaml`` is the one source of every tunable: each section has a Pydantic model here
with no defaults, unknown keys are rejected (``extra="forbid"``) and a problem is reported
with the key's dotted path and the file (``params.yaml: ranking.num_leavs: unknown key``).
A range a section's values must keep (``ranking.num_leaves`` at least 2, ``drift.drift_share``
in (0, 1]) is checked here too, so a bad value stops the run as the file loads; a stage's
settings class subclasses its section and adds only what needs the stage's own vocabulary.
:meth:`Section.replace` is the validated ``dataclasses.replace`` of these models.
:meth:`Params.for_dataset` is the one place the per-data-set ``overrides`` subsections are
applied. The environment (``RECO_*``) is read by :class:`components.core.settings.Settings`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from components.core.catalog import DataPaths
from components.core.schema import USER_EVENT_TYPES

DEFAULT_PARAMS = DataPaths().of("params")
#: Data sets a drop can come from (``data.source``).
DATASETS: tuple[str, ...] = ("synthetic", "kuairand", "movielens")
#: Sections with ``overrides.<dataset>`` subsections, merged by :meth:`Params.for_dataset`.
OVERRIDABLE: tuple[str, ...] = ("ingest", "candidates", "evaluate")


class ConfigError(ValueError):
    """``params.yaml`` (or the environment) does not match its model; the message names each key."""


def _iso_date(value: Any) -> Any:
    """YAML reads an unquoted date as a ``date``: keep it as the ISO string the file shows."""
    return value.isoformat() if isinstance(value, dt.date) else value


def _is_iso_date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"must be an ISO date, got {value!r}") from None
    return value


IsoDate = Annotated[str, BeforeValidator(_iso_date), AfterValidator(_is_iso_date)]
#: ``base.seed``, and the seed a stage's settings carry from it.
Seed = Annotated[int, Field(ge=0)]
#: Partial mappings laid over a section for one data set, checked against the section's model.
Overrides = dict[str, dict[str, Any]]


class Section(BaseModel):
    """A params.yaml mapping: frozen, every key required, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields (by name) changed, validated again like a new one
        (``model_copy(update=...)`` does not validate)."""
        aliases = {name: f.alias for name, f in type(self).model_fields.items() if f.alias}
        values = {**dict(self), **changes}
        return type(self).model_validate({aliases.get(k, k): v for k, v in values.items()})


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


class OfflineGate(Section):
    min_delta_ndcg: float
    min_delta_auc: float
    min_auc: float
    max_quarantine_rate: float
    min_groups: int


class ShadowGate(Section):
    min_rank_corr: float
    max_p99_ms: float


class CanaryGate(Section):
    share: float = Field(gt=0, lt=1)
    salt: str
    min_users: int = Field(ge=2)
    alpha: float = Field(gt=0, lt=1)
    noninferiority_margin: float
    guardrail_margin: float


class Promote(Section):
    k: PositiveInt
    offline: OfflineGate
    shadow: ShadowGate
    canary: CanaryGate


class Serving(Section):
    clock: Literal["data", "wall"]
    timeout_ms: float
    budget_ms: float
    refresh_s: float
    stream_poll_s: float
    threads: int
    moderation_report_threshold: int
    trend_beta: float
    rerank_pool: int
    log_flush_records: int
    faiss_threads: int
    gc_freeze: bool
    realtime_weight: float
    realtime_candidates: int
    store_retry_s: float
    compile_ranker: bool
    log_flush_s: float
    #: request bodies above this many bytes are answered 413 before anything reads them
    max_body_bytes: int = Field(gt=0)
    #: streamed reports count only from users with this many accepted events ...
    moderation_min_user_events: int = Field(ge=0)
    #: ... the first of them at least this long before the report (or known to the batch export)
    moderation_min_user_age_s: float = Field(ge=0)
    #: users whose event history (for the above) and contents whose reporters are kept
    moderation_track_users: int = Field(gt=0)
    #: where the per-key rate-limit buckets live, shared by the workers (env RECO_RATE_LIMIT_STORE)
    rate_limit_store: Literal["memory", "sqlite", "redis"]
    #: users whose streamed state (seen contents, real-time interest and windows) is kept
    stream_users: int = Field(gt=0)
    #: contents noted as seen per user since load (the most recent)
    stream_seen_per_user: int = Field(gt=0)
    #: impression rows kept in memory while the disk refuses writes (beyond: the oldest are dropped, counted)
    log_buffer_max: int = Field(gt=0)


class OnlineUpdateOptions(Section):
    """``online_update`` keys the updater reads (``enabled`` is the serving process's choice)."""

    buffer_size: PositiveInt
    update_interval_s: PositiveFloat
    rounds: PositiveInt
    learning_rate: PositiveFloat | None  # None: continue the parent's learning-rate schedule
    label_window_s: PositiveFloat
    min_labelled_rows: PositiveInt
    max_impression_age_s: float
    n_threads: PositiveInt
    archive_superseded: bool
    run_offline_gate: bool

    @model_validator(mode="after")
    def _ages(self) -> Self:
        if not self.max_impression_age_s > self.label_window_s:
            raise ValueError("max_impression_age_s must be > label_window_s")
        return self


class OnlineUpdate(OnlineUpdateOptions):
    enabled: bool


#: Serving keys an experiment arm may set for its users (read by the serving re-rank step).
ARM_KEYS: tuple[str, ...] = ("trend_beta", "epsilon", "strategy", "ucb_c", "dpp_theta")


class Guardrail(Section):
    """A metric that must not move the wrong way by more than ``margin`` (absolute)."""

    metric: str
    worse_when: Literal["higher", "lower"]
    margin: NonNegativeFloat


class ExperimentArm(Section):
    share: float = Field(gt=0, le=1)
    #: serving keys (``ARM_KEYS``) laid over params.yaml for this arm's users; {} = control
    serving: dict[str, float | str]

    @field_validator("serving")
    @classmethod
    def _keys(cls, v: dict[str, float | str]) -> dict[str, float | str]:
        unknown = sorted(set(v) - set(ARM_KEYS))
        if unknown:
            raise ValueError(f"unknown serving keys {unknown}; an arm may set {list(ARM_KEYS)}")
        return v


class Experiment(Section):
    name: str = Field(min_length=1)
    salt: str = Field(min_length=1)
    control: str
    arms: dict[str, ExperimentArm]

    @model_validator(mode="after")
    def _arms(self) -> Self:
        if len(self.arms) < 2 or self.control not in self.arms:
            raise ValueError("an experiment needs >= 2 arms, the control among them")
        if abs(sum(a.share for a in self.arms.values()) - 1.0) > 1e-9:
            raise ValueError("arm shares must sum to 1")
        return self


class Experiments(Section):
    """``experiments``: A/B/n tests of configurations, their analysis and the post-promotion monitor."""

    alpha: float = Field(gt=0, lt=1)
    power: float = Field(gt=0, lt=1)
    srm_alpha: float = Field(gt=0, lt=1)
    label_window_s: PositiveFloat
    primary_metric: str
    mde: PositiveFloat
    guardrails: list[Guardrail]
    running: list[Experiment]
    monitor_guardrails: list[Guardrail]
    monitor_min_users: PositiveInt
    monitor_window_hours: PositiveFloat
    ope_bootstrap: PositiveInt
    ope_epsilon: float = Field(ge=0, le=1)


class Simulate(Section):
    """``simulate``: the user simulator (:mod:`components.simulate`) and ``make simulate``."""

    users: int = Field(ge=0)  # simulated users (the synthetic world's first ones); 0: all of them
    days: PositiveInt  # simulated days of traffic
    feed_k: PositiveInt  # contents per feed request
    batch_events: PositiveInt  # events per POST /v1/events
    max_requests: PositiveInt  # bound: feed requests of a run
    max_wall_s: PositiveFloat  # bound: wall seconds of one traffic phase
    max_pages: PositiveInt  # feed pages per session at most
    leave_base: float = Field(gt=0, lt=1)  # P(leave after a page) at the reference satisfaction
    leave_satisfaction: float = Field(ge=0)  # how much satisfaction lowers it (logit units)
    satisfaction_ref: float = Field(gt=0, lt=1)  # the engagement probability counted as neutral
    return_gap_hours: PositiveFloat  # mean gap between sessions at the reference satisfaction
    return_satisfaction: float = Field(ge=0)  # how much satisfaction shortens the gap (log units)
    satisfaction_memory: float = Field(gt=0, le=1)  # weight of the last session in the user's mood
    uploads_per_day: int = Field(ge=0)  # new contents uploaded during the run
    retrain_after_days: PositiveInt  # make simulate: traffic days before the retrain
    shadow_days: PositiveInt  # make simulate: days the candidate scores as the shadow
    canary_days: PositiveInt  # make simulate: days of the live canary


def error_lines(err: ValidationError, source: str, prefix: tuple[str | int, ...] = ()) -> list[str]:
    """One ``file: dotted.key: problem`` line per Pydantic error."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in (*prefix, *e["loc"])) or "(top level)"
        problem = {"extra_forbidden": "unknown key", "missing": "missing key"}.get(e["type"], e["msg"])
        problem = problem.removeprefix("Value error, ")  # a validator's own message
        lines.append(f"{source}: {where}: {problem}")
    return lines


class Tuning(Section):
    """``tuning``: the Optuna study of :mod:`components.tuning.stage` (validation carved from train)."""

    trials: PositiveInt = 20
    timeout_s: NonNegativeFloat = 0.0  # 0: no time limit (the trials bound the study)
    apply: bool = True  # the evaluation lays data/tuning/<name>.json over its params
    ease_lambda: tuple[PositiveFloat, PositiveFloat] = (10.0, 5000.0)  # log-uniform search range


class Params(Section):
    """The whole ``params.yaml``: build it with :meth:`of` or :func:`load_config`, which also
    check every ``overrides`` subsection against its section's model."""

    base: Base
    data: Data
    datagen: Datagen
    ingest: Ingest
    preprocess: Preprocess
    features: Features
    feast: Feast
    embeddings: Embeddings
    candidates: Candidates
    exploration: Exploration
    ranking: Ranking
    evaluate: Evaluate
    drift: Drift
    promote: Promote
    serving: Serving
    online_update: OnlineUpdate
    experiments: Experiments
    simulate: Simulate
    tuning: Tuning = Tuning()

    @classmethod
    def of(cls, params: Params | Mapping[str, Any], source: str = "params") -> Params:
        """Validate a params mapping (an already validated :class:`Params` is returned as is)."""
        if isinstance(params, Params):
            return params
        try:
            cfg = cls.model_validate(dict(params))
        except ValidationError as err:
            raise ConfigError("\n".join(error_lines(err, source))) from None
        problems = cfg._override_problems(source)
        if problems:
            raise ConfigError("\n".join(problems))
        return cfg

    def _override_problems(self, source: str) -> list[str]:
        raw = self.model_dump(by_alias=True)
        models: dict[str, type[Section]] = {"ingest": Ingest, "candidates": Candidates, "evaluate": Evaluate}
        problems: list[str] = []

        def check(model: type[Section], merged: dict[str, Any], prefix: tuple[str, ...]) -> None:
            try:
                model.model_validate(merged)
            except ValidationError as err:
                problems.extend(error_lines(err, source, prefix))

        check(Ranking, deep_merge(raw["ranking"], raw["evaluate"]["ranking"]), ("evaluate", "ranking"))
        for name in OVERRIDABLE:
            for dataset, top in raw[name]["overrides"].items():
                where = (name, "overrides", dataset)
                if dataset not in DATASETS:
                    problems.append(f"{source}: {'.'.join(where)}: unknown data set (one of {DATASETS})")
                if "overrides" in top:
                    problems.append(f"{source}: {'.'.join(where)}.overrides: unknown key")
                    continue
                check(models[name], deep_merge(raw[name], top), where)
                if name == "evaluate" and "ranking" in top:
                    check(Ranking, deep_merge(raw["ranking"], top["ranking"]), (*where, "ranking"))
        return problems

    def for_dataset(self, dataset: str | None = None, *, evaluation: bool = False) -> Params:
        """These params for one data set (default ``data.source``): each section's
        ``overrides.<dataset>`` merged over it; with ``evaluation``, ``evaluate.ranking`` (after
        its own override) laid over ``ranking`` as the evaluation protocol trains it."""
        name = dataset or self.data.source
        raw = self.model_dump(by_alias=True)
        for section in OVERRIDABLE:
            raw[section] = deep_merge(raw[section], raw[section]["overrides"].get(name) or {})
        if evaluation:
            raw["ranking"] = deep_merge(raw["ranking"], raw["evaluate"]["ranking"])
        return Params.of(raw, source=f"params for {name}")


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, nested mappings merged key by key."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _read(path: str | Path | None) -> tuple[dict[str, Any], str]:
    p = Path(path) if path is not None else DEFAULT_PARAMS
    with p.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of sections")
    return raw, str(path) if path is not None else str(p)


def load_config(path: str | Path | None = None) -> Params:
    """The validated params file (default: the project's ``params.yaml``)."""
    raw, source = _read(path)
    return Params.of(raw, source)


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """The params file as a plain mapping, after validating it (see :func:`load_config`)."""
    raw, source = _read(path)
    Params.of(raw, source)
    return raw


# ---------------------------------------------------------------------------------------------
# Stage CLIs


def stage_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every stage CLI shares: ``--params`` and ``--root``."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--root", default=None, help="project root for inputs/outputs (default: this project)")
    return parser


def stage_context(args: argparse.Namespace) -> tuple[dict[str, Any], DataPaths]:
    """Set up logging for a stage CLI, validate its params file (a typo stops the stage with the
    key's path) and return the params and the paths."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = getattr(args, "root", None)
    paths = DataPaths(Path(root)) if root else DataPaths()
    try:
        params = load_params(getattr(args, "params", None))
    except ConfigError as err:
        raise SystemExit(f"invalid params: {err}") from None
    return params, paths
