"""What a request returns: the :class:`Feed` of :class:`FeedItem` and the arm that served it;
:class:`SlateClaim`, which lets one slate per request reach the impression log."""

from __future__ import annotations

import threading
from dataclasses import dataclass

PRODUCTION, CANARY, FALLBACK = "production", "canary", "fallback"


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


class SlateClaim:
    """Whoever takes it first logs the request's slate: the engine thread (its slate) or the
    HTTP layer past the request's timeout (the fallback it answers with). The other logs
    nothing, so a request id has exactly one slate in the impression log, the answered one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = False

    def take(self) -> bool:
        with self._lock:
            if self._taken:
                return False
            self._taken = True
            return True
