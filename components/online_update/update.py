"""Real-time incremental model update: continued boosting of the production ranker on fresh
logged impressions, registered as a *candidate* (never straight to production).

Trigger
    Accepted events reach :meth:`OnlineUpdater.observe` (an :class:`~components.serving.events.
    EventSink` listener, like the engine's ``Recommender.observe``). An update is due when
    ``online_update.buffer_size`` events have accumulated since the last attempt, or when
    ``update_interval_s`` has passed since it and at least one event has arrived. ``observe``
    only buffers and signals: the update runs on the updater's own daemon thread
    (:meth:`~OnlineUpdater.start`) or wherever :meth:`~OnlineUpdater.maybe_update` is called,
    never inside a request. An attempt (updated, skipped or failed) resets the count and the
    interval, so a failing update is retried once per interval, not in a loop.

Training rows (log and join)
    The impression log (``data/logs/impressions``, written by the engine) holds, per shown item,
    the serving model's version and its feature vector (``features``, in that model's
    ``feature_cols`` order). The events seen since start are kept in memory and used as outcomes
    (:func:`components.ranking.stage.join_outcomes`: the user's events on the content within
    ``label_window_s`` of the impression). Event time drives the join: the *watermark* is the
    newest event timestamp seen, and only impressions whose outcome window has closed
    (``timestamp <= watermark - label_window_s``) and which are newer than the last update's
    high-water mark are used; later ones wait for the next update. Impressions older than the
    first event seen (or than ``max_impression_age_s`` behind the watermark) are not used: their
    outcomes are not (or no longer) in memory. Rows without a feature snapshot (degraded /
    fallback feeds, logs written before snapshots existed), from a model version the registry
    does not know, or whose model lacks one of production's features are dropped and counted;
    a snapshot of another model is re-ordered to production's ``feature_cols`` by name.

Skips keep the data
    Fewer than ``min_labelled_rows`` usable rows, no label variation, or no production model:
    the update is skipped with its reason and the high-water mark stays, so the same impressions
    (and their events, still in memory) count towards the next attempt. The count of buffered
    events is reset; the events themselves are durable in the stream store anyway
    (``data/stream/events``).

Continued boosting
    Each head of the production model gets ``rounds`` more trees fitted on the new rows, starting
    from the production model's margin of that head (its trees plus the base margin of
    ``ranking.base_feature``), with the booster parameters the artefact's manifest records
    (:class:`~components.ranking.ranker.RankerParams`) and the learning rate the schedule would have
    reached (or ``online_update.learning_rate``). A head whose label has no variation in the new
    rows keeps its trees unchanged. The standardisation statistics stay the parent's, so scores
    stay on the parent's scale and a change of score is a change of the trees. LightGBM: the
    training booster starts from a Dataset whose ``init_score`` is that margin and merges the
    parent's trees in front (the C API call ``LGBM_BoosterMerge`` that ``lgb.train(init_model=)``
    makes itself; ``lgb.train`` cannot be used because it replaces ``init_score`` by the init
    model's raw prediction, dropping the base margin). XGBoost: ``xgb.train(xgb_model=parent)``
    with the base margin as the DMatrix's ``base_margin``.

Result
    A new :class:`~components.ranking.ranker.RankerModel` (same backend, objective, heads, feature_cols
    and params; new content-hash version) saved to ``data/models/online/<version>``, its
    ``training_metrics.online_update`` recording the parent version, rows, rounds added per head
    and the impression / event time windows, then registered as a candidate. Optionally the
    offline gate runs on it (pass → shadow, fail → archived); production is only ever reached
    through the gates. Every attempt's :class:`UpdateResult` is logged and kept for
    :meth:`~OnlineUpdater.status`; an exception in an update is caught, logged and reported,
    never raised into event ingestion.

Written here: the buffer, the trigger, the windowing and the orchestration; the join is
:mod:`components.ranking.stage`'s, the boosting LightGBM's / XGBoost's, the artefact and the registry
:mod:`components.ranking.ranker`'s and :mod:`components.deploy.registry`'s.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import Params

if TYPE_CHECKING:
    from components.deploy.registry import ModelRegistry
    from components.ranking.model import RankerModel

log = logging.getLogger(__name__)

#: event columns the outcome join reads (``watch_ratio`` only when the events carry it)
EVENT_COLUMNS: tuple[str, ...] = ("user_id", "content_id", "event_type", "timestamp", "watch_ratio")
#: impression log columns the update reads
IMPRESSION_COLUMNS: tuple[str, ...] = (
    "request_id",
    "user_id",
    "content_id",
    "position",
    "model_version",
    "degraded",
    "timestamp",
    "features",
)
ACTOR = "online-update"


# --------------------------------------------------------------------------------------- params


@dataclass(frozen=True)
class OnlineUpdateSettings:
    """The ``online_update`` section of ``params.yaml``."""

    buffer_size: int
    update_interval_s: float
    rounds: int
    learning_rate: float | None  # None: continue the parent's learning-rate schedule
    label_window_s: float
    min_labelled_rows: int
    max_impression_age_s: float
    n_threads: int
    archive_superseded: bool
    run_offline_gate: bool

    def __post_init__(self) -> None:
        for ok, message in (
            (self.buffer_size >= 1, "buffer_size must be >= 1"),
            (self.update_interval_s > 0, "update_interval_s must be > 0"),
            (self.rounds >= 1, "rounds must be >= 1"),
            (
                self.learning_rate is None or self.learning_rate > 0,
                "learning_rate must be > 0 (or null)",
            ),
            (self.label_window_s > 0, "label_window_s must be > 0"),
            (self.min_labelled_rows >= 1, "min_labelled_rows must be >= 1"),
            (
                self.max_impression_age_s > self.label_window_s,
                "max_impression_age_s must be > label_window_s",
            ),
            (self.n_threads >= 1, "n_threads must be >= 1"),
        ):
            if not ok:
                raise ValueError(f"online_update.{message}")

    @property
    def label_window(self) -> pd.Timedelta:
        return pd.Timedelta(seconds=self.label_window_s)

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> OnlineUpdateSettings:
        """``online_update`` (``enabled`` is the serving process's choice, not the updater's)."""
        return cls(**Params.of(params).online_update.model_dump(exclude={"enabled"}))


# --------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class UpdateResult:
    """What one update attempt did: ``updated`` (a candidate registered), ``skipped`` (with the
    reason; nothing registered) or ``failed`` (the error; nothing registered)."""

    status: str
    reason: str
    trigger: str
    at: str  # ISO time of the attempt
    events: int = 0  # events buffered since the previous attempt
    version: str | None = None
    parent_version: str | None = None
    stage: str | None = None  # the new version's registry stage after the attempt
    rows: int = 0  # labelled impressions trained on
    groups: int = 0
    positives: int = 0  # rows with label_engaged = 1
    dropped: dict[str, int] = field(default_factory=dict)
    rounds_added: dict[str, int] = field(default_factory=dict)
    impressions_window: tuple[str | None, str | None] = (None, None)
    gate: str | None = None  # the offline gate's decision and reason, when it ran
    archived: str | None = None  # this updater's previous candidate, superseded
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Skip(Exception):
    """An update that cannot run now, for a reason that is no error."""


# --------------------------------------------------------------------------------------- core


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else pd.Timestamp(ts).isoformat()


def snapshot_matrix(
    impressions: pd.DataFrame,
    feature_cols: Sequence[str],
    cols_by_version: Mapping[str, Sequence[str] | None],
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The feature matrix (float32, ``feature_cols`` order) of the impressions whose logged
    snapshot can be read as that model's features, the mask of those rows, and the number of
    dropped rows per reason. ``cols_by_version`` maps each logged model version to its
    ``feature_cols`` (None when the version is unknown)."""
    n = len(impressions)
    X = np.full((n, len(feature_cols)), np.nan, dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    dropped: dict[str, int] = {}

    def drop(reason: str, count: int) -> None:
        if count:
            dropped[reason] = dropped.get(reason, 0) + int(count)

    if n == 0:
        return X, ok, dropped
    if "features" not in impressions:
        drop("no_features", n)
        return X, ok, dropped
    feats = impressions["features"].to_numpy(dtype=object)
    has = np.array([f is not None and not (isinstance(f, float) and np.isnan(f)) for f in feats])
    drop("no_features", int((~has).sum()))
    if "degraded" in impressions:
        degraded = impressions["degraded"].fillna(False).to_numpy(dtype=bool)
        drop("degraded", int((degraded & has).sum()))
        has &= ~degraded
    versions = (
        impressions["model_version"].astype(object).where(impressions["model_version"].notna(), "")
    )
    for version, idx in pd.Series(np.arange(n)).groupby(versions.to_numpy(), sort=True):
        rows = idx.to_numpy()[has[idx.to_numpy()]]
        if len(rows) == 0:
            continue
        cols = cols_by_version.get(str(version)) if version else None
        if cols is None:
            drop("unknown_model_version", len(rows))
            continue
        cols = list(cols)
        if not set(feature_cols) <= set(cols):
            drop("model_lacks_features", len(rows))
            continue
        take = np.array([cols.index(c) for c in feature_cols], dtype=np.int64)
        lengths = np.array([len(feats[i]) for i in rows])
        good = rows[lengths == len(cols)]
        drop("snapshot_length", int((lengths != len(cols)).sum()))
        if len(good):
            M = np.stack([np.asarray(feats[i], dtype=np.float32) for i in good])
            X[good] = M[:, take]
            ok[good] = True
    return X, ok, dropped


def training_rows(
    impressions: pd.DataFrame,
    events: pd.DataFrame,
    feature_cols: Sequence[str],
    cols_by_version: Mapping[str, Sequence[str] | None],
    window: pd.Timedelta,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """The labelled training rows of these impressions (sorted by request, then position), their
    feature matrix in ``feature_cols`` order, and the dropped rows per reason. Labels are
    :func:`components.ranking.stage.join_outcomes`' (the user's events on the content within ``window``
    of the impression)."""
    from components.ranking.stage import join_outcomes

    X, ok, dropped = snapshot_matrix(impressions, feature_cols, cols_by_version)
    keep = impressions[ok].reset_index(drop=True)
    X = X[ok]
    position = pd.to_numeric(keep["position"], errors="coerce") if "position" in keep else 0
    keep = keep.assign(
        request_id=keep["request_id"].astype(str),
        timestamp=_utc(keep["timestamp"]),
        _pos=position,
        _row=np.arange(len(keep)),
    )
    keep = keep.sort_values(["request_id", "_pos", "_row"], kind="mergesort")
    X = X[keep["_row"].to_numpy()]
    keep = keep.drop(columns=["_pos", "_row"]).reset_index(drop=True)
    if len(keep) == 0:
        return keep, X, dropped
    ev = (
        events
        if len(events)
        else pd.DataFrame(columns=["user_id", "content_id", "event_type", "timestamp"])
    )
    rows = join_outcomes(keep.drop(columns=["features"], errors="ignore"), ev, window)
    return rows, X, dropped


def _learning_rates(
    parent_rounds: int, rounds: int, params: Any, fixed: float | None
) -> list[float]:
    if fixed is not None:
        return [float(fixed)] * rounds
    return [params.learning_rate_at(parent_rounds + j) for j in range(rounds)]


def _continue_lightgbm(
    booster: Any,
    X: np.ndarray,
    y: np.ndarray,
    group_sizes: np.ndarray | None,
    init: np.ndarray,
    bp: Mapping[str, Any],
    rates: Sequence[float],
    feature_cols: Sequence[str],
) -> tuple[dict[str, bytes], int]:
    import lightgbm as lgb
    from lightgbm.basic import _LIB, _safe_call

    dtrain = lgb.Dataset(
        X,
        label=y,
        group=group_sizes,
        init_score=init,
        feature_name=list(feature_cols),
        params=dict(bp),
    )
    new = lgb.Booster(params=dict(bp), train_set=dtrain)
    # the parent's trees first, as lgb.train(init_model=...) does; scores start from ``init``
    _safe_call(_LIB.LGBM_BoosterMerge(new._handle, booster._handle))
    for lr in rates:
        new.reset_parameter({"learning_rate": lr})
        if new.update():  # no split left that meets the constraints: the round added no tree
            break
    text = new.model_to_string(num_iteration=-1)
    return {"text": text.encode("utf-8")}, int(new.current_iteration())


def _continue_xgboost(
    booster: Any,
    X: np.ndarray,
    y: np.ndarray,
    qid: np.ndarray | None,
    base: np.ndarray | None,
    bp: Mapping[str, Any],
    rates: Sequence[float],
    feature_cols: Sequence[str],
) -> tuple[dict[str, bytes], int]:
    import xgboost as xgb

    dtrain = xgb.DMatrix(
        X,
        label=y,
        qid=qid,
        base_margin=base,
        feature_names=list(feature_cols),
        nthread=int(bp["nthread"]),
    )
    new = xgb.train(
        dict(bp),
        dtrain,
        num_boost_round=len(rates),
        xgb_model=booster,
        callbacks=[xgb.callback.LearningRateScheduler(lambda i: float(rates[i]))],
        verbose_eval=False,
    )
    return {"ubj": bytes(new.save_raw("ubj")), "config": new.save_config().encode()}, int(
        new.num_boosted_rounds()
    )


def continue_training(
    parent: RankerModel,
    parent_files: Mapping[str, bytes],
    rows: pd.DataFrame,
    X: np.ndarray,
    *,
    rounds: int,
    learning_rate: float | None = None,
    n_threads: int = 1,
    lineage: Mapping[str, Any] | None = None,
) -> RankerModel:
    """``parent`` with ``rounds`` more trees per head fitted on ``rows`` (labels of
    :data:`components.ranking.stage.LABEL_COLUMNS`, one group per ``request_id``, contiguous) and ``X``
    (``parent.feature_cols`` order). ``parent_files`` are the parent artefact's files (heads that
    are not continued keep theirs). Raises :class:`ValueError` when no head can learn anything.
    """
    from components.ranking.boosting import trainer
    from components.ranking.model import HeadSpec, RankerModel
    from components.ranking.params import label_column

    if len(rows) != len(X) or X.shape[1] != len(parent.feature_cols):
        raise ValueError(f"rows ({len(rows)}) and X {X.shape} do not match the parent's features")
    impl = trainer(parent.backend)
    p = replace(parent.params, n_threads=int(n_threads))
    margins = parent.predict_heads(X, output="margin")  # trees + base margin, per head
    codes = pd.factorize(rows["request_id"].astype(str), sort=False)[0]
    if len(codes) and np.any(np.diff(codes) < 0):
        raise ValueError("rows must be sorted by request_id (contiguous groups)")
    files = {name: parent_files[name] for s in parent.heads.values() for name in s.files}
    heads: dict[str, HeadSpec] = {}
    added: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for name, spec in parent.heads.items():
        heads[name] = spec
        col = label_column(name, parent.objective)
        y = (
            rows[col].to_numpy(dtype="float64", na_value=np.nan)
            if col in rows
            else np.full(len(rows), np.nan)
        )
        known = ~np.isnan(y)
        reason = ""
        if len(np.unique(y[known])) < 2:
            reason = f"label {col} has no variation in the new rows"
        elif spec.kind == "lambdarank" and not known.all():
            reason = f"{col} has missing values"
        elif spec.kind != "lambdarank" and int(known.sum()) < 2 * p.min_child_samples:
            reason = f"only {int(known.sum())} labelled rows (< 2 x min_child_samples)"
        if reason:
            skipped[name] = reason
            log.info("online update: head %s keeps its trees: %s", name, reason)
            continue
        rates = _learning_rates(spec.best_iteration, rounds, p, learning_rate)
        bp = impl.booster_params(spec.kind, p)
        Xh, yh = X[known], y[known]
        if parent.backend == "lightgbm":
            sizes = np.bincount(codes[known]) if spec.kind == "lambdarank" else None
            sizes = sizes[sizes > 0] if sizes is not None else None
            out, total = _continue_lightgbm(
                parent.boosters[name],
                Xh,
                yh,
                sizes,
                margins[name][known],
                bp,
                rates,
                parent.feature_cols,
            )
            new_files = {f"{name}.txt": out["text"]}
        else:
            qid = codes[known] if spec.kind == "lambdarank" else None
            base = spec.offset(Xh, parent.feature_cols)
            out, total = _continue_xgboost(
                parent.boosters[name], Xh, yh, qid, base, bp, rates, parent.feature_cols
            )
            new_files = {f"{name}.ubj": out["ubj"], f"{name}.config.json": out["config"]}
        if total <= spec.best_iteration:
            skipped[name] = "boosting found no split that meets the constraints"
            continue
        files.update(new_files)
        heads[name] = replace(spec, best_iteration=total)
        added[name] = total - spec.best_iteration
    if not added:
        raise ValueError(f"no head could be continued: {skipped}")
    metrics = {
        "online_update": {
            **dict(lineage or {}),
            "parent_version": parent.version,
            "rows": len(rows),
            "groups": int(codes.max() + 1) if len(codes) else 0,
            "rounds_added": added,
            "skipped_heads": skipped,
            "learning_rate": learning_rate if learning_rate is not None else "parent schedule",
        }
    }
    return RankerModel(
        backend=parent.backend,
        objective=parent.objective,
        heads=heads,
        files=files,
        feature_cols=parent.feature_cols,
        feature_service=parent.feature_service,
        created_from=f"online-update:{parent.version}",
        training_metrics=metrics,
        params=parent.params,
        library_version=impl.library_version,
    )


# --------------------------------------------------------------------------------------- updater


class OnlineUpdater:
    """The buffer, trigger and background thread of the real-time update (see the module
    docstring). Attach :meth:`observe` to the event sink; call :meth:`start` once at start-up
    and :meth:`stop` at shutdown."""

    def __init__(
        self,
        params: Mapping[str, Any],
        paths: DataPaths,
        *,
        registry: ModelRegistry | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 1.0,
    ) -> None:
        self.params = params
        self.paths = paths
        self.settings = OnlineUpdateSettings.from_params(params)
        self._clock = clock
        self._poll_s = float(poll_s)
        self._registry = registry
        self._own_registry = registry is None
        self._lock = threading.Lock()  # buffer and status
        self._update_lock = threading.Lock()  # one update at a time
        self._attempted = threading.Condition(self._lock)
        self._events: list[pd.DataFrame] = []  # events kept as outcomes (see _prune)
        self._pending = 0  # events since the last attempt
        self._received = 0
        self._watermark: pd.Timestamp | None = None  # newest event time seen
        self._since: pd.Timestamp | None = None  # events are complete from here on
        self._hwm: pd.Timestamp | None = None  # impressions up to here are used
        self._done_files: set[str] = set()
        self._file_max: dict[str, pd.Timestamp] = {}  # newest impression per log file read
        self._last_attempt = clock()
        self._attempts = 0
        self._updates = 0
        self._last_result: UpdateResult | None = None
        self._last_update: UpdateResult | None = None
        self._last_error: str | None = None
        self._observe_errors = 0
        self._own_versions: list[str] = []
        self._parents: dict[str, tuple[RankerModel, dict[str, bytes]]] = {}
        self._cols: dict[str, list[str] | None] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    # ---- ingestion side (cheap, never raises)

    def observe(self, events: pd.DataFrame) -> None:
        """Event-sink listener: buffer the accepted events and signal the update thread when an
        update is due. Never trains and never raises."""
        try:
            if events is None or len(events) == 0:
                return
            frame = events[[c for c in EVENT_COLUMNS if c in events.columns]].copy()
            frame["timestamp"] = _utc(frame["timestamp"])
            frame = frame[frame["timestamp"].notna()]
            with self._lock:
                self._received += len(events)
                self._pending += len(events)
                if len(frame):
                    self._events.append(frame)
                    lo, hi = frame["timestamp"].min(), frame["timestamp"].max()
                    self._watermark = hi if self._watermark is None else max(self._watermark, hi)
                    if self._since is None:
                        self._since = lo
                due = self._due(self._clock()) is not None
            if due:
                self._wake.set()
        except Exception as exc:
            with self._lock:
                self._observe_errors += 1
                self._last_error = f"observe: {type(exc).__name__}: {exc}"
            log.exception("online update: could not buffer %d events", len(events))

    def _due(self, now: float) -> str | None:
        """The trigger that makes an update due now (call holding ``_lock``)."""
        if self._pending <= 0:
            return None
        if self._pending >= self.settings.buffer_size:
            return "count"
        if now - self._last_attempt >= self.settings.update_interval_s:
            return "interval"
        return None

    # ---- update side

    def maybe_update(self) -> UpdateResult | None:
        """Run one update if one is due (and none is running); None otherwise. Never raises."""
        if not self._update_lock.acquire(blocking=False):
            return None
        try:
            with self._lock:
                trigger = self._due(self._clock())
            return None if trigger is None else self._attempt(trigger)
        finally:
            self._update_lock.release()

    def update_now(self) -> UpdateResult:
        """Run one update now, due or not (waits for a running one). Never raises."""
        with self._update_lock:
            return self._attempt("manual")

    def _attempt(self, trigger: str) -> UpdateResult:
        t0 = time.perf_counter()
        now = self._clock()
        with self._lock:
            pending, self._pending = self._pending, 0
            self._last_attempt = now
            n_frames = len(self._events)
            frames = self._events[:n_frames]
            watermark, since, hwm = self._watermark, self._since, self._hwm
        at = datetime.fromtimestamp(now, UTC)
        try:
            result, new_hwm = self._update(trigger, at, pending, frames, watermark, since, hwm)
        except _Skip as skip:
            result, new_hwm = (
                UpdateResult("skipped", str(skip), trigger, at.isoformat(), pending),
                None,
            )
        except Exception as exc:
            log.exception("online update failed")
            result = UpdateResult(
                "failed", f"{type(exc).__name__}: {exc}", trigger, at.isoformat(), pending
            )
            new_hwm = None
        result = replace(result, duration_s=round(time.perf_counter() - t0, 3))
        log_fn = log.warning if result.status == "failed" else log.info
        log_fn(
            "online update (%s, %d events): %s %s%s",
            trigger,
            pending,
            result.status,
            result.reason,
            f" -> {result.version} ({result.stage})" if result.version else "",
        )
        with self._lock:
            if new_hwm is not None:
                self._hwm = new_hwm
            self._prune(n_frames)
            self._attempts += 1
            self._last_result = result
            if result.status == "updated":
                self._updates += 1
                self._last_update = result
            if result.status == "failed":
                self._last_error = result.reason
            self._attempted.notify_all()
        return result

    def _prune(self, n_frames: int) -> None:
        """Forget the events no future impression needs: older than the high-water mark (every
        impression after it starts later) or than ``max_impression_age_s`` behind the watermark
        (call holding ``_lock``)."""
        if self._watermark is None:
            return
        horizon = self._watermark - pd.Timedelta(seconds=self.settings.max_impression_age_s)
        if self._since is not None and horizon > self._since:
            self._since = horizon
        cut = horizon if self._hwm is None else max(horizon, self._hwm)
        old = [f[f["timestamp"] >= cut] for f in self._events[:n_frames]]
        merged = (
            pd.concat([f for f in old if len(f)], ignore_index=True)
            if any(len(f) for f in old)
            else None
        )
        self._events = ([merged] if merged is not None else []) + self._events[n_frames:]

    def _reg(self) -> ModelRegistry:
        if self._registry is None:
            from components.deploy.registry import ModelRegistry

            self._registry = ModelRegistry(self.paths, actor=ACTOR)
        return self._registry

    def _parent(self, reg: ModelRegistry, version: str) -> tuple[RankerModel, dict[str, bytes]]:
        if version not in self._parents:
            model = reg.load(version)
            folder = reg.artefact_dir(version)
            files = {n: (folder / n).read_bytes() for s in model.heads.values() for n in s.files}
            self._parents = {version: (model, files)}  # only the current production is kept
            self._cols[version] = list(model.feature_cols)
        return self._parents[version]

    def _feature_cols(self, reg: ModelRegistry, version: str) -> list[str] | None:
        if version not in self._cols:
            rec = reg.find(version)
            if rec is None:
                self._cols[version] = None
            else:
                manifest = json.loads(
                    (reg.directory / rec.artefact / "manifest.json").read_text("utf-8")
                )
                self._cols[version] = list(manifest["feature_cols"])
        return self._cols[version]

    def _read_impressions(
        self, lo: pd.Timestamp, lo_inclusive: bool, hi: pd.Timestamp
    ) -> pd.DataFrame:
        """Impression log rows with ``lo < timestamp <= hi`` (``>=`` with ``lo_inclusive``); an
        unreadable file fails the update (training on a silently partial log would bias it)."""
        import pyarrow.parquet as pq


        parts = []
        for path in sorted(self.paths.of("impressions").glob("impressions-*.parquet")):
            if path.name in self._done_files:
                continue
            try:
                table = pq.read_table(path)
            except Exception as exc:
                raise OSError(f"impression log {path.name} is unreadable: {exc}") from exc
            frame = table.select(
                [c for c in IMPRESSION_COLUMNS if c in table.column_names]
            ).to_pandas()
            ts = _utc(frame["timestamp"])
            if len(ts):
                self._file_max[path.name] = ts.max()
            if len(ts) == 0 or ts.max() < lo:
                self._done_files.add(path.name)  # nothing in it can ever be used
                continue
            keep = ((ts >= lo) if lo_inclusive else (ts > lo)) & (ts <= hi)
            if keep.any():
                parts.append(frame[keep.to_numpy()].assign(_file=path.name))
        if not parts:
            return pd.DataFrame(columns=[*IMPRESSION_COLUMNS, "_file"])
        return pd.concat(parts, ignore_index=True)

    def _update(
        self,
        trigger: str,
        at: datetime,
        pending: int,
        frames: list[pd.DataFrame],
        watermark: pd.Timestamp | None,
        since: pd.Timestamp | None,
        hwm: pd.Timestamp | None,
    ) -> tuple[UpdateResult, pd.Timestamp | None]:
        from components.deploy.registry import CANDIDATE
        from components.ranking import ranker

        s = self.settings
        reg = self._reg()
        production = reg.deployment().production
        if production is None:
            raise _Skip("no model in production to continue from")
        if watermark is None or since is None:
            raise _Skip("no events observed yet")
        hi = watermark - s.label_window
        lo, inclusive = (since, True) if hwm is None or since > hwm else (hwm, False)
        if hi <= lo:
            raise _Skip(
                f"no impression has a closed outcome window yet (newest event {_iso(watermark)}, "
                f"label window {s.label_window_s:g} s, impressions used up to {_iso(lo)})"
            )
        parent, parent_files = self._parent(reg, production.version)
        impressions = self._read_impressions(lo, inclusive, hi)
        cols = {
            str(v): self._feature_cols(reg, str(v))
            for v in impressions["model_version"].dropna().unique()
        }
        events = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=list(EVENT_COLUMNS[:4]))
        )
        rows, X, dropped = training_rows(
            impressions, events, parent.feature_cols, cols, s.label_window
        )
        window = (_iso(lo), _iso(hi))
        if len(rows) < s.min_labelled_rows:
            raise _Skip(
                f"only {len(rows)} labelled impressions with usable feature snapshots in "
                f"{window[0]} .. {window[1]} (< min_labelled_rows {s.min_labelled_rows}; "
                f"{len(impressions)} logged, dropped {dropped or 'none'}): kept for the next update"
            )
        ev_ts = events["timestamp"] if len(events) else pd.Series(dtype="datetime64[ns, UTC]")
        lineage = {
            "trigger": trigger,
            "impressions_window": {"after": window[0], "until": window[1]},
            "events_window": {
                "from": _iso(ev_ts.min()) if len(ev_ts) else None,
                "to": _iso(ev_ts.max()) if len(ev_ts) else None,
            },
            "events": len(events),
            "label_window_s": s.label_window_s,
            "dropped_rows": dropped,
            "label_rates": {
                c: round(float(rows[c].mean()), 6)
                for c in ("label_engaged", "label_negative")
                if c in rows
            },
        }
        try:
            model = continue_training(
                parent,
                parent_files,
                rows,
                X,
                rounds=s.rounds,
                learning_rate=s.learning_rate,
                n_threads=s.n_threads,
                lineage=lineage,
            )
        except ValueError as exc:
            if "no head could be continued" in str(exc):
                raise _Skip(f"{exc}: kept for the next update") from exc
            raise
        folder = ranker.save(model, self.paths.of("online_models"))
        online = model.training_metrics["online_update"]
        record = reg.register(
            folder,
            metrics={"trained_until": window[1], "online_update": online},
            data_version=f"{production.data_version}+stream:{window[0]}..{window[1]}",
            now=at,
            reason=f"online update of {parent.version}: {len(rows)} impressions, +{online['rounds_added']} trees",
            actor=ACTOR,
        )
        archived = None
        previous = self._own_versions[-1] if self._own_versions else None
        if s.archive_superseded and previous and previous != record.version:
            prev = reg.find(previous)
            if prev is not None and prev.stage == CANDIDATE:
                reg.archive(
                    previous,
                    reason=f"superseded by online update {record.version}",
                    now=at,
                    actor=ACTOR,
                )
                archived = previous
        self._own_versions.append(record.version)
        gate = None
        if s.run_offline_gate:
            gate = self._offline_gate(reg, record.version, at)
        stage = reg.get(record.version).stage
        # files whose every row is at or before the new high-water mark are not read again
        self._done_files.update(f for f, t in self._file_max.items() if t <= hi)
        result = UpdateResult(
            status="updated",
            reason=f"continued {parent.version} on {len(rows)} impressions",
            trigger=trigger,
            at=at.isoformat(),
            events=pending,
            version=record.version,
            parent_version=parent.version,
            stage=stage,
            rows=len(rows),
            groups=int(online["groups"]),
            positives=int(rows["label_engaged"].sum()),
            dropped=dropped,
            rounds_added=dict(online["rounds_added"]),
            impressions_window=window,
            gate=gate,
            archived=archived,
        )
        return result, hi

    def _offline_gate(self, reg: ModelRegistry, version: str, at: datetime) -> str:
        """The offline gate on the new candidate (pass → shadow, fail → archived); an error in it
        leaves the candidate registered and is reported."""
        from components.deploy.promote import run_gate

        try:
            verdict = run_gate(
                "offline", self.params, self.paths, version=version, now=at, registry=reg
            )
        except Exception as exc:
            log.exception("online update: offline gate for %s failed", version)
            return f"error: {type(exc).__name__}: {exc}"
        return f"{verdict.decision}: {verdict.reason}"

    # ---- thread

    def start(self) -> None:
        """Start the daemon thread that runs due updates (signalled by :meth:`observe`, and
        every ``poll_s`` for the interval trigger)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="online-update", daemon=True)
        self._thread.start()
        log.info("online update thread started: %s", self.settings)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.maybe_update()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop the thread (an update in progress finishes first) and close the registry the
        updater opened itself."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("online update thread still running after %.0f s", timeout_s)
            self._thread = None
        if self._own_registry and self._registry is not None:
            with self._update_lock:
                self._registry.close()
                self._registry = None

    def wait_for_attempts(self, count: int, timeout_s: float) -> bool:
        """Block until ``count`` update attempts have finished in total (False on timeout)."""
        with self._attempted:
            return self._attempted.wait_for(lambda: self._attempts >= count, timeout_s)

    def status(self) -> dict[str, Any]:
        """The updater's state for health endpoints and logs."""
        with self._lock:
            last, last_ok = self._last_result, self._last_update
            return {
                "running": self._thread is not None and self._thread.is_alive(),
                "settings": asdict(self.settings),
                "events_received": self._received,
                "pending_events": self._pending,
                "events_in_memory": int(sum(len(f) for f in self._events)),
                "watermark": _iso(self._watermark),
                "high_water_mark": _iso(self._hwm),
                "attempts": self._attempts,
                "updates": self._updates,
                "observe_errors": self._observe_errors,
                "last_attempt_at": last.at if last else None,
                "last_status": last.status if last else None,
                "last_reason": last.reason if last else None,
                "last_update_at": last_ok.at if last_ok else None,
                "last_version": last_ok.version if last_ok else None,
                "last_rows": last_ok.rows if last_ok else None,
                "last_error": self._last_error,
                "last_result": last.to_dict() if last else None,
            }
