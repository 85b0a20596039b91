"""The serving event consumer: the batch ingestion's checks, durable append, per-event errors,
reconciliation, and the real-time features it pushes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from components.core.catalog import DataPaths
from components.data.ingestion.pseudonyms import pseudonym
from components.data.ingestion.rules import Limits
from components.serving.events import EventSink, RealtimeFeatures, read_stream_events
from components.serving.ratelimit import RateLimiter, key_name, parse_api_keys
from tests.fixtures.params import project_params

NOW = pd.Timestamp("2026-06-01T12:00:00Z")
KEY = b"test-key"
LIMITS = Limits.from_params(project_params())


def ev(i: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"e{i}",
        "event_type": "view",
        "user_id": "alice",
        "content_id": "c1",
        "timestamp": (NOW - pd.Timedelta(minutes=10 - i, milliseconds=123)).isoformat(),  # sub-second
        "watch_duration_s": 12.5,
    }
    base.update(over)
    return base


@pytest.fixture
def sink(tmp_path: Path) -> tuple[EventSink, list[pd.DataFrame]]:
    pushed: list[pd.DataFrame] = []
    s = EventSink(DataPaths(tmp_path), key=KEY, limits=LIMITS, known_content={"c1", "c2"}, push=pushed.append)
    return s, pushed


def test_valid_events_are_kept_and_bad_ones_get_a_per_event_error(sink) -> None:
    s, pushed = sink
    batch = [
        ev(1),
        ev(2, event_type="teleport"),
        ev(3, event_type="like", content_id="c2"),
        "not an object",
        ev(4, timestamp="2031-01-01T00:00:00Z"),
        ev(1),  # repeated within the batch
        ev(5, event_type="skip", watch_duration_s=-3),
    ]
    r = s.accept(batch, NOW)
    assert (r.received, r.accepted, r.rejected, r.duplicates) == (7, 2, 4, 1) and r.reconciles()
    assert [(e.index, e.reason) for e in r.errors] == [
        (1, "unknown_event_type"), (3, "not_an_object"), (4, "timestamp_in_future"),
        (5, "duplicate_event_id"), (6, "negative_watch_duration"),
    ]
    stored = read_stream_events(s.paths)
    assert sorted(stored["event_id"]) == ["e1", "e3"]
    assert set(stored["user_id"]) == {pseudonym("alice", KEY)}  # pseudonymised exactly as ingestion does
    quarantine = pd.read_parquet(next((s.paths.data / "stream" / "quarantine").glob("*.parquet")))
    assert len(quarantine) == 5 and set(quarantine["reason"]) >= {"unknown_event_type", "not_an_object"}
    assert not (s.paths.data / "stream" / ".staging").exists() or not any((s.paths.data / "stream" / ".staging").iterdir())
    # the realtime row pushed for the user
    row = pushed[-1].iloc[0]
    assert row["user_id"] == pseudonym("alice", KEY)
    assert (row["rt_events_1h"], row["rt_views_1h"], row["rt_engagements_1h"]) == (2, 1, 1)
    assert list(row["rt_last_viewed"]) == ["c1"]


def test_a_repeat_across_batches_is_a_duplicate_not_stored_twice(sink) -> None:
    s, _ = sink
    assert s.accept([ev(1)], NOW).accepted == 1
    again = s.accept([ev(1), ev(2)], NOW)
    assert (again.accepted, again.duplicates) == (1, 1)
    assert again.errors[0].index == 0 and again.errors[0].reason == "duplicate_event_id"
    assert sorted(read_stream_events(s.paths)["event_id"]) == ["e1", "e2"]


def test_realtime_window_forgets_events_older_than_an_hour() -> None:
    rt = RealtimeFeatures(last_n_viewed=2)
    t = int(NOW.timestamp())
    for i, c in enumerate(["a", "b", "c"]):
        rt.add("u", t - 7200 + i, "view", c)
    rt.add("u", t - 60, "like", "c")
    row = rt.row("u", t)
    assert (row["rt_events_1h"], row["rt_engagements_1h"], row["rt_views_1h"]) == (1, 1, 0)
    assert row["rt_last_viewed"] == ["c", "b"] and row["rt_last_event_ts_s"] == t - 60


def test_api_keys_and_the_token_bucket() -> None:
    keys = parse_api_keys("ingest:s3cret, mobile:other ,bare")
    assert key_name(keys, "s3cret") == "ingest" and key_name(keys, "bare") == "key2"
    assert key_name(keys, "nope") is None and key_name(keys, None) is None
    now = [0.0]
    limiter = RateLimiter(rate=5.0, burst=5.0, clock=lambda: now[0])
    assert [limiter.allow("k")[0] for _ in range(6)] == [True] * 5 + [False]
    assert limiter.allow("other")[0]  # per key
    allowed, wait = limiter.allow("k")
    assert not allowed and wait == pytest.approx(0.2)
    now[0] = 0.2
    assert limiter.allow("k")[0] and not limiter.allow("k")[0]
    now[0] = 10.0
    assert sum(limiter.allow("k")[0] for _ in range(10)) == 5  # the burst caps the refill


def test_workers_follow_each_others_events(tmp_path: Path) -> None:
    """Two server processes on one stream: what worker A accepts reaches worker B's listeners
    and real-time windows through B's follower (not pushed again: A pushed it), A's own files are
    not absorbed back by A, and a repeat of A's event id sent to B is a duplicate."""
    from components.serving.events import StreamFollower

    paths = DataPaths(tmp_path)
    pushed_a: list[pd.DataFrame] = []
    pushed_b: list[pd.DataFrame] = []
    a = EventSink(paths, key=KEY, limits=LIMITS, known_content={"c1", "c2"}, push=pushed_a.append)
    b = EventSink(paths, key=KEY, limits=LIMITS, known_content={"c1", "c2"}, push=pushed_b.append)
    seen_a: list[pd.DataFrame] = []
    seen_b: list[pd.DataFrame] = []
    a.listeners.append(seen_a.append)
    b.listeners.append(seen_b.append)
    follow_a, follow_b = StreamFollower(a), StreamFollower(b)
    assert a.accept([ev(1), ev(2, event_type="like", content_id="c2")], NOW).accepted == 2
    assert len(seen_a) == 1 and not seen_b
    assert follow_a.poll() == 0, "a worker must not absorb its own files"
    assert follow_b.poll() == 2 and follow_b.poll() == 0
    assert sorted(seen_b[0]["event_id"]) == ["e1", "e2"] and not pushed_b
    user = pseudonym("alice", KEY)
    assert b.realtime.row(user, int(NOW.timestamp()))["rt_engagements_1h"] == 1
    again = b.accept([ev(2, event_type="like", content_id="c2"), ev(3)], NOW)
    assert (again.accepted, again.duplicates) == (1, 1)
    # B's push for alice now counts A's events too: one worker's window holds them all
    assert pushed_b[-1].iloc[0]["rt_events_1h"] == 3
    assert follow_a.poll() == 1 and len(seen_a) == 2

