"""The events a simulated user posts: one page of a feed played on the simulated clock, and
content uploads. Events are the API's JSON records (``POST /v1/events``), with raw user ids
(the server pseudonymises them) and epoch-millisecond timestamps of the simulated clock."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from components.data.synthetic.constants import (
    COMMENTS,
    DEVICES,
    MS_PER_S,
    NETWORKS,
    OS_NAMES,
    REPORT_REASONS,
    SHARE_PLATFORMS,
)
from components.data.synthetic.simulate import Outcome


def _context(truth_world: Any, user: int) -> dict[str, str]:
    dev = int(truth_world.user_device[user])
    os_code = dev if dev < 2 else 2 + int(truth_world.user_desktop_os[user])
    return {
        "device_type": DEVICES[dev],
        "os": OS_NAMES[os_code],
        "network": NETWORKS[int(truth_world.user_network[user])],
    }


def page_events(
    world: Any,
    user: int,
    user_id: str,
    content_ids: list[str],
    creator_ids: list[str],
    out: Outcome,
    t_ms: int,
    rng: np.random.Generator,
    next_id: Any,
) -> tuple[list[dict[str, Any]], int]:
    """The events of one page watched from ``t_ms``, item after item (watch time plus a short
    gap), and the time the page ends. ``next_id()`` gives each event its id."""
    ctx = _context(world, user)
    events: list[dict[str, Any]] = []

    def add(kind: str, ts: int, **extra: Any) -> None:
        events.append({"event_id": next_id(), "event_type": kind, "user_id": user_id, "timestamp": int(ts), **ctx, **extra})

    t = int(t_ms)
    for j, cid in enumerate(content_ids):
        watch, dur = int(out.watch_ms[j]), int(out.dur_ms[j])
        after = t + watch
        gap = int(MS_PER_S * (0.8 + rng.exponential(2.5)))
        add("view", after, content_id=cid, watch_duration_s=round(watch / MS_PER_S, 3))
        if out.complete[j]:
            add("complete_view", t + min(watch, dur), content_id=cid)
        if out.replay[j]:
            add("replay", t + dur + 100, content_id=cid)
        if out.skip[j]:
            add("skip", after, content_id=cid)
        if out.like[j]:
            add("like", t + int((0.3 + 0.7 * rng.random()) * watch), content_id=cid)
        later = after + int(rng.random() * gap)
        if out.share[j]:
            add("share", later, content_id=cid, platform=SHARE_PLATFORMS[int(rng.integers(len(SHARE_PLATFORMS)))])
        if out.comment[j]:
            add("comment", later, content_id=cid, comment_text=COMMENTS[int(rng.integers(len(COMMENTS)))])
        if out.save[j]:
            add("save", later, content_id=cid)
        if out.follow[j]:
            add("follow", later, creator_id=creator_ids[j])
        if out.unfollow[j]:
            add("unfollow", later, creator_id=creator_ids[j])
        if out.hide[j]:
            add("hide", later, content_id=cid)
        if out.report[j]:
            add("report", later, content_id=cid, reason=REPORT_REASONS[int(rng.integers(len(REPORT_REASONS)))])
        t = after + gap
    return events, t


def upload_event(
    event_id: str, content_id: str, creator_id: str, category: str, duration_s: float, words: list[str], t_ms: int
) -> dict[str, Any]:
    """A ``content_upload`` by the creator's pseudo user, with the metadata the content table
    needs (category, tags, description, duration)."""
    meta = {
        "category": category,
        "tags": [f"#{w}" for w in words[:3]],
        "description": " ".join(words),
        "duration_s": float(duration_s),
    }
    return {
        "event_id": event_id,
        "event_type": "content_upload",
        "user_id": f"user_{creator_id}",
        "content_id": content_id,
        "creator_id": creator_id,
        "timestamp": int(t_ms),
        "metadata": orjson.dumps(meta).decode(),
        "device_type": "ios",
        "os": "ios",
        "network": "wifi",
    }
