"""API keys and a per-key token-bucket rate limit for the serving gateway.

Keys come from the environment (``RECO_API_KEYS``: comma-separated ``name:secret`` pairs, or
bare secrets), never from YAML or code. The specification's gateway allows 5 calls/s per key
(``RECO_RATE_LIMIT_PER_S``, burst ``RECO_RATE_LIMIT_BURST``). Hand-written: a token bucket is a
dozen lines and a library would bring a store (Redis) the embedded default does not need.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Token bucket per key: ``rate`` tokens/s, up to ``burst``; ``clock`` is injected."""

    rate: float
    burst: float
    clock: Callable[[], float]
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")

    def allow(self, key: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token) for one call of ``key``."""
        now = self.clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                b = self._buckets[key] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.updated) * self.rate)
            b.updated = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return True, 0.0
            return False, (1.0 - b.tokens) / self.rate
