"""The ``params.yaml`` sections of the live system (promotion gates, serving, online update,
experiments, the simulator): one Pydantic model per section, as in
:mod:`components.core.sections_batch`."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from components.core.section import Section


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
    #: hours a committed event id stays in the commit log (refused again as a duplicate by the
    #: API); older ids are pruned so the log stops growing; ``ingest`` dedupes by id for good
    dedupe_retention_h: float = Field(gt=0)
    #: uploads since the artefact set's export scored for every request (source ``fresh``): this many join the candidates
    fresh_candidates: int = Field(ge=0)
    #: the most recent uploads since the export kept as ``fresh`` candidates (all stay in the index)
    fresh_uploads_kept: int = Field(gt=0)
    #: the share of exploration slots that go to the candidates uploaded since the export (when there are any)
    explore_uploads: float = Field(ge=0, le=1)


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
