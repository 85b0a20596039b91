"""Bounded, typed event input: per-record errors for deep nesting and bad Unicode with the
siblings kept, unknown keys dropped (never columns), short fields bounded, raw user ids never
in the quarantine (serving and batch ingestion), and reports only from established users."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from components.core.catalog import DataPaths
from components.data.ingestion.decode import KNOWN_KEYS, decode_jsonl, decode_records
from components.data.ingestion.process import ingest_frames
from components.data.ingestion.pseudonyms import pseudonym
from components.data.ingestion.rules import Limits
from components.serving.catalogue import Catalogue
from components.serving.events import EventSink
from components.serving.stream import ReportPolicy, StreamState
from tests.fixtures.params import project_params

NOW = pd.Timestamp("2026-06-03T12:00:00Z")
KEY = b"test-key"
LIMITS = Limits.from_params(project_params())
EMAIL = "jane.doe@example.com"


def ev(i: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"e{i}",
        "event_type": "like",
        "user_id": EMAIL,
        "content_id": "c1",
        "timestamp": (NOW - pd.Timedelta(minutes=5)).isoformat(),
    }
    base.update(over)
    return base


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deep_nesting_and_lone_surrogates_are_per_event_errors_with_the_siblings_kept(tmp_path: Path) -> None:
    s = EventSink(DataPaths(tmp_path), key=KEY, limits=LIMITS, known_content={"c1"})
    batch = [ev(0), ev(1, extra=nested(300)), ev(2, os="\ud800"), ev(3, **{"\udfff": 1}), ev(4), "x"]
    r = s.accept(batch, NOW)
    assert [(e.index, e.reason) for e in r.errors] == [
        (1, "too_deep"), (2, "invalid_unicode"), (3, "invalid_unicode"), (5, "not_an_object"),
    ]
    assert (r.accepted, r.rejected) == (2, 4) and r.reconciles()
    q = pd.read_parquet(next((tmp_path / "data/stream/quarantine").glob("*.parquet")))
    assert sorted(q["reason"]) == ["invalid_unicode", "invalid_unicode", "not_an_object", "too_deep"]
    assert all(len(raw) <= 4096 for raw in q["raw"])


def test_unknown_keys_are_dropped_and_counted_never_columns(tmp_path: Path) -> None:
    records = [ev(i, **{f"extra_key_{i}": i}) for i in range(3000)]
    d = decode_records(records, "api")
    assert set(d.frame.columns) <= KNOWN_KEYS | {"_record_no"} and d.dropped_keys == 3000
    s = EventSink(DataPaths(tmp_path), key=KEY, limits=LIMITS, known_content={"c1"})
    r = s.accept(records, NOW)
    assert (r.accepted, r.dropped_keys) == (3000, 3000)
    stored = pd.read_parquet(next((tmp_path / "data/stream/events").rglob("*.parquet")))
    assert not [c for c in stored.columns if c.startswith("extra_key_")]


def test_short_fields_are_bounded_field_too_long(tmp_path: Path) -> None:
    s = EventSink(DataPaths(tmp_path), key=KEY, limits=LIMITS, known_content={"c1"})
    cap = LIMITS.max_field_chars
    r = s.accept([ev(0, device_type="x" * cap), ev(1, network="y" * (cap + 1)), ev(2, os="z" * 2**20)], NOW)
    assert [(e.index, e.reason) for e in r.errors] == [(1, "field_too_long"), (2, "field_too_long")]
    assert f"max {cap}" in r.errors[0].detail and r.accepted == 1


def test_the_quarantine_never_holds_a_raw_user_id(tmp_path: Path) -> None:
    """Serving: every refused record's raw text has the user id pseudonymised. Batch ingestion:
    the same for JSON Lines records that fail validation and lines that do not even decode."""
    s = EventSink(DataPaths(tmp_path), key=KEY, limits=LIMITS, known_content={"c1"})
    s.accept([ev(0, event_type="teleport"), ev(1, extra=nested(40)), ev(2, os="\ud800"), ev(3, user_id=12345, event_type="x")], NOW)
    q = pd.read_parquet(next((tmp_path / "data/stream/quarantine").glob("*.parquet")))
    assert len(q) == 4 and not q["raw"].str.contains(EMAIL).any() and not q["raw"].str.contains("12345").any()
    assert q["raw"].str.contains(pseudonym(EMAIL, KEY)).sum() == 3
    lines = [json.dumps(ev(5, event_type="teleport")), '{"user_id": "' + EMAIL + '", "event_id": cut', json.dumps(ev(6))]
    d = decode_jsonl(("\n".join(lines) + "\n").encode(), "drop.jsonl")
    events, quarantine, _ = ingest_frames([d], known_content={"c1"}, key=KEY, now=NOW, limits=LIMITS)
    assert len(events) == 1 and sorted(quarantine["reason"]) == ["malformed_json", "unknown_event_type"]
    assert not quarantine["raw"].str.contains(EMAIL).any()
    assert quarantine["raw"].str.contains(pseudonym(EMAIL, KEY)).all()


def _state(known_users: list[str], threshold: int, policy: ReportPolicy, clock: list[float]) -> StreamState:
    rows = {u: i for i, u in enumerate(known_users)}
    artifacts = SimpleNamespace(
        snapshot=SimpleNamespace(row=lambda u: rows.get(u, -1)),
        known=np.ones(len(known_users), dtype=bool),
        item_vectors=np.zeros((2, 4), dtype=np.float32),
    )
    return StreamState(
        artifacts,  # type: ignore[arg-type]
        Catalogue(["c1", "c2"]),
        moderated=frozenset(),
        reporters={},
        threshold=threshold,
        vectors_lock=threading.Lock(),
        policy=policy,
        clock=lambda: clock[0],
    )


def _frame(rows: list[tuple[str, str, str]], received_s: float) -> pd.DataFrame:
    f = pd.DataFrame(rows, columns=["user_id", "content_id", "event_type"])
    f.attrs["received_s"] = received_s
    return f


def test_reports_from_invented_users_do_not_take_content_down() -> None:
    clock = [1_000_000.0]
    policy = ReportPolicy(threshold=3, min_user_events=2, min_user_age_s=3600, track_users=100)
    st = _state(["b1", "b2", "b3", "b4"], 3, policy, clock)
    st.observe(_frame([(f"fake{i}", "c1", "report") for i in range(4)], clock[0]))
    assert "c1" not in st.moderated and st.ignored_reports == 4
    # new users with events, reporting at once: not established yet (too young)
    st.observe(_frame([(f"new{i}", "c2", "view") for i in range(4)] * 2, clock[0]))
    st.observe(_frame([(f"new{i}", "c2", "report") for i in range(4)], clock[0] + 60))
    assert "c2" not in st.moderated
    # an hour later, with two accepted events each: established, their reports count
    st.observe(_frame([(f"new{i}", "c2", "report") for i in range(4)], clock[0] + 3601))
    assert "c2" in st.moderated
    # users the batch export knows count at once
    st.observe(_frame([(f"b{i}", "c1", "report") for i in range(1, 5)], clock[0]))
    assert "c1" in st.moderated and not st._reporters


def test_reporter_memory_is_bounded() -> None:
    clock = [0.0]
    policy = ReportPolicy(threshold=1000, min_user_events=0, min_user_age_s=0, track_users=50)
    st = _state([f"b{i}" for i in range(500)], 1000, policy, clock)
    st.observe(_frame([(f"b{i}", f"c{i}", "report") for i in range(500)], 0.0))
    assert len(st._reporters) == 50
    st.observe(_frame([(f"u{i}", "c1", "view") for i in range(500)], 0.0))
    assert len(st._history) == 50
