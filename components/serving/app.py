"""The serving API (FastAPI + uvicorn): ``make serve`` or ``python -m components.serving.app``.

Endpoints: ``GET/POST /v1/recommend``, ``POST /v1/events`` (API key + per-key rate limit),
``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus), OpenAPI docs at ``/docs``.

A feed request never fails because a dependency did: if the online store is unreachable, the
model is missing, or the request exceeds its internal budget (``serving.timeout_ms``), the
answer is the popularity / trending fallback marked ``degraded: true``; one slate per request id
reaches the impression log, the answered one (:class:`~components.serving.feed.SlateClaim`: past
the timeout, the engine thread's late slate is not logged). User ids in requests are
raw ids, pseudonymised here with the same keyed HMAC as ingestion (``RECO_HMAC_KEY``).

Environment: ``HOST`` / ``PORT`` (default 127.0.0.1:8000), ``RECO_HMAC_KEY`` (or ``RECO_DEMO=1``),
``RECO_API_KEYS`` (``name:secret,...``; required for ``/v1/events``), ``RECO_RATE_LIMIT_PER_S``
(default 5), ``RECO_RATE_LIMIT_BURST`` (default = the rate), ``RECO_RATE_LIMIT_STORE``,
``RECO_WORKERS``, ``RECO_PARAMS`` / ``RECO_PROJECT_ROOT``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from components.core.catalog import DataPaths
from components.core.config import Params, load_params
from components.core.settings import Settings
from components.serving.feed import Feed, SlateClaim
from components.serving.limits import BodyGuard
from components.serving.metrics import Metrics

if TYPE_CHECKING:
    from components.online_update.update import OnlineUpdater
    from components.serving.engine import Recommender
    from components.serving.events import EventSink, StreamFollower
    from components.serving.ratelimit import RateLimiter

log = logging.getLogger(__name__)

MAX_K = 100


class Context(BaseModel):
    device_type: str | None = Field(None, description="ios | android | web | ...")
    os: str | None = None
    network: str | None = Field(None, description="wifi | 4g | 5g | ...")
    local_time: str | None = Field(None, description="ISO 8601 with offset, e.g. 2026-01-05T21:30:00+08:00")


class RecommendBody(BaseModel):
    user_id: str = Field(..., min_length=1, max_length=128)
    k: int = Field(10, ge=1, le=MAX_K)
    context: Context = Field(default_factory=lambda: Context(device_type=None, os=None, network=None, local_time=None))
    at: int | None = Field(None, ge=0, description="simulated request time, epoch s (only with RECO_SIMULATION=1)")


class FeedItemOut(BaseModel):
    content_id: str
    score: float
    source: str = Field(..., description="candidate source (content, item_knn, trending, realtime, ...)")
    exploration: bool = Field(..., description="an exploration slot (epsilon-greedy / UCB)")
    propensity: float = Field(..., description="probability this content was shown in this slot")
    position: int


class FeedOut(BaseModel):
    request_id: str
    user_id: str
    items: list[FeedItemOut]
    model_version: str | None
    degraded: bool = Field(..., description="true: the popularity / trending fallback answered")
    reason: str
    arm: str = Field(..., description="production | canary | fallback")
    timings_ms: dict[str, float]


class EventsBody(BaseModel):
    events: list[Any] = Field(..., min_length=1, max_length=10_000)


class ReadinessProbe:
    """``/readyz``'s checks on a thread of their own (never the feed pool, which a load keeps
    busy), at most one at a time: a probe that hangs is waited for by the next ones rather than
    joined by new tasks, so probes under load leave nothing queued behind them."""

    def __init__(self, check: Callable[[], dict[str, bool]], timeout_s: float = 1.0) -> None:
        self.check = check
        self.timeout_s = timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
        self._running: concurrent.futures.Future[dict[str, bool]] | None = None
        self._lock = threading.Lock()
        self.started = 0  # probes submitted (a test reads it)

    def __call__(self) -> dict[str, bool]:
        with self._lock:
            fut = self._running
            if fut is None or fut.done():
                fut = self._running = self._pool.submit(self.check)
                self.started += 1
        try:
            return fut.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            return {"model": True, "index": True, "store": False, "timeout": False}


@dataclass
class ServingState:
    recommender: Recommender
    sink: EventSink | None
    key: bytes
    api_keys: dict[str, str]
    limiter: RateLimiter
    timeout_s: float
    clock: str = "wall"  # wall | data (historic data sets: serve as of the data's end)
    online_update: OnlineUpdater | None = None  # the real-time loop (incremental model updates)
    follower: StreamFollower | None = None  # events other worker processes accepted
    log_flush_s: float = 5.0  # serving.log_flush_s: impressions reach disk (and the online update) at least this often
    metrics: Metrics = field(default_factory=Metrics.create)
    threads: int = 2  # serving.threads: engine threads per process (more only contend for the GIL)
    max_body_bytes: int = 4 * 2**20  # serving.max_body_bytes: larger request bodies get 413 unread
    simulation: bool = False  # RECO_SIMULATION: a feed request may name its (simulated) time
    kpi_file: Any = None  # metrics/kpis.json: the kpis stage's last figures, shown as reco_kpi gauges
    pool: concurrent.futures.ThreadPoolExecutor = field(init=False)
    probe: ReadinessProbe = field(init=False)

    def __post_init__(self) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(self.threads, 1), thread_name_prefix="feed")
        self.probe = ReadinessProbe(lambda: self.recommender.readiness())


    def request_time(self, at: int | None = None) -> int:
        """The request's time: the wall clock, or (``serving.clock: data``) the loaded data's end,
        so that a historic data set is served as of its last day rather than with every feature
        past its TTL. In simulation mode (``RECO_SIMULATION=1``, the user simulator of
        :mod:`components.simulate`) a request may carry its own simulated time ``at``; elsewhere
        ``at`` is refused, so live traffic can never move the serving clock."""
        if at is not None:
            if not self.simulation:
                raise HTTPException(422, "'at' (a simulated request time) is accepted only with RECO_SIMULATION=1")
            return int(at)
        return self.recommender.data_now_s if self.clock == "data" else int(time.time())


def _request_context(ctx: Context, now_s: int) -> Any:
    from datetime import datetime

    from components.features.context import RequestContext

    offset = 0
    if ctx.local_time:
        try:
            local = datetime.fromisoformat(ctx.local_time)
        except ValueError as exc:
            raise HTTPException(422, f"context.local_time is not ISO 8601: {ctx.local_time!r}") from exc
        if local.utcoffset() is None:
            raise HTTPException(422, "context.local_time needs a UTC offset, e.g. +08:00")
        offset = int(local.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    return RequestContext(request_ts_s=now_s, utc_offset_min=offset, device_type=ctx.device_type, network=ctx.network)


def _feed_json(feed: Feed, raw_user: str) -> dict[str, Any]:
    """The response body (``FeedOut``); shadow scores are logged, never returned."""
    return {
        "request_id": feed.request_id,
        "user_id": raw_user,
        "items": [
            {
                "content_id": it.content_id,
                "score": it.score,
                "source": it.source,
                "exploration": it.exploration,
                "propensity": it.propensity,
                "position": it.position,
            }
            for it in feed.items
        ],
        "model_version": feed.model_version,
        "degraded": feed.degraded,
        "reason": feed.reason,
        "arm": feed.arm,
        "timings_ms": feed.timings_ms,
    }


#: the metrics' route label of each path with a body
_ROUTE_NAMES = {"/v1/events": "events", "/v1/recommend": "recommend"}


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On the server's graceful stop (SIGTERM / SIGINT), ``app.state.shutdown`` when set: the
    background threads stop and the impression log is flushed. This runs inside uvicorn's
    shutdown; code after ``uvicorn.run`` / ``Server.run`` may not (uvicorn re-raises the
    captured signal when it returns, which ends the process)."""
    yield
    shutdown = getattr(app.state, "shutdown", None)
    if shutdown is not None:
        await asyncio.get_running_loop().run_in_executor(None, shutdown)


def create_app(state: ServingState) -> FastAPI:
    """The app over ``state``: the feed, event, health and metrics routes, and HTTP errors as
    ``{"error": detail}``."""
    app = FastAPI(
        title="reco-platform serving",
        version="1",
        description="Personalised short-video feed, event ingestion, health and metrics.",
        lifespan=_lifespan,
    )
    app.state.serving = state
    app.add_middleware(
        BodyGuard,
        max_bytes=state.max_body_bytes,
        api_keys=state.api_keys,
        keyed_paths={"/v1/events"},
        on_refused=lambda path, status: state.metrics.requests.labels(_ROUTE_NAMES.get(path, "other"), str(status)).inc(),
    )
    _add_feed_routes(app, state)
    _add_event_routes(app, state)
    _add_health_routes(app, state)
    _add_metrics_route(app, state)
    app.exception_handler(HTTPException)(_http_error)
    return app


async def _serve_feed(state: ServingState, raw_user: str, k: int, ctx: Context, at: int | None = None) -> Response:
    """One feed: the engine in the serving pool within ``serving.timeout_ms`` (else the
    fallback), counted in the metrics; the response names the worker process that answered."""
    from components.data.ingestion.pseudonyms import pseudonym

    m = state.metrics
    t0 = time.perf_counter()
    request_id = uuid.uuid4().hex
    user = pseudonym(raw_user, state.key)
    rc = _request_context(ctx, state.request_time(at))
    claim = SlateClaim()  # one slate per request id reaches the impression log: the answered one
    call = functools.partial(state.recommender.recommend, user, k, rc, request_id=request_id, claim=claim.take)
    engine = state.pool.submit(call)
    try:
        result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(engine)), state.timeout_s)
    except TimeoutError:
        if claim.take():  # the engine thread will not log its slate
            result = state.recommender.fallback(
                user, k, request_id=request_id, reason="timeout", request_ts_s=rc.request_ts_s
            )
        else:  # the engine is logging its slate this instant: answer with that slate
            result = await asyncio.wrap_future(engine)
    except Exception as exc:  # the engine degrades by itself; this is the last guard
        log.exception("recommend failed")
        m.errors.labels("recommend").inc()
        reason = f"error: {type(exc).__name__}"
        result = state.recommender.fallback(
            user, k, request_id=request_id, reason=reason, claim=claim.take, request_ts_s=rc.request_ts_s
        )
    if result.degraded:
        m.degraded.labels(result.reason.split(":")[0] or "unknown").inc()
    m.latency.labels("recommend").observe(time.perf_counter() - t0)
    m.requests.labels("recommend", "200").inc()
    return Response(
        orjson.dumps(_feed_json(result, raw_user)),
        media_type="application/json",
        headers={"X-Served-By": str(os.getpid())},  # which worker process answered
    )


def _add_feed_routes(app: FastAPI, state: ServingState) -> None:
    """``GET /v1/recommend`` (query parameters) and ``POST /v1/recommend`` (JSON body)."""

    @app.get("/v1/recommend", summary="Ranked feed for a user", response_model=FeedOut)
    async def recommend_get(
        user_id: str = Query(..., min_length=1, max_length=128),
        k: int = Query(10, ge=1, le=MAX_K, description=f"feed length, 1..{MAX_K}"),
        device_type: str | None = None,
        network: str | None = None,
        local_time: str | None = None,
        at: int | None = Query(None, ge=0, description="simulated request time, epoch s (only with RECO_SIMULATION=1)"),
    ) -> Response:
        ctx = Context(device_type=device_type, os=None, network=network, local_time=local_time)
        return await _serve_feed(state, user_id, k, ctx, at)

    @app.post("/v1/recommend", summary="Ranked feed with request context", response_model=FeedOut)
    async def recommend_post(body: RecommendBody) -> Response:
        return await _serve_feed(state, body.user_id, body.k, body.context, body.at)


def _add_event_routes(app: FastAPI, state: ServingState) -> None:
    """``POST /v1/events``, behind an API key and its rate limit."""
    m = state.metrics

    def api_key(x_api_key: str | None = Header(None)) -> str:
        from components.serving.ratelimit import key_name

        name = key_name(state.api_keys, x_api_key)
        if name is None:
            m.requests.labels("events", "401").inc()
            raise HTTPException(401, "missing or unknown API key (header X-API-Key)")
        allowed, wait = state.limiter.allow(name)
        if not allowed:
            m.requests.labels("events", "429").inc()
            raise HTTPException(429, f"rate limit: {state.limiter.rate:g} calls/s per key", headers={"Retry-After": f"{max(wait, 0.001):.3f}"})
        return name

    @app.post("/v1/events", summary="Ingest a batch of events (same validation as batch ingestion)")
    def post_events(body: EventsBody, key: str = Depends(api_key)) -> JSONResponse:
        import sqlite3

        import pandas as pd

        if state.sink is None:
            raise HTTPException(503, "event ingestion is not configured")
        t0 = time.perf_counter()
        try:
            result = state.sink.accept(body.events, pd.Timestamp.now(tz="UTC"))
        except (OSError, sqlite3.Error) as exc:  # nothing acknowledged: the batch is stored whole or not at all
            log.exception("event batch not stored")
            m.requests.labels("events", "503").inc()
            raise HTTPException(503, f"events not stored ({type(exc).__name__}); retry the batch", headers={"Retry-After": "1"}) from exc
        m.events.labels("accepted").inc(result.accepted)
        m.events.labels("rejected").inc(result.rejected)
        m.events.labels("duplicate").inc(result.duplicates)
        m.latency.labels("events").observe(time.perf_counter() - t0)
        m.requests.labels("events", "200").inc()
        return JSONResponse({**asdict(result), "key": key}, headers={"X-Served-By": str(os.getpid())})


def _add_health_routes(app: FastAPI, state: ServingState) -> None:
    """``GET /healthz`` (liveness, the online update's state) and ``GET /readyz``."""

    @app.get("/healthz", summary="Liveness, the catalogue served, and the state of the real-time update loop")
    def healthz() -> dict[str, Any]:
        rec = state.recommender
        body: dict[str, Any] = {
            "status": "ok",
            # this worker's catalogue: the export's contents plus the uploads indexed since
            "catalogue": {"contents": len(rec.contents), "uploads_since_export": rec.uploads.added},
        }
        if state.online_update is not None:
            st = state.online_update.status()
            body["online_update"] = {
                k: st.get(k)
                for k in ("running", "pending_events", "updates", "last_status", "last_reason", "last_version")
            }
        return body

    @app.get("/readyz", summary="Readiness: model and index loaded, feature store reachable")
    def readyz() -> JSONResponse:
        checks = state.probe()  # a hung dependency must not hang the probe
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


def _add_metrics_route(app: FastAPI, state: ServingState) -> None:
    """``GET /metrics``: the Prometheus series of every worker (:mod:`components.serving.metrics`),
    the serving model versions read at scrape time."""
    m = state.metrics

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST

        return PlainTextResponse(m.scrape(state.recommender.versions, state.kpi_file), media_type=CONTENT_TYPE_LATEST)


def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _update_lock(paths: DataPaths) -> Any:
    """An exclusive lock on ``data/serving/online_update.lock``, or None when another process of
    this deployment holds it: one process runs the online update, whatever the worker count."""
    import fcntl

    path = paths.of("online_update_lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def rate_limiter(settings: Settings, store: str, paths: DataPaths) -> RateLimiter:
    """The per-key limit (``RECO_RATE_LIMIT_PER_S`` / ``_BURST``) in the store every worker
    shares (``RECO_RATE_LIMIT_STORE`` over ``serving.rate_limit_store``)."""
    from components.features.feast_repo import DEFAULT_REDIS_URL
    from components.serving.ratelimit import DEFAULT_RATE_PER_S, RateLimiter, bucket_store

    rate = DEFAULT_RATE_PER_S if settings.rate_limit_per_s is None else settings.rate_limit_per_s
    burst = rate if settings.rate_limit_burst is None else settings.rate_limit_burst
    kind = settings.rate_limit_store or store
    buckets = bucket_store(kind, paths.of("ratelimit"), settings.redis_url or DEFAULT_REDIS_URL)
    return RateLimiter(rate=rate, burst=max(burst, 1.0), store=buckets)


def build_state(
    params: Mapping[str, Any], paths: DataPaths, env: Mapping[str, str] | None = None, *, workers: int = 1
) -> ServingState:
    """Load the engine and the event consumer from the project's artefacts and the environment
    (``workers``: server processes sharing the port; they share the rate limit's store)."""
    from components.data.ingestion.pseudonyms import hmac_key_from_env
    from components.features.feast_repo import StoreSettings, open_store
    from components.features.online import push_user_realtime
    from components.serving.engine import Recommender
    from components.serving.events import EventSink, StreamFollower, limits_from
    from components.serving.ratelimit import parse_api_keys

    settings = Settings.from_env(env)
    key = hmac_key_from_env(settings)
    cfg = Params.of(params)
    serving = cfg.serving
    recommender = Recommender.load(params, paths)
    store = open_store(paths, StoreSettings.from_params(cfg, settings))
    content_ids = recommender.catalogue()
    sink = EventSink(
        paths,
        key=key,
        limits=limits_from(params),
        known_content=set(content_ids),
        push=lambda rows: push_user_realtime(store, rows),
        last_n_viewed=cfg.features.last_n_viewed,
        realtime_users=serving.stream_users,
        dedupe_retention_s=serving.dedupe_retention_h * 3600.0,
    )
    # the streamed state (seen sets, moderation, interest, real-time windows, duplicate ids)
    # comes back from the stream; then the follower takes what other workers add
    sink.recover()
    sink.replay([recommender.observe])
    sink.listeners.append(recommender.observe)
    updater = None
    if cfg.online_update.enabled and settings.online_update:
        lock = _update_lock(paths)
        if lock is not None:
            from components.online_update.update import OnlineUpdater

            updater = OnlineUpdater(params, paths)  # registers candidates only; the gates promote
            updater._process_lock = lock  # type: ignore[attr-defined]  # held while it lives
            sink.listeners.append(updater.observe)
        else:
            log.info("another process runs the online update")
    follower = StreamFollower(sink, serving.stream_poll_s)
    return ServingState(
        recommender=recommender,
        sink=sink,
        key=key,
        api_keys=parse_api_keys(settings.api_keys.get_secret_value()),
        limiter=rate_limiter(settings, serving.rate_limit_store, paths),
        timeout_s=serving.timeout_ms / 1000.0,
        clock=serving.clock,
        online_update=updater,
        follower=follower,
        log_flush_s=serving.log_flush_s,
        threads=serving.threads,
        max_body_bytes=serving.max_body_bytes,
        simulation=settings.simulation,
        kpi_file=paths.of("metrics_kpis"),
    )


def _refresher(state: ServingState, every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        try:
            if state.recommender.refresh():
                log.info("serving models now %s", state.recommender.versions())
        except Exception:
            log.exception("refresh failed; serving the models already loaded")


def _flusher(state: ServingState, stop: threading.Event) -> None:
    """Impressions on disk every ``serving.log_flush_s`` (the canary gate and the online update
    read them; a kill -9 loses at most this long's)."""
    while not stop.wait(state.log_flush_s):
        try:
            state.recommender.flush()
        except Exception:
            log.exception("impression log flush failed; rows stay buffered")


def _load_from_env() -> tuple[dict[str, Any], DataPaths, int]:
    settings = Settings.from_env()
    paths = DataPaths(settings.project_root) if settings.project_root else DataPaths()
    params = load_params(settings.params_file or paths.of("params"))
    return params, paths, max(settings.workers, 1)


def start_background(state: ServingState, refresh_s: float) -> threading.Event:
    """The process's background threads: registry / feature refresh, impression flushes,
    the stream follower, the online update (when this process holds it). Set the returned event
    and call :func:`stop_background` to end them."""
    stop = threading.Event()
    threading.Thread(target=_refresher, args=(state, refresh_s, stop), daemon=True, name="refresh").start()
    threading.Thread(target=_flusher, args=(state, stop), daemon=True, name="flush").start()
    if state.follower is not None:
        state.follower.start()
    if state.online_update is not None:
        state.online_update.start()
    return stop


def stop_background(state: ServingState, stop: threading.Event) -> None:
    stop.set()
    if state.follower is not None:
        state.follower.stop()
    if state.online_update is not None:
        state.online_update.stop()
    state.recommender.close()


def worker_app() -> FastAPI:
    """The app of one worker process (``RECO_WORKERS`` > 1): each worker loads its own engine
    (the serving artefact set is memory-mapped, so shared through the page cache).
    ``app.state.shutdown()`` stops its background threads and flushes its impression log; the
    app's lifespan runs it on a graceful stop (no atexit hook: a multiprocessing child ends with
    ``os._exit``, and uvicorn re-raises SIGTERM when it returns, so a SIGTERM lost the buffered
    impressions)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params, paths, workers = _load_from_env()
    state = build_state(params, paths, workers=workers)
    stop = start_background(state, Params.of(params).serving.refresh_s)
    _maybe_trace_memory(Settings.from_env())
    app = create_app(state)
    app.state.shutdown = functools.partial(stop_background, state, stop)
    return app


def _maybe_trace_memory(settings: Settings) -> None:
    if settings.tracemalloc_s:
        from components.serving import memtrace

        memtrace.start(settings.tracemalloc_s)


def main() -> int:
    """Serve on ``HOST``:``PORT`` with ``RECO_WORKERS`` processes (default 1). Several workers
    use several cores (the engine holds Python's GIL for most of a request); they share the
    event stream (each follows the others' events), the online store, the per-key rate limit's
    buckets and the Prometheus counters; one of them runs the online update; a worker that dies
    is replaced (:mod:`components.serving.workers`)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params, paths, workers = _load_from_env()
    settings = Settings.from_env()
    host, port = settings.host, settings.port
    from components.serving.workers import fresh_metrics_dir, serve_workers

    if workers > 1:
        return serve_workers(host, port, workers)
    metrics_dir, owned = fresh_metrics_dir()  # the same metrics mode as several workers
    state = build_state(params, paths)
    stop = start_background(state, Params.of(params).serving.refresh_s)
    _maybe_trace_memory(settings)
    app = create_app(state)
    app.state.shutdown = functools.partial(stop_background, state, stop)  # run by the lifespan
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    finally:
        if owned:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
