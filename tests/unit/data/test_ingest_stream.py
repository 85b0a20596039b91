"""Served traffic back into the batch pipeline: the API's event stream (written by the real
EventSink) is ingested after the drop, exactly once by event_id, uploads joining the content table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core import schema
from components.core.catalog import DataPaths
from components.data.ingest import run
from components.data.ingestion.pseudonyms import pseudonym
from components.data.ingestion.rules import Limits
from components.data.ingestion.store import read_events
from components.serving.events import EventSink
from tests.fixtures.params import project_params

NOW = pd.Timestamp("2026-06-01T12:00:00Z")
KEY = b"stream-test-key"


def ev(event_id: str, kind: str = "view", content: str | None = "c1", user: str = "alice", **extra: Any) -> dict[str, Any]:
    watch = {"watch_duration_s": 3.0} if kind == "view" else {}
    return {"event_id": event_id, "event_type": kind, "user_id": user, "content_id": content, "timestamp": "2026-05-01T10:00:00Z", **watch, **extra}


def _drop(root: Path) -> Path:
    drop = root / "drop"
    (drop / "events").mkdir(parents=True)
    (drop / "events" / "part-00000.jsonl").write_text("".join(json.dumps(e) + "\n" for e in (ev("e1"), ev("e2", content="c2"))))
    content = [{"content_id": "c1", "creator_id": "k1"}, {"content_id": "c2", "creator_id": "k1"}]
    pq.write_table(pa.Table.from_pylist(content, schema=schema.CONTENT_SCHEMA), drop / "content.parquet")
    pq.write_table(pa.Table.from_pylist([{"user_id": "alice"}], schema=schema.USER_SCHEMA), drop / "users.parquet")
    return drop


def test_stream_events_are_ingested_once_with_their_uploads(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "project")
    params = project_params()
    sink = EventSink(paths, key=KEY, limits=Limits.from_params(params), known_content={"c1", "c2"})
    meta = json.dumps({"category": "pets", "tags": ["#cat"], "description": "a cat", "duration_s": 12.0})
    upload = ev("u1", "content_upload", content="c9", user="user_k2", creator_id="k2", metadata=meta)
    first = [ev("e2", content="c2"), ev("e3", user="bob"), upload, ev("e4", "like", content="c9", user="bob")]
    assert sink.accept(first, NOW).accepted == 4
    assert sink.accept(first, NOW).duplicates == 4  # a retried batch is not stored again
    assert sink.accept([ev("e5", content="c2", user="bob"), ev("e6", "view", content="c1", user="bob")], NOW).accepted == 2

    drop = _drop(tmp_path)
    for _ in range(2):  # a re-run rebuilds the raw store: still once each
        result = run(params, drop, paths, now=NOW, key=KEY, stream_dir=paths.of("stream_events"))
        stored = read_events(paths.raw_events)
        assert sorted(stored["event_id"]) == ["e1", "e2", "e3", "e4", "e5", "e6", "u1"]
        # e2 came from the drop and again through the API: stored once, counted as a duplicate
        assert result.stream == {"n_in": 6, "stored": 5, "quarantined": 0, "duplicates": 1, "batches": 2, "uploads": 1}
        assert result.n_in == 2 and result.stored == 2  # the drop's own counts are unchanged
    # the stream's users are pseudonyms already: the same as the drop's for the same person
    users = dict(zip(stored["event_id"], stored["user_id"], strict=True))
    assert users["e1"] == pseudonym("alice", KEY) == users["e2"]
    assert users["e3"] == pseudonym("bob", KEY)
    assert not stored.set_index("event_id").loc["e4", "unknown_content"]  # c9 was uploaded
    content = pq.read_table(paths.of("raw_content")).to_pandas().set_index("content_id")
    assert content.loc["c9", "category"] == "pets" and content.loc["c9", "creator_id"] == "k2"
    metrics = json.loads(paths.of("metrics_ingest").read_text())
    assert metrics["stream"]["duplicates"] == 1 and metrics["reconciled"]


def test_a_stream_event_failing_todays_rules_is_quarantined(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "project")
    sink = EventSink(paths, key=KEY, limits=Limits.from_params(project_params()), known_content={"c1"})
    assert sink.accept([ev("s1", user="bob"), ev("s2", user="bob", watch_duration_s=5000.0)], NOW).accepted == 2
    strict = project_params(ingest={"max_watch_duration_s": 1000})  # the rules changed since
    result = run(strict, _drop(tmp_path), paths, now=NOW, key=KEY, stream_dir=paths.of("stream_events"))
    assert result.stream["stored"] == 1 and result.stream["quarantined"] == 1
    q = pq.read_table(paths.of("quarantine_records")).to_pandas()
    row = q[q["source"].str.startswith("stream:")]
    assert row["reason"].tolist() == ["absurd_watch_duration"]
