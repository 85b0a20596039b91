"""The serving graph as a library: candidates → features → ranker → re-ranking → impression log.

:class:`Recommender` is what the HTTP layer calls; it composes the serving package's parts.
Everything heavy is loaded once in :meth:`Recommender.load`; a request
(:meth:`Recommender.recommend`) then runs, single-threaded:

1. **Candidates** (:class:`~components.serving.candidates.CandidateAssembler`) – the user's row
   of the exported :class:`~components.retrieval.snapshot.CandidateSnapshot` (every source
   merged in batch, the FAISS content index included, at the export's cut; users with declared
   categories but no events have their own rows; any other unknown user gets the cold row of
   trending, fresh and popular contents), plus the FAISS neighbours of the user's real-time
   interest (source ``realtime``), minus the contents seen since load
   (:meth:`Recommender.note_seen`, streamed events; the snapshot already leaves out earlier ones)
   and minus moderated contents (reported by more than ``serving.moderation_report_threshold``
   distinct users, counted over the batch events and the stream, or blocked by an operator);
   the seen sets, moderation and real-time interest are the
   :class:`~components.serving.stream.StreamState`.
2. **Features** (:class:`~components.serving.features.FeatureAssembler`) – the user's features
   from the Feast online store per request
   (:class:`~components.features.online.ServingFeatureFetcher`, TTLs applied at the request time),
   the items' from the exported rows (:class:`~components.features.item_cache.ItemFeatureCache`,
   memory-mapped), the pair features of these candidates only
   (:meth:`~components.retrieval.pair_features.PairState.features_at` on the exported arrays with
   the snapshot's per-user normalisers: the maths the batch retriever trains on)
   and the context from the request: the same columns
   :func:`components.ranking.stage.pipeline_training_set` trains on. The matrix holds exactly the
   model's ``feature_cols`` (a column no source produces is NaN and is logged once per model
   version).
3. **Scoring** (:mod:`components.serving.scoring`) – the production model, or the canary model
   for users that :func:`components.deploy.gates.canary.in_canary` puts in
   ``promote.canary.share``. A shadow model scores the same rows; its scores go to the
   impression log only. With ``serving.compile_ranker`` the LightGBM heads run as native code
   (:meth:`components.ranking.model.RankerModel.compile`). A user with fresh engagements gets
   the pull of the real-time interest added (``serving.realtime_weight``, in the scores' units).
4. **Re-ranking** (:class:`~components.serving.rerank.Reranker`) – trend boost
   ``s + beta * trend * |s|`` (``= s (1 + beta trend)`` for a
   positive score; the absolute value keeps the boost a boost for the ranker's negative,
   standardised scores), with ``trend = g / (1 + g)`` of the trending source's engagement growth
   ``g`` (0 for contents that are not trending). The DPP (:func:`components.retrieval.exploration.dpp_rerank`,
   ``exploration.dpp_theta``) picks the ``k`` contents of the slate from the best
   ``serving.rerank_pool`` boosted candidates; the slate is shown by boosted score, and
   ε-greedy / UCB exploration (:func:`components.retrieval.exploration.explore_slate`) may swap any slot
   for a content below the slate. Every item carries its exploration flag and propensity
   (:class:`~components.serving.feed.FeedItem` of the :class:`~components.serving.feed.Feed`).
5. **Impression log** (:mod:`components.serving.impressions`) – one row per shown item (request,
   user, content, position, model version, arm, propensity, score, shadow version and score,
   request time, the model's input row) into an in-memory buffer written as a Parquet file under
   ``data/logs/impressions/`` in the background every ``serving.log_flush_records`` rows, and on
   :meth:`Recommender.flush` / :meth:`Recommender.close`.

Any exception in a request (store unreachable, no production model, time budget
``serving.budget_ms`` spent before a stage starts, …) returns :meth:`Recommender.fallback`: the
contents most engaged in the last ``candidates.recent.window_hours``, then all-time popular ones
(:mod:`components.serving.fallback`), minus seen and moderated contents, with ``degraded=True``
and the reason. ``recommend`` never raises.

Latency: no stage scores the whole catalogue (~8 ms a request on 1M contents, see
``benchmarks/bench_serving.py``). ``load`` serves a few throw-away requests, limits FAISS to ``serving.faiss_threads`` OpenMP
threads (one query per request gains nothing from more, and spinning threads contend with the
other requests) and, with ``serving.gc_freeze``, calls :func:`gc.freeze` so that Python's full
collections stop walking the long-lived objects built at load (objects frozen there are still
freed by reference counting; only reference cycles among them would stay).

Everything a request reads comes from the serving artefact set
(:mod:`components.serving.artifacts`, written by the ``export`` stage), memory-mapped: N workers
share its pages, start-up fits nothing, and a set that does not match this code or the
production model stops the load with a message that says what to run. The settings are
:class:`~components.serving.settings.ServingSettings`.

Thread safety: FAISS searches (HNSW changes ``efSearch`` for large ``k``) run under a lock; pair
features only read; the stream state (seen sets, moderation, real-time interest) and the log
buffer have their own locks. Feast's online store client is used from the calling thread as is.

Written in this package: the orchestration (here: loading, the request's stages and budget, the
fallback answer), the stream state, the fallback list and the log buffer; retrieval, features,
models, exploration and DPP are the components' own.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.catalog import DataPaths
from components.deploy.registry import ModelRegistry
from components.features.context import RequestContext
from components.features.feast_repo import StoreSettings
from components.serving.artifacts import ArtifactSet, artifacts_dir, open_artifacts
from components.serving.bandit import ItemStats
from components.serving.candidates import CandidateAssembler, Candidates
from components.serving.catalogue import Catalogue
from components.serving.fallback import degraded_feed, fallback_items, fallback_list
from components.serving.features import FeatureAssembler
from components.serving.feed import FALLBACK, Feed, FeedItem
from components.serving.impressions import ImpressionLog, impression_rows
from components.serving.loading import check_production, fetcher_factory, open_fetcher, open_models
from components.serving.rerank import Reranker
from components.serving.scoring import ModelSlots, Scored, choose_arm, shadow_scores
from components.serving.settings import ServingSettings
from components.serving.stages import BudgetSpent, StageClock
from components.serving.stream import ReportPolicy, StreamState, over_threshold
from components.serving.uploads import Uploads

if TYPE_CHECKING:
    from components.deploy.model_cache import ModelCache
    from components.features.online import ServingFeatureFetcher

log = logging.getLogger(__name__)


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
        self.impressions = impressions
        self.feature_service = feature_service
        self._registry = registry
        self._clock = clock
        self.data_now_s = 0  # epoch s just after the newest event the engine was loaded with
        self.load_seconds: dict[str, float] = {}
        self.contents = Catalogue(artifacts.content_ids)
        retrieval_lock = threading.Lock()  # FAISS searches and item-vector reads
        self.stream = StreamState(
            artifacts,
            self.contents,
            moderated=moderated,
            reporters=reporters or {},
            threshold=settings.moderation_report_threshold,
            vectors_lock=retrieval_lock,
            policy=ReportPolicy(
                settings.moderation_report_threshold,
                settings.moderation_min_user_events,
                settings.moderation_min_user_age_s,
                settings.moderation_track_users,
            ),
            clock=clock,
            max_users=settings.stream_users,
            seen_per_user=settings.stream_seen_per_user,
        )
        self.uploads = Uploads(artifacts, self.contents, retrieval_lock, settings.fresh_uploads_kept)
        self.candidates = CandidateAssembler(
            artifacts,
            self.contents,
            self.stream,
            realtime_candidates=settings.realtime_candidates,
            index_lock=retrieval_lock,
            uploads=self.uploads,
            fresh_candidates=settings.fresh_candidates,
        )
        self.assembler = FeatureAssembler(
            artifacts, fetcher, store_factory=store_factory, store_retry_s=settings.store_retry_s
        )
        # UCB's per-item statistics, fed by observe(); the once-per-user reward rule remembers
        # as many users and contents per user as the seen sets
        self.item_stats = ItemStats(settings.stream_users, settings.stream_seen_per_user)
        self.reranker = Reranker(artifacts, self.contents, settings, self.item_stats)
        self._popular = fallback_list(artifacts)

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
        t0 = time.perf_counter()
        settings = ServingSettings.from_params(params)
        art = open_artifacts(Path(artifacts) if artifacts is not None else artifacts_dir(paths))
        t_open = time.perf_counter() - t0
        reporters = {c: set(u) for c, u in art.reporters.items()}
        store_settings = StoreSettings.from_params(params)
        make_fetcher = fetcher_factory(paths, store_settings, art)
        fetcher = open_fetcher(make_fetcher)
        registry = ModelRegistry(paths, directory=registry_dir, actor="serving")
        models = open_models(registry, settings, paths.of("serving_compiled"))
        check_production(art, models)
        rec = cls(
            settings=settings,
            artifacts=art,
            models=models,
            fetcher=fetcher,
            moderated=over_threshold(reporters, settings.moderation_report_threshold),
            reporters=reporters,
            impressions=ImpressionLog(paths.of("impressions"), settings.log_flush_records, clock, settings.log_buffer_max),
            feature_service=store_settings.feature_service,
            store_factory=make_fetcher,
            registry=registry,
            clock=clock,
        )
        rec.data_now_s = int(art.now.timestamp())
        rec._ready_process()
        rec.load_seconds = {
            "artifacts": round(t_open, 3),
            "total": round(time.perf_counter() - t0, 3),
        }
        rec._log_loaded(t_open)
        return rec

    def _ready_process(self) -> None:
        """FAISS's thread count, the warm-up requests, and (``serving.gc_freeze``) the objects
        built so far moved out of the cyclic GC's way."""
        if self.settings.faiss_threads > 0:
            import faiss

            faiss.omp_set_num_threads(self.settings.faiss_threads)
        self._warm_up()
        if self.settings.gc_freeze:
            # full collections walking the long-lived objects built above cost ~150 ms
            # every few dozen requests (p99 210 ms -> 70 ms on the default data)
            gc.collect()
            gc.freeze()

    def _log_loaded(self, t_open: float) -> None:
        log.info(
            "recommender loaded in %.1f s (artefact set mapped in %.2f s): %d contents, %d users, %d moderated",
            self.load_seconds["total"],
            t_open,
            len(self.artifacts.content_ids),
            self.snapshot.n_users,
            len(self.moderated),
        )

    def _warm_up(self, n: int = 3) -> None:
        """Serve a few throw-away requests (known users and an unknown one): the first calls pay
        one-off set-up (FAISS, BLAS, scipy, Feast's first reads) of up to ~0.2 s each, which would
        otherwise push the first real requests past the time budget. Their impressions are dropped."""
        ctx = RequestContext(self.data_now_s or int(self._clock()), 0, None, None)
        known = [str(u) for u in self.snapshot.user_ids[:n]]
        for i, user in enumerate([*known, "__warmup__"]):
            for j in range(2):
                self.recommend(user, 10, ctx, request_id=f"warmup-{i}-{j}")
        self.impressions.discard()

    # ---- lifecycle

    @property
    def fetcher(self) -> ServingFeatureFetcher | None:
        """The online store's feature fetcher; None while the store is unavailable."""
        return self.assembler.fetcher

    def readiness(self) -> dict[str, bool]:
        """Whether a production model is loaded, the index holds contents and the online store
        answers a lookup."""
        out = {"model": False, "index": False, "store": False}
        try:
            out["model"] = self.models.production() is not None
        except Exception:
            out["model"] = False
        out["index"] = self.artifacts.index.ntotal > 0
        out["store"] = self.assembler.store_ready()
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
            changed |= self.assembler.refresh()
        except Exception:
            log.exception("feature refresh failed: keeping the features in service")
        return changed

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

    # ---- the stream (:class:`~components.serving.stream.StreamState`)

    @property
    def moderated(self) -> frozenset[str]:
        """Contents never served (reports over the threshold, operator blocks)."""
        return self.stream.moderated

    def note_seen(self, user_id: str, content_ids: Iterable[str]) -> None:
        """Contents shown to / watched by the user since load: never recommended again."""
        self.stream.note_seen(user_id, content_ids)

    def observe(self, events: pd.DataFrame) -> None:
        """Event-sink listener: uploads into the index (first: the batch's other events may
        be about them), seen contents, reports, the real-time interest and UCB's per-item
        statistics."""
        self.uploads.observe(events)
        self.stream.observe(events)
        self.item_stats.observe(events)

    def block(self, content_ids: Iterable[str], reason: str = "operator") -> None:
        """Never serve these contents again."""
        self.stream.block(content_ids, reason=reason)

    def interest(self, user_id: str) -> tuple[np.ndarray, float] | None:
        """(unit interest vector, weight n / (n + 2)) of the user's fresh engagements, if any."""
        return self.stream.interest(user_id)

    def seen(self, user_id: str) -> frozenset[str]:
        return self.stream.seen(user_id)

    # ---- features (also the parity check's entry point)

    def pair_features(self, user_id: str, positions: np.ndarray, stats: np.ndarray) -> dict[str, np.ndarray]:
        """The pair features of the user and the contents at catalogue ``positions`` from the
        exported arrays (:meth:`~components.retrieval.pair_features.PairState.features_at`, the
        maths the batch trains on)."""
        return self.assembler.pair_features(self.candidates.row(user_id), positions, stats)

    def features(
        self, user_id: str, content_ids: Sequence[str], context: RequestContext
    ) -> dict[str, Any]:
        """Every column serving produces for these rows: pair features (arrays), item features
        (arrays), user and context features (scalars)."""
        user_id = str(user_id)
        pos = self.contents.lookup([str(c) for c in content_ids]).astype(np.int64)
        row = self.candidates.row(user_id)
        stats = self.candidates.stats(user_id)
        return self.assembler.columns(user_id, row, pos, list(content_ids), context, stats)

    # ---- requests

    def recommend(
        self, user_id: str, k: int, context: RequestContext, *, request_id: str, claim: Callable[[], bool] | None = None
    ) -> Feed:
        """The user's feed of ``k`` contents; never raises (see the module doc). With ``claim``
        (:meth:`~components.serving.feed.SlateClaim.take`), the slate is logged only if the claim
        is won: a caller that gave up waiting logs its own answer instead."""
        stages = StageClock(self.settings.budget_ms)
        try:
            user_id = str(user_id)
            if int(k) < 1:
                raise ValueError(f"k must be >= 1, got {k}")
            # the models first: without a production model there is nothing to do
            stages.stage = "models"
            slots = ModelSlots.of(self.models)
            stages.enter("candidates")
            fresh = self.interest(user_id) if self.settings.realtime_weight > 0 else None
            cands = self.candidates.assemble(user_id, fresh)
            stages.done("candidates")
            stages.enter("features")
            cols = self._columns(user_id, cands, context)
            stages.done("features")
            stages.enter("scoring")
            scored = self._score(slots, user_id, cols, cands, fresh)
            stages.done("scoring")
            stages.enter("rerank", check_budget=False)
            items, chosen = self.reranker.rerank(
                cands.positions, cands.content_ids, cands.sources, scored.scores, int(k),
                request_id, str(user_id),
            )  # fmt: skip
            stages.done("rerank")
            if claim is None or claim():
                self._log_served(request_id, user_id, items, chosen, scored, context)
            stages.done("log")
            return Feed(
                request_id=request_id,
                user_id=user_id,
                items=items,
                model_version=scored.model.version,
                degraded=False,
                reason="cold_start" if cands.cold else "ok",
                arm=scored.arm,
                shadow_version=scored.shadow.version if scored.shadow is not None else None,
                timings_ms=stages.total(),
            )
        except Exception as exc:
            reason = (
                str(exc)
                if isinstance(exc, BudgetSpent)
                else f"{stages.stage}: {type(exc).__name__}: {exc}"
            )
            log.warning("request %s for %s falls back: %s", request_id, user_id, reason)
            return self.fallback(
                user_id,
                k,
                request_id=request_id,
                reason=reason,
                request_ts_s=getattr(context, "request_ts_s", None),
                started=stages.t0,
                claim=claim,
            )

    def _columns(self, user_id: str, cands: Candidates, context: RequestContext) -> dict[str, Any]:
        """The features of the request's candidates (:class:`FeatureAssembler`)."""
        row = self.candidates.row(user_id)
        cids = cands.content_ids.tolist()
        return self.assembler.columns(user_id, row, cands.positions, cids, context, cands.stats)

    def _score(
        self,
        slots: ModelSlots,
        user_id: str,
        cols: Mapping[str, Any],
        cands: Candidates,
        fresh: tuple[np.ndarray, float] | None,
    ) -> Scored:
        """The arm's scores (with the real-time interest's pull) and the shadow's."""
        s = self.settings
        arm, model = choose_arm(slots, user_id, s.canary_share, s.canary_salt)
        n = len(cands.content_ids)
        x = self.assembler.matrix(model, cols, n)
        scores = np.asarray(model.predict(x), dtype=np.float64)
        shadow = shadow_scores(slots.shadow, cols, n, self.assembler.matrix)
        if fresh is not None:
            scores = scores + self.reranker.interest_boost(fresh, cands.positions, scores)
        return Scored(arm, model, x, scores, slots.shadow, shadow)

    def _log_served(
        self,
        request_id: str,
        user_id: str,
        items: list[FeedItem],
        chosen: list[int],
        scored: Scored,
        context: RequestContext,
    ) -> None:
        """The impression rows of a served feed (the served model's input rows included)."""
        self.impressions.add(
            impression_rows(
                request_id,
                user_id,
                items,
                pd.Timestamp(int(context.request_ts_s), unit="s", tz="UTC"),
                arm=scored.arm,
                degraded=False,
                model_version=scored.model.version,
                shadow_version=scored.shadow.version if scored.shadow is not None else None,
                rows=chosen,
                scores=scored.scores,
                shadow_scores=scored.shadow_scores,
                features=scored.x,
            )
        )

    def fallback(
        self,
        user_id: str,
        k: int,
        *,
        request_id: str,
        reason: str,
        request_ts_s: int | None = None,
        started: float | None = None,
        claim: Callable[[], bool] | None = None,
    ) -> Feed:
        """Recently most engaged, then popular contents the user has not seen (degraded=True);
        logged unless ``claim`` is given and lost."""
        t0 = started if started is not None else time.perf_counter()
        items: list[FeedItem] = []
        try:
            items = fallback_items(self._popular, self.seen(str(user_id)) | self.moderated, k)
            ts = pd.Timestamp(
                int(request_ts_s) if request_ts_s is not None else int(self._clock()),
                unit="s",
                tz="UTC",
            )
            if claim is None or claim():
                self.impressions.add(
                    impression_rows(request_id, str(user_id), items, ts, arm=FALLBACK, degraded=True)
                )
        except Exception:  # the last resort must not raise either
            log.exception("fallback for request %s failed", request_id)
        return degraded_feed(request_id, str(user_id), items, reason, t0)


__all__ = ["Recommender"]
