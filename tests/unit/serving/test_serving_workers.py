"""Issue 16, several workers and long runs: the shared rate-limit stores (SQLite, the real Redis),
the supervisor replacing a dead worker, one slate per request id past a timeout, ``/readyz``'s own
probe, the impression log's bounds and the bounded streamed state."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from components.serving import impressions
from components.serving.app import Context, ReadinessProbe, ServingState, _serve_feed
from components.serving.catalogue import Catalogue
from components.serving.events import RealtimeFeatures
from components.serving.feed import Feed, FeedItem
from components.serving.impressions import ImpressionLog
from components.serving.ratelimit import RateLimiter, RedisBuckets, SqliteBuckets
from components.serving.stream import StreamState
from components.serving.workers import Supervisor

# ---------------------------------------------------------------- rate limit shared by workers


def test_two_workers_share_one_sqlite_bucket(tmp_path: Path) -> None:
    """Two processes' limiters on one file: 5 calls/s for the key in all, not 5 each."""
    now = [1000.0]
    a = RateLimiter(5.0, 5.0, store=SqliteBuckets(tmp_path / "rl.sqlite", clock=lambda: now[0]))
    b = RateLimiter(5.0, 5.0, store=SqliteBuckets(tmp_path / "rl.sqlite", clock=lambda: now[0]))
    got = [lim.allow("k")[0] for lim in (a, b) * 4]
    assert got == [True] * 5 + [False] * 3
    allowed, wait = b.allow("k")
    assert not allowed and wait == pytest.approx(0.2)
    now[0] += 0.41  # two tokens back, whichever worker asks
    assert [a.allow("k")[0], b.allow("k")[0], a.allow("k")[0]] == [True, True, False]
    assert a.allow("other")[0]  # per key
    now[0] -= 100  # a clock stepping back refills nothing
    assert not b.allow("k")[0]


def test_the_sqlite_bucket_is_exact_across_threads(tmp_path: Path) -> None:
    limiter = RateLimiter(0.001, 50.0, store=SqliteBuckets(tmp_path / "rl.sqlite"))
    results: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(40):
            ok = limiter.allow("k")[0]
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 160 and sum(results) == 50


def _redis() -> RedisBuckets:
    store = RedisBuckets("127.0.0.1:6379", prefix=f"reco:test:{uuid.uuid4().hex}:")
    try:
        store.client.ping()
    except Exception as exc:  # the machine's Redis is part of the test set-up
        pytest.skip(f"no Redis on 127.0.0.1:6379: {exc}")
    return store


def test_two_workers_share_one_redis_bucket() -> None:
    """The production store against the real Redis: one bucket per key for every process."""
    a, b = _redis(), _redis()
    b.prefix = a.prefix  # the same deployment
    la, lb = RateLimiter(0.01, 5.0, store=a), RateLimiter(0.01, 5.0, store=b)
    got = [lim.allow("k")[0] for lim in (la, lb) * 4]
    assert got == [True] * 5 + [False] * 3
    allowed, wait = la.allow("k")
    assert not allowed and 90 < wait <= 100  # (1 - tokens) / rate on Redis's clock
    assert lb.allow("other")[0]
    ttl = a.client.ttl(a.prefix + "k")
    assert 0 < ttl <= 502  # an idle bucket expires once it would be full again
    a.client.delete(a.prefix + "k", a.prefix + "other")


# ---------------------------------------------------------------- the supervisor


def _sleep_forever() -> None:
    time.sleep(600)


def test_a_killed_worker_is_replaced_and_a_crash_loop_stops() -> None:
    ctx = multiprocessing.get_context("fork")
    started: list[Any] = []

    def spawn(i: int) -> Any:
        p = ctx.Process(target=_sleep_forever, name=f"w{i}", daemon=True)
        p.start()
        started.append(p)
        return p

    sup = Supervisor(spawn, 2)
    try:
        first = sup.procs[0]
        os.kill(first.pid, signal.SIGKILL)
        first.join(timeout=10)
        assert sup.check()
        assert sup.replaced == 1 and sup.procs[0] is not first and sup.procs[0].is_alive()
        assert sup.procs[1] is started[1] and sup.procs[1].is_alive()  # the other kept serving
        stopped = False
        for _ in range(6):  # a crash loop: every worker dies as soon as it starts
            for p in sup.procs:
                os.kill(p.pid, signal.SIGKILL)
                p.join(timeout=10)
            if not sup.check():
                stopped = True
                break
        assert stopped and len(sup.deaths) == 7  # more than 3 deaths a worker within a minute
    finally:
        sup.stop_all(timeout_s=5)
    assert not any(p.is_alive() for p in started)


# ---------------------------------------------------------------- one slate per request id


class SlowEngine:
    """A stand-in engine whose ``recommend`` waits for the test (the HTTP layer under test)."""

    def __init__(self, claim_first: bool) -> None:
        self.claim_first = claim_first
        self.release = threading.Event()
        self.done = threading.Event()
        self.logged: list[str] = []

    def _feed(self, request_id: str, arm: str) -> Feed:
        items = [FeedItem("c1", 1.0, "content", False, 1.0, 0)]
        return Feed(request_id, "u", items, "v1", arm == "fallback", "ok", arm, None, {})

    def recommend(self, user: str, k: int, rc: Any, *, request_id: str, claim: Any = None) -> Feed:
        try:
            if self.claim_first and claim():  # the slate is being logged when the timeout hits
                self.logged.append("engine")
                self.release.wait(10)
            else:
                self.release.wait(10)
                if claim():
                    self.logged.append("engine")
            return self._feed(request_id, "production")
        finally:
            self.done.set()

    def fallback(self, user: str, k: int, *, request_id: str, reason: str, claim: Any = None, **_: Any) -> Feed:
        if claim is None or claim():
            self.logged.append("fallback")
        return self._feed(request_id, "fallback")


def _state(engine: SlowEngine) -> ServingState:
    return ServingState(
        recommender=engine,  # type: ignore[arg-type]
        sink=None, key=b"k" * 32, api_keys={}, limiter=RateLimiter(5.0, 5.0), timeout_s=0.05,
    )  # fmt: skip


def test_past_the_timeout_only_the_answered_fallback_is_logged() -> None:
    engine = SlowEngine(claim_first=False)
    state = _state(engine)
    response = asyncio.run(_serve_feed(state, "u", 5, Context(device_type=None, os=None, network=None, local_time=None)))
    assert b'"arm":"fallback"' in response.body
    engine.release.set()
    assert engine.done.wait(10)
    state.pool.shutdown(wait=True)
    assert engine.logged == ["fallback"]  # the engine's late slate is not logged


def test_a_slate_logged_as_the_timeout_hits_is_the_answer() -> None:
    engine = SlowEngine(claim_first=True)
    state = _state(engine)
    threading.Timer(0.3, engine.release.set).start()
    response = asyncio.run(_serve_feed(state, "u", 5, Context(device_type=None, os=None, network=None, local_time=None)))
    assert b'"arm":"production"' in response.body
    assert engine.logged == ["engine"]


def test_readyz_probes_run_one_at_a_time_off_the_feed_pool() -> None:
    release = threading.Event()
    names: list[str] = []

    def check() -> dict[str, bool]:
        names.append(threading.current_thread().name)
        release.wait(10)
        return {"model": True, "index": True, "store": True}

    probe = ReadinessProbe(check, timeout_s=0.01)
    for _ in range(5):  # a hung store: every probe times out, none queues another task
        assert probe()["store"] is False
    assert probe.started == 1
    release.set()
    assert probe._running is not None and probe._running.result(timeout=10)["store"]
    probe.timeout_s = 10
    assert probe() == {"model": True, "index": True, "store": True}
    assert probe.started == 2 and all(n.startswith("readyz") for n in names)


# ---------------------------------------------------------------- the impression log's bounds


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"request_id": f"r{start + i}", "user_id": "u", "content_id": "c", "position": 0,
             "timestamp": pd.Timestamp("2026-01-01", tz="UTC")} for i in range(n)]  # fmt: skip


def test_failing_background_writes_lose_none_of_many_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = impressions.atomic_write_parquet
    calls = {"n": 0}

    def flaky(path: Path, table: Any, **kw: Any) -> Path:
        calls["n"] += 1
        if calls["n"] % 2:  # every other write fails
            raise OSError("disk full")
        return real(path, table, **kw)

    monkeypatch.setattr(impressions, "atomic_write_parquet", flaky)
    log = ImpressionLog(tmp_path / "imp", flush_every=10, clock=lambda: 0.0)
    for i in range(50):
        log.add(_rows(7, start=7 * i))
    for _ in range(5):
        try:
            log.flush()
        except OSError:
            continue
        if len(log) == 0:
            break
    written = pd.concat([pd.read_parquet(p) for p in log.files])["request_id"]
    assert len(log) == 0 and log.dropped == 0
    assert sorted(written) == sorted(f"r{i}" for i in range(350))  # 0 of 350 lost, none twice


def test_a_dead_disk_bounds_the_buffer_and_the_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()

    def stuck(path: Path, table: Any, **kw: Any) -> Path:
        gate.wait(10)
        raise OSError("disk gone")

    monkeypatch.setattr(impressions, "atomic_write_parquet", stuck)
    log = ImpressionLog(tmp_path / "imp", flush_every=10, clock=lambda: 0.0, max_rows=100)
    for i in range(100):
        log.add(_rows(5, start=5 * i))
        assert len(log._pending) <= impressions.MAX_PENDING
    assert len(log) <= 100
    gate.set()
    with pytest.raises(OSError):
        log.flush()
    assert len(log) == 100 and log.dropped == 400  # the newest 100 kept, the rest counted


# ---------------------------------------------------------------- bounded streamed state


def test_streamed_state_keeps_the_most_recent_users_and_contents() -> None:
    ids = [f"c{i}" for i in range(8)]
    art = SimpleNamespace(item_vectors=np.eye(8, dtype=np.float32))
    state = StreamState(
        art, Catalogue(ids), moderated=frozenset(), reporters={}, threshold=3,  # type: ignore[arg-type]
        vectors_lock=threading.Lock(), max_users=3, seen_per_user=2,
    )  # fmt: skip
    for u in range(10):
        state.note_seen(f"u{u}", ids[:4])
    assert state.noted_of("u9") == ["c2", "c3"]  # the user's most recent contents
    state.note_seen("u7", ["c0"])  # u7 becomes the most recent user
    state.note_seen("u10", ["c1"])
    assert [state.noted_of(f"u{u}") != [] for u in (7, 8, 9, 10)] == [True, False, True, True]
    likes = pd.DataFrame({"user_id": [f"v{i}" for i in range(10)], "content_id": ids[:5] * 2})
    state._update_interest(likes)
    assert state.tracked() == (3, 3) and state.interest("v9") is not None and state.interest("v0") is None


def test_realtime_windows_keep_the_most_recent_users() -> None:
    rt = RealtimeFeatures(last_n_viewed=3, max_users=3)
    for u in range(10):
        rt.add(f"u{u}", 1000 + u, "view", "c1")
    rt.add("u7", 2000, "like", "c2")
    rt.add("u10", 2001, "view", "c3")
    assert len(rt) == 3 and "u7" in rt and "u8" not in rt
    assert rt.row("u7", 2001)["rt_events_1h"] == 2


# ---------------------------------------------------------------- metrics over processes

_SCRAPE = """
import multiprocessing, os, sys
from components.serving.metrics import Metrics, mark_dead

m = Metrics.create()
assert m.multiproc_dir == os.environ["PROMETHEUS_MULTIPROC_DIR"], m.multiproc_dir
m.requests.labels("recommend", "200").inc(3)

def child():
    Metrics.create().requests.labels("recommend", "200").inc(4)

p = multiprocessing.get_context("fork").Process(target=child)
p.start(); p.join()
mark_dead(p.pid)  # a dead worker's counts stay in the totals
sys.stdout.write(m.scrape(lambda: {"production": "v1", "canary": None}).decode())
"""


def test_metrics_sum_every_process_and_read_the_versions_at_scrape(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _SCRAPE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'reco_requests_total{endpoint="recommend",status="200"} 7.0' in out.stdout
    assert 'reco_model_info{arm="production",version="v1"} 1.0' in out.stdout and 'arm="canary"' not in out.stdout


_ONE = """
from components.serving.metrics import Metrics

m = Metrics.create()
assert m.multiproc_dir is None
m.requests.labels("recommend", "200").inc(2)
print(m.scrape(lambda: {"production": None}).decode())
"""


def test_one_process_metrics_stay_in_its_registry() -> None:
    """Without the variable (a fresh process: feast.metrics may have set it in this one)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if "PROMETHEUS_MULTIPROC" not in k.upper()}
    out = subprocess.run([sys.executable, "-c", _ONE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'reco_requests_total{endpoint="recommend",status="200"} 2.0' in out.stdout
    assert not any(line.startswith("reco_model_info{") for line in out.stdout.splitlines())  # no model, no sample


def test_impressions_are_flushed_by_time_and_a_failed_flush_is_retried() -> None:
    from components.serving.app import start_background, stop_background

    flushed = threading.Semaphore(0)
    calls = {"n": 0}

    def flush() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")  # the rows stay buffered; the next tick retries
        flushed.release()

    engine = SimpleNamespace(refresh=lambda: False, flush=flush, close=lambda: None)
    state = SimpleNamespace(recommender=engine, follower=None, online_update=None, log_flush_s=0.02)
    stop = start_background(state, 60.0)  # type: ignore[arg-type]
    try:
        assert flushed.acquire(timeout=10) and flushed.acquire(timeout=10)  # no request needed
    finally:
        stop_background(state, stop)  # type: ignore[arg-type]
    assert calls["n"] >= 3


def test_a_failing_store_falls_back_to_this_processs_buckets() -> None:
    class Down:
        def take(self, key: str, rate: float, burst: float) -> tuple[bool, float]:
            raise ConnectionError("redis is down")

    now = [0.0]
    limiter = RateLimiter(5.0, 5.0, clock=lambda: now[0], store=Down())
    assert [limiter.allow("k")[0] for _ in range(6)] == [True] * 5 + [False]  # limited, not stopped
    assert limiter.store_failures == 6


def test_an_impression_file_and_its_folder_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    log = ImpressionLog(tmp_path / "imp", flush_every=10, clock=lambda: 0.0)
    log.add(_rows(3))
    path = log.flush()
    assert path is not None
    assert str(tmp_path / "imp") in synced  # the rename reached the folder
    assert any(Path(s).parent == tmp_path / "imp" and s != str(tmp_path / "imp") for s in synced)  # the data
