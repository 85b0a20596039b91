"""Ingestion: each bad input is quarantined with its reason; counts reconcile; ids pseudonymised."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.core import schema
from components.core.catalog import DataPaths
from components.data.ingest import run
from components.data.ingestion.decode import decode_jsonl
from components.data.ingestion.process import ingest_frames
from components.data.ingestion.pseudonyms import DEMO_HMAC_KEY, hmac_key_from_env, pseudonymise
from components.data.ingestion.rules import IngestError, Limits
from components.data.ingestion.store import read_events
from tests.fixtures.params import project_params

NOW = pd.Timestamp("2026-06-01T12:00:00Z")
KEY = b"test-key"
LIMITS = Limits.from_params(project_params())


def test_limits_follow_the_data_source_override() -> None:
    """``ingest.overrides.movielens`` moves the timestamp floor for MovieLens only."""
    assert LIMITS.min_timestamp == "2000-01-01T00:00:00Z"
    movielens = Limits.from_params(project_params(data={"source": "movielens"}))
    assert movielens.min_timestamp == "1995-01-01T00:00:00Z"
    assert Limits.from_params(project_params(data={"source": "kuairand"})) == LIMITS


def ev(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-ok",
        "event_type": "view",
        "user_id": "alice",
        "content_id": "c1",
        "timestamp": "2026-05-01T10:00:00Z",
        "watch_duration_s": 12.5,
        "device_type": "ios",
        "os": "ios",
        "network": "wifi",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def jsonl(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def ingest_bytes(data: bytes, known: set[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    d = decode_jsonl(data, "drop.jsonl")
    events, q, reports = ingest_frames(
        [d], known_content=known if known is not None else {"c1", "c2"}, key=KEY, now=NOW, limits=LIMITS
    )
    (rep,) = reports
    assert rep.n_in == rep.stored + rep.quarantined + rep.duplicates, rep
    assert len(events) == rep.stored
    assert len(q) == rep.quarantined + rep.duplicates
    return events, q, rep


def only_reason(q: pd.DataFrame) -> str:
    assert len(q) == 1, q
    return str(q["reason"].iloc[0])


def test_valid_event_is_stored_and_typed() -> None:
    events, q, rep = ingest_bytes(jsonl(ev()))
    assert rep.stored == 1 and len(q) == 0
    row = events.iloc[0]
    assert row["timestamp"] == pd.Timestamp("2026-05-01T10:00:00Z")
    assert row["watch_duration_s"] == 12.5
    assert not row["unknown_content"]


@pytest.mark.parametrize(
    ("record", "reason", "detail_part"),
    [
        (ev(user_id=_DROP), "missing_field", "'user_id'"),
        (ev(event_id=""), "missing_field", "'event_id'"),
        (ev(watch_duration_s=_DROP), "missing_field", "'watch_duration_s'"),
        (ev(event_type="comment", comment_text=None), "missing_field", "'comment_text'"),
        (ev(event_type="follow", content_id=None), "missing_field", "'creator_id'"),
        (ev(user_id=12345), "wrong_type", "'user_id' must be text"),
        (ev(watch_duration_s="long"), "wrong_type", "'watch_duration_s' must be a number"),
        (ev(watch_duration_s=True), "wrong_type", "'watch_duration_s'"),
        (ev(event_type="zap"), "unknown_event_type", "'zap'"),
        (ev(watch_duration_s=-3.0), "negative_watch_duration", "-3.0"),
        (ev(watch_duration_s=86_400.0), "absurd_watch_duration", "exceeds 10800"),
        (ev(timestamp="2027-01-01T00:00:00Z"), "timestamp_in_future", "in the future"),
        (ev(timestamp="1999-12-31T23:59:59Z"), "timestamp_before_2000", "before 2000"),
        (ev(timestamp="last tuesday"), "unparsable_timestamp", "last tuesday"),
        (ev(timestamp="2026-13-45T99:00:00Z"), "unparsable_timestamp", "2026-13-45"),
        (ev(event_type="comment", comment_text="x" * 5000), "text_too_long", "5000 characters"),
        (ev(user_id="u" * 500), "id_too_long", "'user_id'"),
        (ev(event_type="like", rating=9.0, watch_duration_s=None), "invalid_rating", "9.0"),
    ],
)
def test_bad_event_is_quarantined_with_reason(record: dict[str, Any], reason: str, detail_part: str) -> None:
    good = ev(event_id="e-good")
    events, q, rep = ingest_bytes(jsonl(good, {**record, "event_id": record.get("event_id", "e-bad")}))
    assert only_reason(q) == reason
    assert detail_part in q["detail"].iloc[0]
    assert q["record_no"].iloc[0] == 2
    assert rep.stored == 1 and events["event_id"].tolist() == ["e-good"]


def test_epoch_milliseconds_timestamp_is_accepted() -> None:
    events, q, _ = ingest_bytes(jsonl(ev(timestamp=1777629600000)))
    assert len(q) == 0
    assert events["timestamp"].iloc[0] == pd.Timestamp(1777629600000, unit="ms", tz="UTC")


def test_invalid_utf8_line_is_quarantined_and_others_kept() -> None:
    data = jsonl(ev(event_id="a")) + b'{"event_id": "\xff\xfe", "event_type": "view"}\n' + jsonl(ev(event_id="b"))
    events, q, rep = ingest_bytes(data)
    assert only_reason(q) == "invalid_utf8"
    assert q["record_no"].iloc[0] == 2
    assert sorted(events["event_id"]) == ["a", "b"]
    assert rep.n_in == 3


def test_truncated_last_line_is_reported_apart_from_malformed_json() -> None:
    data = jsonl(ev(event_id="a")) + b"{not json}\n" + b'{"event_id": "b", "event_ty'
    events, q, rep = ingest_bytes(data)
    assert dict(zip(q["record_no"], q["reason"], strict=True)) == {2: "malformed_json", 3: "truncated_line"}
    assert events["event_id"].tolist() == ["a"]
    assert rep.n_in == 3


def test_non_object_json_is_quarantined() -> None:
    _, q, _ = ingest_bytes(jsonl(ev()) + b"[1, 2, 3]\n")
    assert only_reason(q) == "not_an_object"


def test_empty_file_ingests_nothing_and_reconciles() -> None:
    events, q, rep = ingest_bytes(b"")
    assert (rep.n_in, rep.stored, rep.quarantined, rep.duplicates) == (0, 0, 0, 0)
    assert len(events) == 0 and len(q) == 0


def test_blank_lines_are_not_events() -> None:
    events, _, rep = ingest_bytes(jsonl(ev(event_id="a")) + b"\n   \n" + jsonl(ev(event_id="b")))
    assert rep.n_in == 2 and rep.blank_lines == 2 and len(events) == 2


def test_duplicate_event_id_keeps_first_and_counts_duplicate() -> None:
    data = jsonl(ev(event_id="a", watch_duration_s=1.0), ev(event_id="a", watch_duration_s=2.0), ev(event_id="b"))
    events, q, rep = ingest_bytes(data)
    assert rep.duplicates == 1 and rep.quarantined == 0 and rep.stored == 2
    assert only_reason(q) == "duplicate_event_id"
    assert events.set_index("event_id").loc["a", "watch_duration_s"] == 1.0


def test_duplicates_across_files_are_detected() -> None:
    d1 = decode_jsonl(jsonl(ev(event_id="a"), ev(event_id="b")), "one.jsonl")
    d2 = decode_jsonl(jsonl(ev(event_id="b"), ev(event_id="c")), "two.jsonl")
    events, q, reports = ingest_frames([d1, d2], known_content={"c1"}, key=KEY, now=NOW, limits=LIMITS)
    assert sorted(events["event_id"]) == ["a", "b", "c"]
    assert [(r.source, r.duplicates) for r in reports] == [("one.jsonl", 0), ("two.jsonl", 1)]
    assert q.loc[0, "source"] == "two.jsonl"


def test_unknown_content_is_kept_and_flagged() -> None:
    events, q, rep = ingest_bytes(jsonl(ev(event_id="a", content_id="c-new"), ev(event_id="b")))
    assert len(q) == 0 and rep.stored == 2
    flags = dict(zip(events["event_id"], events["unknown_content"], strict=True))
    assert flags == {"a": True, "b": False}


def test_content_uploaded_in_the_same_drop_is_known() -> None:
    upload = ev(
        event_id="up", event_type="content_upload", content_id="c-fresh", creator_id="cr1",
        metadata=json.dumps({"category": "dance"}), watch_duration_s=None,
    )
    events, q, _ = ingest_bytes(jsonl(upload, ev(event_id="v", content_id="c-fresh")))
    assert len(q) == 0
    assert not events["unknown_content"].any()


def test_first_failed_check_wins_and_detail_lists_all() -> None:
    _, q, _ = ingest_bytes(jsonl(ev(timestamp="2099-01-01T00:00:00Z", watch_duration_s=-1.0)))
    assert only_reason(q) == "timestamp_in_future"
    assert "negative" in q["detail"].iloc[0]


def test_every_event_type_with_its_fields_is_valid() -> None:
    extra = {
        "comment": {"comment_text": "nice"},
        "share": {"platform": "whatsapp"},
        "follow": {"creator_id": "cr1", "content_id": None},
        "unfollow": {"creator_id": "cr1", "content_id": None},
        "report": {"reason": "spam"},
        "content_upload": {"creator_id": "cr1", "metadata": "{}"},
    }
    records = [
        ev(event_id=f"e-{t}", event_type=t, **({} if t == "view" else {"watch_duration_s": None}), **extra.get(t, {}))
        for t in schema.EVENT_TYPES
    ]
    events, q, _ = ingest_bytes(jsonl(*records))
    assert len(q) == 0, q[["reason", "detail"]]
    assert sorted(events["event_type"]) == sorted(schema.EVENT_TYPES)


def test_user_ids_are_pseudonymised_deterministically() -> None:
    events, _, _ = ingest_bytes(jsonl(ev(event_id="a", user_id="alice"), ev(event_id="b", user_id="alice")))
    ids = set(events["user_id"])
    assert len(ids) == 1
    (pid,) = ids
    assert pid.startswith("u_") and "alice" not in pid and len(pid) == 26
    other = pseudonymise(pd.Series(["alice"], dtype="string[pyarrow]"), b"another-key")
    assert other.iloc[0] != pid


def test_hmac_key_required_outside_demo_mode() -> None:
    with pytest.raises(IngestError, match="RECO_HMAC_KEY is not set"):
        hmac_key_from_env({})
    assert hmac_key_from_env({"RECO_DEMO": "1"}) == DEMO_HMAC_KEY
    assert hmac_key_from_env({"RECO_HMAC_KEY": "s3cret"}) == b"s3cret"


def _write_drop(root: Path, files: dict[str, bytes | pd.DataFrame]) -> Path:
    drop = root / "drop"
    (drop / "events").mkdir(parents=True)
    for name, content in files.items():
        path = drop / "events" / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            pq.write_table(pa.Table.from_pandas(content, schema=schema.DROP_EVENT_SCHEMA, preserve_index=False), path)
    content_tbl = pd.DataFrame({"content_id": ["c1", "c2"], "creator_id": ["cr1", "cr1"], "category": ["dance", "food"], "duration_s": [10.0, 0.0]})
    pq.write_table(pa.Table.from_pylist(content_tbl.to_dict("records"), schema=schema.CONTENT_SCHEMA), drop / "content.parquet")
    pq.write_table(pa.Table.from_pylist([{"user_id": "alice", "age_group": "25-34"}], schema=schema.USER_SCHEMA), drop / "users.parquet")
    return drop


def test_run_writes_partitioned_store_quarantine_and_metrics(tmp_path: Path) -> None:
    parquet_events = pd.DataFrame(
        [
            {**{f: None for f in schema.DROP_EVENT_SCHEMA.names}, **ev(event_id="p1", timestamp=pd.Timestamp("2026-05-02T01:00:00Z"))},
            {**{f: None for f in schema.DROP_EVENT_SCHEMA.names}, **ev(event_id="p2", timestamp=pd.Timestamp("2026-05-03T01:00:00Z"), watch_duration_s=-5.0)},
        ]
    )
    drop = _write_drop(
        tmp_path,
        {
            "a.jsonl": jsonl(ev(event_id="j1"), ev(event_id="j1"), ev(event_id="j2", event_type="zap")) + b'{"trunc',
            "b.parquet": parquet_events,
            "empty.jsonl": b"",
        },
    )
    paths = DataPaths(tmp_path / "project")
    result = run(project_params(base={"seed": 1}), drop, paths, now=NOW, key=KEY)
    assert result.reconciles()
    assert (result.n_in, result.stored, result.quarantined, result.duplicates) == (6, 2, 3, 1)
    assert result.empty_files == 1
    assert result.reasons == {"duplicate_event_id": 1, "negative_watch_duration": 1, "truncated_line": 1, "unknown_event_type": 1}

    stored = read_events(paths.raw_events)
    assert sorted(stored["event_id"]) == ["j1", "p1"]
    assert sorted(p.name for p in paths.raw_events.iterdir()) == ["event_date=2026-05-01", "event_date=2026-05-02"]
    assert not stored["user_id"].str.contains("alice").any()

    q = pq.read_table(paths.quarantine / "quarantine.parquet")
    assert q.schema.equals(schema.QUARANTINE_SCHEMA, check_metadata=False)
    assert sorted(q.column("reason").to_pylist()) == sorted(result.reasons.keys())

    metrics = json.loads((paths.metrics / "ingest.json").read_text())
    assert metrics["n_in"] == 6 and metrics["reconciled"] is True
    users = pq.read_table(paths.raw / "users.parquet").to_pandas()
    assert users["user_id"].tolist() == stored["user_id"].unique().tolist()


def test_run_without_event_files_is_a_clear_error(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "events").mkdir(parents=True)
    with pytest.raises(IngestError, match="no event files"):
        run(project_params(base={"seed": 1}), drop, DataPaths(tmp_path), now=NOW, key=KEY)


def test_run_dedupes_across_parquet_and_jsonl_files(tmp_path: Path) -> None:
    def frame(ids: list[str]) -> pd.DataFrame:
        rows = [{**{f: None for f in schema.DROP_EVENT_SCHEMA.names}, **ev(event_id=i, timestamp=pd.Timestamp("2026-05-02T01:00:00Z"))} for i in ids]
        return pd.DataFrame(rows)

    drop = _write_drop(
        tmp_path,
        {
            "1.parquet": frame(["a", "b", "b"]),
            "2.parquet": frame(["c", "a"]),
            # the first copy of "d" is invalid, so the later valid copy is stored
            "3.jsonl": jsonl(ev(event_id="d", watch_duration_s=-1.0), ev(event_id="d"), ev(event_id="c")),
        },
    )
    paths = DataPaths(tmp_path / "project")
    result = run(project_params(base={"seed": 1}), drop, paths, now=NOW, key=KEY)
    assert (result.n_in, result.stored, result.quarantined, result.duplicates) == (8, 4, 1, 3)
    assert sorted(read_events(paths.raw_events)["event_id"]) == ["a", "b", "c", "d"]
    assert [(f.source, f.duplicates) for f in result.files] == [
        ("events/1.parquet", 1), ("events/2.parquet", 1), ("events/3.jsonl", 1),
    ]
