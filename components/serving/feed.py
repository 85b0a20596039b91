"""What a request returns: the :class:`Feed` of :class:`FeedItem` and the arm that served it."""

from __future__ import annotations

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
