"""API keys and a per-key token-bucket rate limit for the serving gateway.

Keys come from the environment (``RECO_API_KEYS``: comma-separated ``name:secret`` pairs, or
bare secrets), never from YAML or code. The specification's gateway allows 5 calls/s per key
(``RECO_RATE_LIMIT_PER_S``, burst ``RECO_RATE_LIMIT_BURST``).

The buckets live in a store every worker process shares, so a key gets its whole rate whichever
worker its connection lands on (``serving.rate_limit_store``, env ``RECO_RATE_LIMIT_STORE``):

* ``sqlite`` (default, embedded): one row per key in ``data/serving/ratelimit.sqlite``, read and
  written inside one ``BEGIN IMMEDIATE`` transaction (SQLite's write lock serialises the
  workers; WAL, no fsync: a bucket need not survive a power cut);
* ``redis`` (production, several hosts): one hash per key, updated by a Lua script, which Redis
  runs atomically, on Redis's own clock (``RECO_REDIS_URL``, the online store's address);
* ``memory``: one process's dict (tests, a single worker).

Hand-written: the token bucket is a dozen lines in each store; the rate-limit libraries seen
bring their own web-framework glue and keep counters per process unless given this same store.
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_RATE_PER_S = 5.0


def parse_api_keys(value: str) -> dict[str, str]:
    """``"ingest:s3cret,mobile:other"`` → {secret: name}; a bare secret is named ``key<i>``."""
    keys: dict[str, str] = {}
    for i, part in enumerate(p.strip() for p in value.split(",")):
        if not part:
            continue
        name, _, secret = part.partition(":") if ":" in part else (f"key{i}", "", part)
        if not secret:
            raise ValueError(f"empty API key for {name!r} in RECO_API_KEYS")
        keys[secret] = name
    return keys


def key_name(keys: Mapping[str, str], presented: str | None) -> str | None:
    """The name of the presented key, compared in constant time; None when unknown."""
    if not presented:
        return None
    for secret, name in keys.items():
        if hmac.compare_digest(secret.encode(), presented.encode()):
            return name
    return None


class BucketStore(Protocol):
    """Takes one token of ``key``'s bucket if it holds one: (allowed, seconds until the next)."""

    def take(self, key: str, rate: float, burst: float) -> tuple[bool, float]: ...


def _refill(tokens: float, updated: float, now: float, rate: float, burst: float) -> tuple[bool, float, float]:
    """(allowed, tokens left, seconds until the next token) of one call at ``now``."""
    tokens = min(burst, tokens + max(now - updated, 0.0) * rate)
    if tokens >= 1.0:
        return True, tokens - 1.0, 0.0
    return False, tokens, (1.0 - tokens) / rate


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class MemoryBuckets:
    """One process's buckets (``clock`` injected)."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str, rate: float, burst: float) -> tuple[bool, float]:
        now = self.clock()
        with self._lock:
            b = self._buckets.setdefault(key, _Bucket(burst, now))
            allowed, b.tokens, wait = _refill(b.tokens, b.updated, now, rate, burst)
            b.updated = now
        return allowed, wait


class SqliteBuckets:
    """Buckets in a SQLite file shared by the processes of one host (wall clock: every process
    reads the same one; a clock stepping back refills nothing)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._local = threading.local()
        with self._conn() as db:
            db.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL, updated REAL)")

    def _conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            self._local.db = db
        return db

    def take(self, key: str, rate: float, burst: float) -> tuple[bool, float]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            now = self.clock()
            row = db.execute("SELECT tokens, updated FROM buckets WHERE key = ?", (key,)).fetchone()
            tokens, updated = row if row is not None else (burst, now)
            allowed, left, wait = _refill(tokens, updated, now, rate, burst)
            db.execute("INSERT OR REPLACE INTO buckets (key, tokens, updated) VALUES (?, ?, ?)", (key, left, max(now, updated)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return allowed, wait


#: KEYS[1] bucket; ARGV rate, burst, ttl (s) -> {allowed, wait * 1e6}; Redis's clock
_REDIS_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(b[1]) or burst
local updated = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(now - updated, 0) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(math.max(now, updated)))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {allowed, math.floor(wait * 1000000)}
"""


class RedisBuckets:
    """Buckets in Redis, shared by every process of every host (``url``: ``host:port`` or a
    ``redis://`` URL); a bucket idle long enough to be full again expires."""

    def __init__(self, url: str, prefix: str = "reco:ratelimit:") -> None:
        import redis

        self.client: Any = redis.Redis.from_url(url if "://" in url else f"redis://{url}", socket_timeout=1.0)
        self.prefix = prefix
        self._take = self.client.register_script(_REDIS_TAKE)

    def take(self, key: str, rate: float, burst: float) -> tuple[bool, float]:
        ttl = max(int(burst / rate) + 2, 2)
        allowed, wait_us = self._take(keys=[self.prefix + key], args=[rate, burst, ttl])
        return bool(allowed), int(wait_us) / 1e6


@dataclass
class RateLimiter:
    """Token bucket per key: ``rate`` tokens/s, up to ``burst``, in ``store`` (default: this
    process's memory, on ``clock``). While the shared store fails (Redis down, a locked or
    broken file), this process's own buckets enforce the limit, so ingestion neither stops nor
    goes unlimited; the failure is logged once per outage."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    store: BucketStore | None = None
    local: MemoryBuckets = field(init=False)
    store_failures: int = 0  # calls the store could not answer

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.local = MemoryBuckets(self.clock)
        if self.store is None:
            self.store = self.local

    def allow(self, key: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token) for one call of ``key``."""
        assert self.store is not None
        try:
            got = self.store.take(key, self.rate, self.burst)
        except Exception as exc:
            if self.store_failures == 0:
                log.error("rate-limit store failed (%s: %s): this process's buckets apply", type(exc).__name__, exc)
            self.store_failures += 1
            return self.local.take(key, self.rate, self.burst)
        if self.store_failures:
            log.info("rate-limit store answers again after %d failed calls", self.store_failures)
            self.store_failures = 0
        return got


def bucket_store(kind: str, sqlite_path: Path, redis_url: str) -> BucketStore:
    """The configured store (``memory`` | ``sqlite`` | ``redis``)."""
    if kind == "sqlite":
        return SqliteBuckets(sqlite_path)
    if kind == "redis":
        return RedisBuckets(redis_url)
    if kind == "memory":
        return MemoryBuckets()
    raise ValueError(f"rate limit store must be memory, sqlite or redis, got {kind!r}")
