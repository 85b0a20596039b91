"""The serving graph as a library: candidates → features → ranker → re-ranking → impression log.

:class:`Recommender` is what the HTTP layer calls. Everything heavy is loaded once in
:meth:`Recommender.load`; a request then runs, single-threaded:

1. **Candidates** – the user's row of the exported
   :class:`~components.retrieval.snapshot.CandidateSnapshot` (every source merged in batch, the
   FAISS content index included, at the export's cut; users with declared categories but no
   events have their own rows; any other unknown user gets the cold row of trending, fresh and
   popular contents), plus the FAISS neighbours of
   the user's real-time interest (source ``realtime``), minus the contents seen since load
   (:meth:`Recommender.note_seen`, streamed events; the snapshot already leaves out earlier ones)
   and minus moderated contents (reported by more than ``serving.moderation_report_threshold``
   distinct users, counted over the batch events and the stream, or blocked by an operator).
2. **Features** – the user's features from the Feast online store per request
   (:class:`~components.features.online.ServingFeatureFetcher`, TTLs applied at the request time),
   the items' from the exported rows (:class:`~components.features.item_cache.ItemFeatureCache`,
   memory-mapped), the pair features of these candidates only
   (:meth:`~components.retrieval.pair_features.PairState.features_at` on the exported arrays with
   the snapshot's per-user normalisers: the maths the batch retriever trains on)
   and the context from the request: the same columns
   :func:`components.ranking.stage.pipeline_training_set` trains on. The matrix holds exactly the
   model's ``feature_cols`` (a column no source produces is NaN and is logged once per model
   version).
3. **Scoring** – the production model, or the canary model for users that
   :func:`components.deploy.gates.canary.in_canary` puts in ``promote.canary.share``. A shadow model scores the
   same rows; its scores go to the impression log only. With ``serving.compile_ranker`` the
   LightGBM heads run as native code (:meth:`components.ranking.model.RankerModel.compile`).
4. **Re-ranking** – trend boost ``s + beta * trend * |s|`` (``= s (1 + beta trend)`` for a
   positive score; the absolute value keeps the boost a boost for the ranker's negative,
   standardised scores), with ``trend = g / (1 + g)`` of the trending source's engagement growth
   ``g`` (0 for contents that are not trending). The DPP (:func:`components.retrieval.exploration.dpp_rerank`,
   ``exploration.dpp_theta``) picks the ``k`` contents of the slate from the best
   ``serving.rerank_pool`` boosted candidates; the slate is shown by boosted score, and
   ε-greedy / UCB exploration (:func:`components.retrieval.exploration.explore_slate`) may swap any slot
   for a content below the slate. Every item carries its exploration flag and propensity.
5. **Impression log** – one row per shown item (request, user, content, position, model version,
   arm, propensity, score, shadow version and score, request time, the model's input row) into an
   in-memory buffer written as a Parquet file under ``data/logs/impressions/`` in the background
   every ``serving.log_flush_records`` rows, and on :meth:`Recommender.flush` /
   :meth:`Recommender.close`.

Any exception in a request (store unreachable, no production model, time budget
``serving.budget_ms`` spent before a stage starts, …) returns :meth:`Recommender.fallback`: the
contents most engaged in the last ``candidates.recent.window_hours``, then all-time popular ones,
minus seen and moderated contents, with ``degraded=True`` and the reason. ``recommend`` never raises.

Latency: no stage scores the whole catalogue (~8 ms a request on 1M contents, see
``benchmarks/bench_serving.py``). ``load`` serves a few throw-away requests, limits FAISS to ``serving.faiss_threads`` OpenMP
threads (one query per request gains nothing from more, and spinning threads contend with the
other requests) and, with ``serving.gc_freeze``, calls :func:`gc.freeze` so that Python's full
collections stop walking the long-lived objects built at load (objects frozen there are still
freed by reference counting; only reference cycles among them would stay).

Everything a request reads comes from the serving artefact set
(:mod:`components.serving.artifacts`, written by the ``export`` stage), memory-mapped: N workers
share its pages, start-up fits nothing, and a set that does not match this code or the
production model stops the load with a message that says what to run.

Thread safety: FAISS searches (HNSW changes ``efSearch`` for large ``k``) run under a lock; pair features only read; the seen-set, moderation and the log buffer have their
own locks. Feast's online store client is used
from the calling thread as is.

Written here: the orchestration, the fallback list and the log buffer; retrieval, features,
models, exploration and DPP are the components' own.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from components.core.catalog import DataPaths
from components.core.config import Params
from components.core.io import atomic_write_parquet
from components.core.schema import POSITIVE_TYPES
from components.deploy.gates.canary import in_canary
from components.retrieval.exploration import ExplorationParams, dpp_rerank, explore_slate
from components.retrieval.pair_features import minmax
from components.serving.artifacts import ArtifactSet, artifacts_dir, check_model, open_artifacts

if TYPE_CHECKING:
    from components.deploy.model_cache import ModelCache
    from components.deploy.registry import ModelRegistry
    from components.features.context import RequestContext
    from components.features.online import ServingFeatureFetcher
    from components.ranking.model import RankerModel

log = logging.getLogger(__name__)

PRODUCTION, CANARY, FALLBACK = "production", "canary", "fallback"


# ---------------------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True)
class FeedItem:
    content_id: str
    score: float
    source: str
    exploration: bool
    propensity: float
    position: int


@dataclass(frozen=True)
class Feed:
    request_id: str
    user_id: str
    items: list[FeedItem]
    model_version: str | None
    degraded: bool
    reason: str
    arm: str  # "production" | "canary" | "fallback"
    shadow_version: str | None
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class ServingSettings:
    """What the engine reads from params.yaml: ``serving`` keys, the canary split, the seed."""

    moderation_report_threshold: int  # serving.moderation_report_threshold
    trend_beta: float  # serving.trend_beta
    rerank_pool: int  # serving.rerank_pool: boosted candidates the DPP picks the slate from
    budget_ms: float  # serving.budget_ms: no stage starts after
    log_flush_records: int  # serving.log_flush_records
    faiss_threads: int  # serving.faiss_threads: OpenMP threads of FAISS searches (process-wide)
    gc_freeze: bool  # serving.gc_freeze: move what load built out of the cyclic GC's way
    realtime_weight: float  # serving.realtime_weight: pull of fresh engagements (0 = off)
    realtime_candidates: int  # serving.realtime_candidates: ANN neighbours of the fresh interest
    store_retry_s: float  # serving.store_retry_s: after an online-store failure, fall back this long
    compile_ranker: bool  # serving.compile_ranker: LightGBM heads as native code (lleaves)
    canary_share: float  # promote.canary.share
    canary_salt: str  # promote.canary.salt
    seed: int  # base.seed
    exploration: ExplorationParams

    def __post_init__(self) -> None:
        if self.moderation_report_threshold < 0:
            raise ValueError("serving.moderation_report_threshold must be >= 0")
        if self.trend_beta < 0:
            raise ValueError("serving.trend_beta must be >= 0")
        if self.rerank_pool < 1 or self.log_flush_records < 1:
            raise ValueError("serving.rerank_pool and serving.log_flush_records must be >= 1")
        if self.budget_ms <= 0:
            raise ValueError("serving.budget_ms must be > 0")
        if not 0.0 <= self.canary_share <= 1.0:
            raise ValueError("promote.canary.share must be in [0, 1]")

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> ServingSettings:
        cfg = Params.of(params)
        s = cfg.serving
        return cls(
            moderation_report_threshold=s.moderation_report_threshold,
            trend_beta=s.trend_beta,
            rerank_pool=s.rerank_pool,
            budget_ms=s.budget_ms,
            log_flush_records=s.log_flush_records,
            faiss_threads=s.faiss_threads,
            gc_freeze=s.gc_freeze,
            realtime_weight=s.realtime_weight,
            realtime_candidates=s.realtime_candidates,
            store_retry_s=s.store_retry_s,
            compile_ranker=s.compile_ranker,
            canary_share=cfg.promote.canary.share,
            canary_salt=cfg.promote.canary.salt,
            seed=cfg.base.seed,
            exploration=ExplorationParams.from_params(cfg),
        )


# ---------------------------------------------------------------------------------------------
# Pure helpers


def over_threshold(reporters: Mapping[str, set[str]], threshold: int) -> frozenset[str]:
    """Contents reported by more than ``threshold`` distinct users."""
    return frozenset(c for c, u in reporters.items() if len(u) > threshold)


def reporters_by_content(events: pd.DataFrame) -> dict[str, set[str]]:
    """The distinct users who reported each content."""
    rep = events[(events["event_type"].astype(str) == "report") & events["content_id"].notna()]
    return {
        str(c): set(g.astype(str))
        for c, g in rep.groupby(rep["content_id"].astype(str), sort=False)["user_id"]
    }


def moderated_contents(events: pd.DataFrame, threshold: int) -> frozenset[str]:
    """Contents reported by more than ``threshold`` distinct users in ``events``."""
    return over_threshold(reporters_by_content(events), threshold)


def trend_factors(n_items: int, positions: np.ndarray, growth: np.ndarray) -> np.ndarray:
    """Per catalogue position, ``g / (1 + g)`` of the trending growth (0 when not trending)."""
    out = np.zeros(n_items, dtype=np.float64)
    g = np.clip(np.asarray(growth, dtype=np.float64), 0.0, None)
    out[np.asarray(positions, dtype=np.int64)] = g / (1.0 + g)
    return out


def boost(scores: np.ndarray, trend: np.ndarray, beta: float) -> np.ndarray:
    """``s (1 + beta t)`` for positive scores, ``s + beta t |s|`` in general (a boost never lowers)."""
    s = np.asarray(scores, dtype=np.float64)
    return s + beta * np.asarray(trend, dtype=np.float64) * np.abs(s)


def request_seed(seed: int, request_id: str) -> np.random.Generator:
    """The request's generator: the same request id explores the same way (reproducible logs)."""
    h = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big")
    return np.random.default_rng([seed, h])


def _scalar(v: Any) -> float | None:
    """A user / context value as a float; None for lists, strings and ids (not model inputs)."""
    if v is None:
        return float("nan")
    if isinstance(v, bool | int | float | np.integer | np.floating):
        return float(v)
    return None


def model_matrix(
    model: RankerModel, columns: Mapping[str, Any], n: int
) -> tuple[np.ndarray, list[str]]:
    """``[n, len(model.feature_cols)]`` float32 matrix from per-column arrays or scalars (NaN for
    a column no source produced) and the names of those missing columns."""
    x = np.full((n, len(model.feature_cols)), np.nan, dtype=np.float32)
    missing = []
    for j, name in enumerate(model.feature_cols):
        v = columns.get(name)
        if v is None:
            missing.append(name)
        else:
            x[:, j] = v
    return x, missing


# ---------------------------------------------------------------------------------------------
# Impression log

LOG_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("user_id", pa.string()),
        ("content_id", pa.string()),
        ("position", pa.int32()),
        ("model_version", pa.string()),
        ("arm", pa.string()),
        ("propensity", pa.float64()),
        ("score", pa.float64()),
        ("model_score", pa.float64()),
        ("exploration", pa.bool_()),
        ("source", pa.string()),
        ("shadow_version", pa.string()),
        ("shadow_score", pa.float64()),
        ("degraded", pa.bool_()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        # the served model's input row (its feature_cols order): the log-and-join training data
        ("features", pa.list_(pa.float32())),
    ]
)


class ImpressionLog:
    """In-memory buffer of impression rows written as one Parquet file per flush.

    A full buffer (``flush_every`` rows) is handed to a background writer, so no request waits
    for a Parquet write (~15 ms for 1,000 rows with their feature snapshots); :meth:`flush`
    writes what is buffered and waits for the writer."""

    def __init__(
        self, directory: Path, flush_every: int = 1000, clock: Callable[[], float] = time.time
    ) -> None:
        import concurrent.futures

        self.directory = Path(directory)
        self.flush_every = int(flush_every)
        self._clock = clock
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="impressions")
        self._pending: list[Any] = []
        self.files: list[Path] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(dict(r) for r in rows)
            if len(self._rows) < self.flush_every:
                return
            full, self._rows = self._rows, []
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._writer.submit(self._write, full))

    def flush(self) -> Path | None:
        """Write the buffered rows (atomically: temporary file, then rename) after any background
        write in progress; the file, None when nothing was buffered."""
        with self._lock:
            rows, self._rows = self._rows, []
            pending, self._pending = self._pending, []
        for f in pending:
            f.result()
        return self._write(rows) if rows else None

    @staticmethod
    def _table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
        """Column by column (the feature snapshots as one flat float32 buffer)."""
        columns = []
        for f in LOG_SCHEMA:
            if f.name == "features":
                feats = [r.get("features") for r in rows]
                lengths = np.array([0 if v is None else len(v) for v in feats], dtype=np.int32)
                offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
                present = [np.asarray(v, dtype=np.float32) for v in feats if v is not None]
                values = np.concatenate(present) if present else np.zeros(0, dtype=np.float32)
                columns.append(
                    pa.ListArray.from_arrays(
                        pa.array(offsets), pa.array(values), mask=pa.array([v is None for v in feats])
                    )
                )
            else:
                columns.append(pa.array([r.get(f.name) for r in rows], type=f.type))
        return pa.Table.from_arrays(columns, schema=LOG_SCHEMA)

    def _write(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        table = self._table(rows)
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"impressions-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        atomic_write_parquet(path, table)
        self.files.append(path)
        log.debug("impression log: %d rows -> %s", len(rows), path)
        return path


# ---------------------------------------------------------------------------------------------
# The recommender


class _BudgetSpent(RuntimeError):
    pass


class Recommender:
    """Serving graph over the project's artefacts; build it with :meth:`load`."""

    def __init__(
        self,
        *,
        settings: ServingSettings,
        artifacts: ArtifactSet,
        models: ModelCache,
        fetcher: ServingFeatureFetcher | None,
        moderated: frozenset[str],
        impressions: ImpressionLog,
        reporters: Mapping[str, set[str]] | None = None,
        feature_service: str = "ranker_v2",
        store_factory: Callable[[], ServingFeatureFetcher] | None = None,
        registry: ModelRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.artifacts = artifacts
        self.snapshot = artifacts.snapshot
        self.models = models
        self.fetcher = fetcher
        self.moderated = frozenset(moderated)
        self._reporters = {c: set(u) for c, u in (reporters or {}).items()}
        self.impressions = impressions
        self.feature_service = feature_service
        self._noted: dict[str, set[str]] = {}
        # real-time interest: sum of the unit vectors of contents engaged with since load, count
        self._fresh: dict[str, tuple[np.ndarray, int]] = {}
        self._popular = _fallback_list(artifacts)
        self._store_factory = store_factory
        self._registry = registry
        self._clock = clock
        self.data_now_s = 0  # epoch s just after the newest event the engine was loaded with
        self._store_down_until = 0.0  # monotonic s: the online store failed; retry after this
        self._retr_lock = threading.Lock()
        self._seen_lock = threading.Lock()
        self._warned: set[str] = set()
        self._rows_of: tuple[Any, np.ndarray] | None = None  # (item cache, catalogue -> its rows)
        self.load_seconds: dict[str, float] = {}
        ids = artifacts.content_ids
        self._positions = pd.Index(ids)
        self._ids = np.asarray(ids, dtype=object)
        self._id_rank = np.empty(len(ids), dtype=np.int64)  # rank of each content id in id order
        self._id_rank[np.argsort(self._ids, kind="stable")] = np.arange(len(ids))
        self._source_names = np.asarray(self.snapshot.source_names, dtype=object)
        self._moderated_pos = self._to_positions(moderated)
        t = artifacts.trending
        self._trend = trend_factors(len(ids), t.items, t.scores)

    # ---- construction

    @classmethod
    def load(
        cls,
        params: Mapping[str, Any],
        paths: DataPaths,
        *,
        registry_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        artifacts: Path | None = None,
    ) -> Recommender:
        """Map the serving artefact set under ``artifacts`` (default ``data/serving/artifacts``,
        written by the ``export`` stage), open the feature store with the set's item feature rows
        and load the registry's models. Refuses to start (:class:`~components.serving.artifacts.ArtifactError`,
        saying what to run) when the set is missing or does not match this code or the production
        model; a missing store or model does not stop the load: requests then fall back until
        :meth:`refresh` finds them."""
        from components.deploy.model_cache import ModelCache
        from components.deploy.registry import ModelRegistry
        from components.features.feast_repo import StoreSettings

        t0 = time.perf_counter()
        settings = ServingSettings.from_params(params)
        art = open_artifacts(Path(artifacts) if artifacts is not None else artifacts_dir(paths))
        t_open = time.perf_counter() - t0
        reporters = {c: set(u) for c, u in art.reporters.items()}
        moderated = over_threshold(reporters, settings.moderation_report_threshold)
        store_settings = StoreSettings.from_params(params)

        def make_fetcher() -> ServingFeatureFetcher:
            from components.features.feast_repo import open_store
            from components.features.item_cache import ItemFeatureCache
            from components.features.online import ServingFeatureFetcher

            store = open_store(paths, store_settings)
            items = art.items if art.items is not None else ItemFeatureCache.from_offline(store, store_settings.feature_service)
            fetcher = ServingFeatureFetcher(store, store_settings.feature_service, items)
            fetcher.user_features("__warmup__")  # first online read pays Feast's set-up
            return fetcher

        fetcher: ServingFeatureFetcher | None = None
        try:
            fetcher = make_fetcher()
        except Exception:
            log.exception("feature store unavailable at load: requests fall back until refresh()")
        registry = ModelRegistry(paths, directory=registry_dir, actor="serving")
        compile_dir = paths.of("serving_compiled")

        def prepare(model: RankerModel) -> None:
            if settings.compile_ranker:
                model.compile(compile_dir)

        models = ModelCache(registry, predict_threads=1, prepare=prepare)
        try:
            models.refresh()
        except Exception:
            log.exception("model registry unavailable at load: requests fall back until refresh()")
        try:
            production = models.production()
        except Exception:
            production = None
        if production is not None:
            check_model(art, production.feature_cols, production.version)
        rec = cls(
            settings=settings,
            artifacts=art,
            models=models,
            fetcher=fetcher,
            moderated=moderated,
            reporters=reporters,
            impressions=ImpressionLog(paths.of("impressions"), settings.log_flush_records, clock),
            feature_service=store_settings.feature_service,
            store_factory=make_fetcher,
            registry=registry,
            clock=clock,
        )
        rec.data_now_s = int(art.now.timestamp())
        if settings.faiss_threads > 0:
            import faiss

            faiss.omp_set_num_threads(settings.faiss_threads)
        rec._warm_up()
        if settings.gc_freeze:
            # full collections walking the long-lived objects built above cost ~150 ms
            # every few dozen requests (p99 210 ms -> 70 ms on the default data)
            gc.collect()
            gc.freeze()
        rec.load_seconds = {
            "artifacts": round(t_open, 3),
            "total": round(time.perf_counter() - t0, 3),
        }
        log.info(
            "recommender loaded in %.1f s (artefact set mapped in %.2f s): %d contents, %d users, %d moderated",
            rec.load_seconds["total"],
            t_open,
            len(art.content_ids),
            art.snapshot.n_users,
            len(moderated),
        )
        return rec

    def _warm_up(self, n: int = 3) -> None:
        """Serve a few throw-away requests (known users and an unknown one): the first calls pay
        one-off set-up (FAISS, BLAS, scipy, Feast's first reads) of up to ~0.2 s each, which would
        otherwise push the first real requests past the time budget. Their impressions are dropped."""
        from components.features.context import RequestContext

        ctx = RequestContext(self.data_now_s or int(self._clock()), 0, None, None)
        known = [str(u) for u in self.snapshot.user_ids[:n]]
        for i, user in enumerate([*known, "__warmup__"]):
            for j in range(2):
                self.recommend(user, 10, ctx, request_id=f"warmup-{i}-{j}")
        with self.impressions._lock:
            self.impressions._rows.clear()

    # ---- lifecycle

    def readiness(self) -> dict[str, bool]:
        """Whether a production model is loaded, the index holds contents and the online store
        answers a lookup."""
        out = {"model": False, "index": False, "store": False}
        try:
            out["model"] = self.models.production() is not None
        except Exception:
            out["model"] = False
        out["index"] = self.artifacts.index.ntotal > 0
        if self.fetcher is not None and time.monotonic() >= self._store_down_until:
            try:
                self.fetcher.user_features("__readiness__")
                out["store"] = True
            except Exception:
                self._store_down_until = time.monotonic() + self.settings.store_retry_s
                out["store"] = False
        return out

    def refresh(self) -> bool:
        """Follow registry promotions / rollbacks and reload the item features after a
        materialisation (or open the store if it was unavailable). True when anything changed;
        failures keep what is in service and are logged."""
        changed = False
        try:
            changed |= bool(self.models.refresh())
        except Exception:
            log.exception("model refresh failed: keeping the models in service")
        try:
            if self.fetcher is None and self._store_factory is not None:
                self.fetcher = self._store_factory()
                changed = True
            elif self.fetcher is not None:
                changed |= bool(self.fetcher.refresh_items())
        except Exception:
            log.exception("feature refresh failed: keeping the features in service")
        return changed

    def note_seen(self, user_id: str, content_ids: Iterable[str]) -> None:
        """Contents shown to / watched by the user since load: never recommended again."""
        with self._seen_lock:
            self._noted.setdefault(str(user_id), set()).update(str(c) for c in content_ids)

    def observe(self, events: pd.DataFrame) -> None:
        """Event-sink listener: contents users interacted with since load become seen."""
        if events is None or len(events) == 0 or "content_id" not in events:
            return
        ev = events[events["content_id"].notna()]
        if "event_type" in ev:
            ev = ev[ev["event_type"].astype(str) != "content_upload"]
        for user, group in ev.groupby(ev["user_id"].astype(str), sort=False)["content_id"]:
            self.note_seen(str(user), group.astype(str).tolist())
        if "event_type" in ev:
            kind = ev["event_type"].astype(str)
            self._update_interest(ev[kind.isin(POSITIVE_TYPES)])
            self._count_reports(ev[kind == "report"])

    def _count_reports(self, reports: pd.DataFrame) -> None:
        """Streamed reports: a content reported by more than the threshold's distinct users is
        moderated from the next request on."""
        if reports.empty:
            return
        newly = []
        with self._seen_lock:
            for c, u in zip(reports["content_id"].astype(str), reports["user_id"].astype(str), strict=True):
                who = self._reporters.setdefault(c, set())
                who.add(u)
                if len(who) > self.settings.moderation_report_threshold and c not in self.moderated:
                    newly.append(c)
        if newly:
            self.block(newly, reason="reports")

    def block(self, content_ids: Iterable[str], reason: str = "operator") -> None:
        """Never serve these contents again (moderation: reports over the threshold, or an
        operator's block)."""
        ids = {str(c) for c in content_ids} - self.moderated
        if not ids:
            return
        with self._seen_lock:
            self.moderated = self.moderated | ids
            self._moderated_pos = self._to_positions(self.moderated)
        log.info("moderated %d content(s) (%s): %s", len(ids), reason, sorted(ids)[:10])

    def _update_interest(self, ev: pd.DataFrame) -> None:
        """Fold fresh positive engagements into the user's real-time interest vector (the mean
        direction of the contents engaged with since load), used for retrieval and re-ranking
        until the next batch run folds them into the embeddings."""
        if ev.empty:
            return
        pos = self._positions.get_indexer(pd.Index(ev["content_id"].astype(str)))
        ok = pos >= 0
        if not ok.any():
            return
        with self._retr_lock:
            vecs = np.asarray(self.artifacts.item_vectors[pos[ok]], dtype=np.float64)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
        users = ev["user_id"].astype(str).to_numpy()[ok]
        with self._seen_lock:
            for u in pd.unique(users):
                v = vecs[users == u]
                total, n = self._fresh.get(u, (np.zeros(vecs.shape[1]), 0))
                self._fresh[u] = (total + v.sum(axis=0), n + len(v))

    def interest(self, user_id: str) -> tuple[np.ndarray, float] | None:
        """(unit interest vector, weight n / (n + 2)) of the user's fresh engagements, if any."""
        with self._seen_lock:
            got = self._fresh.get(str(user_id))
        if got is None or got[1] == 0:
            return None
        total, n = got
        norm = float(np.linalg.norm(total))
        if norm == 0:
            return None
        return (total / norm).astype(np.float32), n / (n + 2.0)

    def _interest_candidates(self, vector: np.ndarray) -> np.ndarray:
        """Catalogue positions of the fresh interest's nearest contents in the FAISS index
        (source ``realtime``)."""
        with self._retr_lock:
            _, ids = self.artifacts.index.search(vector.reshape(1, -1), self.settings.realtime_candidates)
        return ids[0][ids[0] >= 0].astype(np.int64)

    def _interest_boost(self, fresh: tuple[np.ndarray, float], pos: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``weight · n/(n+2) · cos(content, interest) · std(scores)``: in the scores' own units,
        so the pull of fresh engagements does not depend on the model's scale."""
        vector, strength = fresh
        vecs = np.asarray(self.artifacts.item_vectors[pos], dtype=np.float64)
        norms = np.linalg.norm(vecs, axis=1)
        cos = np.divide(vecs @ vector.astype(np.float64), norms, out=np.zeros(len(vecs)), where=norms > 0)
        scale = float(np.std(scores)) or 1.0
        return np.asarray(self.settings.realtime_weight * strength * cos * scale)

    def versions(self) -> dict[str, str | None]:
        """The model version in each slot (production / canary / shadow), None when empty."""
        try:
            slots = self.models.deployment.slots()
        except Exception:
            return {"production": None, "canary": None, "shadow": None}
        return {stage: (r.version if r is not None else None) for stage, r in slots.items()}

    def catalogue(self) -> list[str]:
        """The content ids of the exported catalogue (index order)."""
        return list(self.artifacts.content_ids)

    def _noted_of(self, user_id: str) -> list[str]:
        """Contents noted as seen since load (the snapshot already leaves out earlier ones)."""
        with self._seen_lock:
            return list(self._noted.get(user_id, ()))

    def seen(self, user_id: str) -> frozenset[str]:
        with self._seen_lock:
            extra = self._noted.get(user_id)
        base = frozenset(self._ids[self.artifacts.seen.of(user_id)].tolist())
        return base | extra if extra else base

    def flush(self) -> Path | None:
        return self.impressions.flush()

    def close(self) -> None:
        self.flush()
        if self._registry is not None:
            self._registry.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- features (also the parity check's entry point)

    def _to_positions(self, content_ids: Iterable[str]) -> np.ndarray:
        """Catalogue positions of the known contents among ``content_ids`` (sorted)."""
        ids = list(content_ids)
        if not ids:
            return np.zeros(0, dtype=np.int64)
        pos = self._positions.get_indexer(pd.Index(ids))
        return np.unique(pos[pos >= 0]).astype(np.int64)

    def _row(self, user_id: str) -> int:
        """The user's snapshot row; the cold row for a user the export did not know."""
        row = self.snapshot.row(user_id)
        return row if row >= 0 else self.snapshot.cold_row

    def _candidates(self, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """(catalogue positions, source names, pair stats, cold) of the user's candidates: the
        snapshot's row (the batch's users, and users with declared categories but no events,
        both exported), else the cold row; cold: the batch had no events of the user."""
        r = self._row(user_id)
        pos, codes, _ = self.snapshot.candidates(r)
        return pos, self._source_names[codes], np.asarray(self.snapshot.stats[r]), not bool(self.artifacts.known[r])

    def _item_rows(self, fetcher: ServingFeatureFetcher) -> np.ndarray:
        """Catalogue position -> row of the fetcher's item matrix (-1: no features; one extra
        trailing -1 for position -1), recomputed when a refresh swapped the matrix."""
        items = fetcher.items
        cached = self._rows_of
        if cached is None or cached[0] is not items:
            rows = items.positions(self.artifacts.content_ids)
            cached = (items, np.append(rows, -1).astype(np.int64))
            self._rows_of = cached
        return cached[1]

    def _stats(self, user_id: str) -> np.ndarray:
        return np.asarray(self.snapshot.stats[self._row(user_id)])

    def pair_features(self, user_id: str, positions: np.ndarray, stats: np.ndarray) -> dict[str, np.ndarray]:
        """The pair features of the user and the contents at catalogue ``positions`` from the
        exported arrays (:meth:`~components.retrieval.pair_features.PairState.features_at`, the
        maths the batch trains on)."""
        r = self._row(user_id)
        art = self.artifacts
        return art.pair.features_at(int(art.model_rows[r]), art.queries[r], positions, stats)

    def features(
        self, user_id: str, content_ids: Sequence[str], context: RequestContext
    ) -> dict[str, Any]:
        """Every column serving produces for these rows: pair features (arrays), item features
        (arrays), user and context features (scalars)."""
        pos = self._positions.get_indexer(pd.Index([str(c) for c in content_ids])).astype(np.int64)
        return self._features(str(user_id), pos, list(content_ids), context, self._stats(str(user_id)))

    def _features(
        self,
        user_id: str,
        pos: np.ndarray,
        content_ids: Sequence[str],
        context: RequestContext,
        stats: np.ndarray,
    ) -> dict[str, Any]:
        if self.fetcher is None:
            raise ConnectionError("feature store unavailable")
        wait = self._store_down_until - time.monotonic()
        if wait > 0:  # circuit open: do not tie up a thread on a store known to be down
            raise ConnectionError(f"feature store unavailable (next try in {wait:.1f} s)")
        try:
            fetcher = self.fetcher
            rf = fetcher.fetch(user_id, content_ids, context, rows=self._item_rows(fetcher)[pos])
        except Exception:
            self._store_down_until = time.monotonic() + self.settings.store_retry_s
            raise
        cols: dict[str, Any] = {}
        for name, value in rf.user.items():
            v = _scalar(value)
            if v is not None and name != "user_id":
                cols[name] = v
        for j, name in enumerate(rf.item_columns):
            cols[name] = rf.items[:, j]
        for name, value in rf.context.items():
            v = _scalar(value)
            if v is not None:
                cols[name] = v
        cols.update(self.pair_features(user_id, pos, stats))
        return cols

    def _matrix(self, model: RankerModel, cols: Mapping[str, Any], n: int) -> np.ndarray:
        x, missing = model_matrix(model, cols, n)
        if missing and model.version not in self._warned:
            self._warned.add(model.version)
            log.warning(
                "model %s: %d feature columns not served (NaN): %s",
                model.version,
                len(missing),
                missing[:10],
            )
        return x

    # ---- requests

    def recommend(self, user_id: str, k: int, context: RequestContext, *, request_id: str) -> Feed:
        """The user's feed of ``k`` contents; never raises (see the module doc)."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        stage = "start"
        try:
            user_id = str(user_id)
            if int(k) < 1:
                raise ValueError(f"k must be >= 1, got {k}")
            budget = self.settings.budget_ms

            def enter(name: str) -> None:
                nonlocal stage
                spent = (time.perf_counter() - t0) * 1000.0
                if spent > budget:
                    raise _BudgetSpent(
                        f"timeout: {spent:.0f} ms > budget {budget:.0f} ms before {name}"
                    )
                stage = name

            def done(name: str, since: float) -> float:
                now = time.perf_counter()
                timings[name] = round((now - since) * 1000.0, 3)
                return now

            # the models first: without a production model there is nothing to do
            stage = "models"
            production = self.models.production()
            canary = self.models.canary()
            shadow = self.models.shadow()

            # 1. candidates
            enter("candidates")
            t = time.perf_counter()
            pos, sources, stats, cold = self._candidates(user_id)
            noted = self._to_positions(self._noted_of(user_id))
            drop = np.concatenate([noted, self._moderated_pos])
            if len(drop):
                keep = ~np.isin(pos, drop)
                pos, sources = pos[keep], sources[keep]
            fresh = self.interest(user_id) if self.settings.realtime_weight > 0 else None
            if fresh is not None:
                extra = self._interest_candidates(fresh[0])
                extra = extra[~np.isin(extra, pos)]
                excluded = self.seen(user_id) | self.moderated
                extra = np.asarray([p for p in extra if self._ids[p] not in excluded], dtype=np.int64)
                pos = np.concatenate([pos, extra])
                sources = np.concatenate([sources, np.full(len(extra), "realtime", dtype=object)])
            if len(pos) == 0:
                raise LookupError("no candidates left after seen / moderated filters")
            cids = self._ids[pos]
            t = done("candidates", t)

            # 2. features
            enter("features")
            cols = self._features(user_id, pos, cids.tolist(), context, stats)
            t = done("features", t)

            # 3. scoring
            enter("scoring")
            arm = PRODUCTION
            model = production
            if canary is not None and bool(
                in_canary([user_id], self.settings.canary_share, self.settings.canary_salt)[0]
            ):
                arm, model = CANARY, canary
            x = self._matrix(model, cols, len(cids))
            scores = np.asarray(model.predict(x), dtype=np.float64)
            shadow_scores: np.ndarray | None = None
            if shadow is not None:
                try:
                    shadow_scores = np.asarray(
                        shadow.predict(self._matrix(shadow, cols, len(cids))), dtype=np.float64
                    )
                except Exception:  # a broken shadow never affects the feed
                    log.exception("shadow model %s failed", shadow.version)
            if fresh is not None:
                scores = scores + self._interest_boost(fresh, pos, scores)
            t = done("scoring", t)

            # 4. re-ranking
            stage = "rerank"
            items, chosen = self._rerank(pos, cids, sources, scores, int(k), request_id)
            t = done("rerank", t)

            # 5. impression log
            ts = pd.Timestamp(int(context.request_ts_s), unit="s", tz="UTC")
            self.impressions.add(
                {
                    "request_id": request_id,
                    "user_id": user_id,
                    "content_id": it.content_id,
                    "position": it.position,
                    "model_version": model.version,
                    "arm": arm,
                    "propensity": it.propensity,
                    "score": it.score,
                    "model_score": float(scores[i]),
                    "exploration": it.exploration,
                    "source": it.source,
                    "shadow_version": shadow.version if shadow is not None else None,
                    "shadow_score": float(shadow_scores[i]) if shadow_scores is not None else None,
                    "degraded": False,
                    "timestamp": ts,
                    "features": x[i],
                }
                for it, i in zip(items, chosen, strict=True)
            )
            done("log", t)
            timings["total"] = round((time.perf_counter() - t0) * 1000.0, 3)
            return Feed(
                request_id=request_id,
                user_id=user_id,
                items=items,
                model_version=model.version,
                degraded=False,
                reason="cold_start" if cold else "ok",
                arm=arm,
                shadow_version=shadow.version if shadow is not None else None,
                timings_ms=timings,
            )
        except Exception as exc:
            reason = (
                str(exc)
                if isinstance(exc, _BudgetSpent)
                else f"{stage}: {type(exc).__name__}: {exc}"
            )
            log.warning("request %s for %s falls back: %s", request_id, user_id, reason)
            return self.fallback(
                user_id,
                k,
                request_id=request_id,
                reason=reason,
                request_ts_s=getattr(context, "request_ts_s", None),
                started=t0,
            )

    def _rerank(
        self,
        pos: np.ndarray,
        cids: np.ndarray,
        sources: np.ndarray,
        scores: np.ndarray,
        k: int,
        request_id: str,
    ) -> tuple[list[FeedItem], list[int]]:
        """Trend boost, DPP slate, exploration; the feed items and their candidate rows."""
        trend = self._trend[pos]
        boosted = boost(scores, trend, self.settings.trend_beta)
        tie = self._id_rank[pos]  # ties by content id, compared as integers
        order = np.lexsort((tie, -boosted))
        pool = order[: max(self.settings.rerank_pool, k)]
        vectors = np.asarray(self.artifacts.item_vectors[pos[pool]], dtype=np.float64)
        picked = pool[dpp_rerank(boosted[pool], vectors, k, self.settings.exploration.dpp_theta)]
        slate = picked[np.lexsort((tie[picked], -boosted[picked]))]
        rest = order[~np.isin(order, slate)]
        ranked = np.concatenate([slate, rest])
        ranked_ids = cids[ranked].tolist()
        shown = explore_slate(
            ranked_ids,
            k,
            self.settings.exploration,
            request_seed(self.settings.seed, request_id),
            scores=boosted[ranked].tolist(),
        )
        where = {c: j for j, c in enumerate(ranked_ids[: k + 1])}
        row_of = {
            imp.content_id: int(ranked[where[imp.content_id]])
            if imp.content_id in where
            else int(ranked[ranked_ids.index(imp.content_id)])
            for imp in shown
        }
        items, rows = [], []
        for imp in shown:
            i = row_of[imp.content_id]
            rows.append(i)
            items.append(
                FeedItem(
                    content_id=imp.content_id,
                    score=float(boosted[i]),
                    source=str(sources[i]),
                    exploration=imp.slot == "explore",
                    propensity=float(imp.propensity),
                    position=int(imp.position),
                )
            )
        return items, rows

    def fallback(
        self,
        user_id: str,
        k: int,
        *,
        request_id: str,
        reason: str,
        request_ts_s: int | None = None,
        started: float | None = None,
    ) -> Feed:
        """Recently most engaged, then popular contents the user has not seen (degraded=True)."""
        t0 = started if started is not None else time.perf_counter()
        items: list[FeedItem] = []
        try:
            excluded = self.seen(str(user_id)) | self.moderated
            for cid, score, source in self._popular:
                if len(items) >= max(int(k), 0):
                    break
                if cid not in excluded:
                    items.append(FeedItem(cid, score, source, False, 1.0, len(items)))
            ts = pd.Timestamp(
                int(request_ts_s) if request_ts_s is not None else int(self._clock()),
                unit="s",
                tz="UTC",
            )
            self.impressions.add(
                {
                    "request_id": request_id,
                    "user_id": str(user_id),
                    "content_id": it.content_id,
                    "position": it.position,
                    "model_version": None,
                    "arm": FALLBACK,
                    "propensity": 1.0,
                    "score": it.score,
                    "model_score": None,
                    "exploration": False,
                    "source": it.source,
                    "shadow_version": None,
                    "shadow_score": None,
                    "degraded": True,
                    "timestamp": ts,
                    "features": None,
                }
                for it in items
            )
        except Exception:  # the last resort must not raise either
            log.exception("fallback for request %s failed", request_id)
        return Feed(
            request_id=request_id,
            user_id=str(user_id),
            items=items,
            model_version=None,
            degraded=True,
            reason=reason,
            arm=FALLBACK,
            shadow_version=None,
            timings_ms={"total": round((time.perf_counter() - t0) * 1000.0, 3)},
        )


def _fallback_list(art: ArtifactSet) -> list[tuple[str, float, str]]:
    """Recent (most engaged in the recent window), then all-time popular contents, deduplicated,
    each list's scores min-max normalised."""
    ids = art.content_ids
    out: list[tuple[str, float, str]] = []
    taken: set[str] = set()
    for name, c in (("recent", art.recent), ("popular", art.popular)):
        if c is None:
            continue
        for p, s in zip(np.asarray(c.items).tolist(), minmax(np.asarray(c.scores)).tolist(), strict=True):
            cid = ids[int(p)]
            if cid not in taken:
                taken.add(cid)
                out.append((cid, float(s), name))
    return out


__all__ = [
    "Feed",
    "FeedItem",
    "ImpressionLog",
    "Recommender",
    "ServingSettings",
    "boost",
    "model_matrix",
    "moderated_contents",
    "reporters_by_content",
    "trend_factors",
]
