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
    (:func:`components.ranking.labels.join_outcomes`: the user's events on the content within
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
    :mod:`components.online_update.boosting` (the parent's heads get more trees; scores stay on
    the parent's scale). Training rows are :mod:`components.online_update.rows`'.

Result
    A new :class:`~components.ranking.model.RankerModel` (same backend, objective, heads, feature_cols
    and params; new content-hash version) saved to ``data/models/online/<version>``, its
    ``training_metrics.online_update`` recording the parent version, rows, rounds added per head
    and the impression / event time windows, then registered as a candidate. Optionally the
    offline gate runs on it (pass → shadow, fail → archived); production is only ever reached
    through the gates. Every attempt's :class:`UpdateResult` is logged and kept for
    :meth:`~OnlineUpdater.status`; an exception in an update is caught, logged and reported,
    never raised into event ingestion.

Written here: the buffer, the trigger, the windowing and the orchestration; the join is
:mod:`components.ranking.labels`', the boosting LightGBM's / XGBoost's, the artefact and the registry
:mod:`components.ranking.artefact`'s and :mod:`components.deploy.registry`'s.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from components.core.catalog import DataPaths
from components.deploy.promote import run_gate
from components.deploy.records import ModelRecord
from components.deploy.registry import ModelRegistry
from components.deploy.transitions import CANDIDATE
from components.online_update.boosting import continue_training
from components.online_update.rows import (
    EVENT_COLUMNS,
    iso,
    read_impressions,
    training_rows,
    utc,
)
from components.online_update.settings import OnlineUpdateSettings, UpdateResult
from components.ranking.artefact import save
from components.ranking.model import RankerModel

log = logging.getLogger(__name__)

ACTOR = "online-update"


class _Skip(Exception):
    """An update that cannot run now, for a reason that is no error."""


def _lineage(
    trigger: str,
    window: tuple[str | None, str | None],
    events: pd.DataFrame,
    dropped: Mapping[str, int],
    rows: pd.DataFrame,
    label_window_s: float,
) -> dict[str, Any]:
    """Where an update's rows came from (recorded in the new model's training metrics)."""
    ev_ts = events["timestamp"] if len(events) else pd.Series(dtype="datetime64[ns, UTC]")
    return {
        "trigger": trigger,
        "impressions_window": {"after": window[0], "until": window[1]},
        "events_window": {
            "from": iso(ev_ts.min()) if len(ev_ts) else None,
            "to": iso(ev_ts.max()) if len(ev_ts) else None,
        },
        "events": len(events),
        "label_window_s": label_window_s,
        "dropped_rows": dropped,
        "label_rates": {
            c: round(float(rows[c].mean()), 6)
            for c in ("label_engaged", "label_negative")
            if c in rows
        },
    }


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
            frame["timestamp"] = utc(frame["timestamp"])
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

    def _window(
        self,
        watermark: pd.Timestamp | None,
        since: pd.Timestamp | None,
        hwm: pd.Timestamp | None,
    ) -> tuple[pd.Timestamp, bool, pd.Timestamp]:
        """The impressions this update may use: after ``lo`` (from it with the flag) up to ``hi``,
        the newest event time less the label window."""
        s = self.settings
        if watermark is None or since is None:
            raise _Skip("no events observed yet")
        hi = watermark - s.label_window
        lo, inclusive = (since, True) if hwm is None or since > hwm else (hwm, False)
        if hi <= lo:
            raise _Skip(
                f"no impression has a closed outcome window yet (newest event {iso(watermark)}, "
                f"label window {s.label_window_s:g} s, impressions used up to {iso(lo)})"
            )
        return lo, inclusive, hi

    def _archive_previous(self, reg: ModelRegistry, version: str, at: datetime) -> str | None:
        """Archive this updater's previous candidate, superseded by ``version`` (when set to)."""
        previous = self._own_versions[-1] if self._own_versions else None
        archived = None
        if self.settings.archive_superseded and previous and previous != version:
            prev = reg.find(previous)
            if prev is not None and prev.stage == CANDIDATE:
                reg.archive(
                    previous,
                    reason=f"superseded by online update {version}",
                    now=at,
                    actor=ACTOR,
                )
                archived = previous
        self._own_versions.append(version)
        return archived

    def _register(
        self,
        reg: ModelRegistry,
        model: RankerModel,
        production: ModelRecord,
        window: tuple[str | None, str | None],
        n_rows: int,
        at: datetime,
    ) -> ModelRecord:
        """Save the continued model and register it as a candidate."""
        folder = save(model, self.paths.of("online_models"))
        online = model.training_metrics["online_update"]
        return reg.register(
            folder,
            metrics={"trained_until": window[1], "online_update": online},
            data_version=f"{production.data_version}+stream:{window[0]}..{window[1]}",
            now=at,
            reason=f"online update of {online['parent_version']}: {n_rows} impressions, +{online['rounds_added']} trees",
            actor=ACTOR,
        )

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
        s = self.settings
        reg = self._reg()
        production = reg.deployment().production
        if production is None:
            raise _Skip("no model in production to continue from")
        lo, inclusive, hi = self._window(watermark, since, hwm)
        parent, parent_files = self._parent(reg, production.version)
        impressions = read_impressions(
            self.paths.of("impressions"), self._done_files, self._file_max, lo, inclusive, hi
        )
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
        window = (iso(lo), iso(hi))
        if len(rows) < s.min_labelled_rows:
            raise _Skip(
                f"only {len(rows)} labelled impressions with usable feature snapshots in "
                f"{window[0]} .. {window[1]} (< min_labelled_rows {s.min_labelled_rows}; "
                f"{len(impressions)} logged, dropped {dropped or 'none'}): kept for the next update"
            )
        try:
            model = continue_training(
                parent,
                parent_files,
                rows,
                X,
                rounds=s.rounds,
                learning_rate=s.learning_rate,
                n_threads=s.n_threads,
                lineage=_lineage(trigger, window, events, dropped, rows, s.label_window_s),
            )
        except ValueError as exc:
            if "no head could be continued" in str(exc):
                raise _Skip(f"{exc}: kept for the next update") from exc
            raise
        record = self._register(reg, model, production, window, len(rows), at)
        archived = self._archive_previous(reg, record.version, at)
        gate = self._offline_gate(reg, record.version, at) if s.run_offline_gate else None
        stage = reg.get(record.version).stage
        # files whose every row is at or before the new high-water mark are not read again
        self._done_files.update(f for f, t in self._file_max.items() if t <= hi)
        online = model.training_metrics["online_update"]
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
                "settings": self.settings.model_dump(),
                "events_received": self._received,
                "pending_events": self._pending,
                "events_in_memory": int(sum(len(f) for f in self._events)),
                "watermark": iso(self._watermark),
                "high_water_mark": iso(self._hwm),
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
                "last_result": last.to_dict() if last else None,            }
