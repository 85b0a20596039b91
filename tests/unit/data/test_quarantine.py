"""The reject path: column-wise reasons, details and raw JSON; zero stored events is a clear error."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.core import schema
from components.core.catalog import DataPaths
from components.data.ingest import NothingStored, run
from components.data.ingestion.decode import decode_jsonl
from components.data.ingestion.rawjson import json_objects
from components.data.ingestion.rules import Limits
from components.data.ingestion.validate import validate_events
from tests.fixtures.params import project_params

NOW = pd.Timestamp("2026-06-01T12:00:00Z")
LIMITS = Limits.from_params(project_params())


def ev(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e",
        "event_type": "view",
        "user_id": "alice",
        "content_id": "c1",
        "timestamp": "2026-05-01T10:00:00Z",
        "watch_duration_s": 12.5,
    }
    return {**base, **over}


def test_many_rejects_each_get_their_reason_detail_and_raw_record() -> None:
    """Rows failing one or several checks, side by side: one quarantine row each, the reason of
    highest precedence, every failed check in the detail, the record itself as JSON."""
    records = [
        ev(event_id="ok"),
        ev(event_id="old", timestamp="1997-09-20T08:00:00Z"),
        ev(event_id="old+neg", timestamp="1997-09-20T08:00:00Z", watch_duration_s=-1.0),
        ev(event_id="zap", event_type="zap", comment_text='he said "hi"\nthen\\left é'),
        ev(event_id="nouser", user_id=None),
        ev(event_id="ok2"),
        ev(event_id="typ", user_id=7, rating=9.0),
        ev(event_id="long", content_id="c" * 300),
    ]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    d = decode_jsonl(data, "drop.jsonl")
    v = validate_events(d.frame, "drop.jsonl", NOW, LIMITS)

    assert sorted(v.valid["event_id"].to_pylist()) == ["ok", "ok2"]
    q = v.rejected.set_index("record_no")
    assert list(q.index) == [2, 3, 4, 5, 7, 8]  # record order, once each
    assert q["reason"].to_dict() == {
        2: "timestamp_before_2000",
        3: "timestamp_before_2000",
        4: "unknown_event_type",
        5: "missing_field",
        7: "wrong_type",
        8: "id_too_long",
    }
    assert q.loc[2, "detail"] == "timestamp 1997-09-20T08:00:00.000Z is before 2000-01-01T00:00:00Z"
    assert q.loc[3, "detail"].split("; ") == [
        "timestamp 1997-09-20T08:00:00.000Z is before 2000-01-01T00:00:00Z",
        "watch_duration_s -1.0 is negative",
    ]
    assert q.loc[4, "detail"].startswith("event_type 'zap' is not one of like, ")
    assert "required field 'user_id' is missing or empty for event_type='view'" in q.loc[5, "detail"]
    assert q.loc[7, "detail"].split("; ") == ["field 'user_id' must be text, got int 7", "rating 9.0 outside [0, 5]"]
    assert q.loc[8, "detail"] == "field 'content_id' has 300 characters (max 128)"
    assert (q["source"] == "drop.jsonl").all()
    for no, raw in q["raw"].items():  # the record as it came, every field of the drop
        sent = records[no - 1]
        back = json.loads(raw)
        assert {k: back[k] for k in sent} == sent
        assert all(back[k] is None for k in back if k not in sent)


def test_json_objects_are_valid_json_of_every_column_type() -> None:
    frame = pd.DataFrame(
        {
            "text": pd.array(['a "q"', None, "tab\there / é"], dtype=pd.StringDtype("pyarrow")),
            "num": [1.5, np.nan, math.inf],
            "int": [1, 2, 3],
            "flag": [True, False, True],
            "when": pd.to_datetime(["1997-01-01 00:00:00.123", None, "2026-01-01"], utc=True, format="ISO8601"),
            "mixed": [{"k": [1, 2]}, None, 1_700_000_000_000],
            "empty": [None, None, None],
        }
    )
    rows = [json.loads(s) for s in json_objects(frame).to_pylist()]
    assert rows[0] == {"text": 'a "q"', "num": 1.5, "int": 1, "flag": True, "when": "1997-01-01T00:00:00.123Z", "mixed": {"k": [1, 2]}, "empty": None}
    assert rows[1] == {"text": None, "num": None, "int": 2, "flag": False, "when": None, "mixed": None, "empty": None}
    assert rows[2]["text"] == "tab\there / é" and rows[2]["num"] == "Infinity" and rows[2]["mixed"] == 1_700_000_000_000
    assert json_objects(frame.iloc[:0]).to_pylist() == []


def test_no_lower_timestamp_bound_when_none() -> None:
    old = decode_jsonl(json.dumps(ev(timestamp="1997-09-20T08:00:00Z")).encode() + b"\n", "d")
    assert len(validate_events(old.frame, "d", NOW, LIMITS).valid) == 0
    naive = LIMITS.model_copy(update={"min_timestamp": "1998-01-01"})  # no zone: UTC, still a bound
    assert validate_events(old.frame, "d", NOW, naive).rejected["reason"].tolist() == ["timestamp_before_2000"]
    unbounded = LIMITS.model_copy(update={"min_timestamp": None})
    v = validate_events(old.frame, "d", NOW, unbounded)
    assert len(v.valid) == 1 and len(v.rejected) == 0


def _drop(root: Path, n_old: int, n_bad_rating: int) -> Path:
    rows = [
        {**{f: None for f in schema.DROP_EVENT_SCHEMA.names}, **ev(event_id=f"o{i}", timestamp=pd.Timestamp("1997-09-20T08:00:00Z"))}
        for i in range(n_old)
    ] + [
        {**{f: None for f in schema.DROP_EVENT_SCHEMA.names}, **ev(event_id=f"r{i}", timestamp=pd.Timestamp("2026-05-01T08:00:00Z"), rating=9.0)}
        for i in range(n_bad_rating)
    ]
    drop = root / "drop"
    (drop / "events").mkdir(parents=True)
    table = pa.Table.from_pandas(pd.DataFrame(rows), schema=schema.DROP_EVENT_SCHEMA, preserve_index=False)
    pq.write_table(table, drop / "events" / "part-00000.parquet")
    pq.write_table(pa.Table.from_pylist([{"content_id": "c1"}], schema=schema.CONTENT_SCHEMA), drop / "content.parquet")
    pq.write_table(pa.Table.from_pylist([{"user_id": "alice"}], schema=schema.USER_SCHEMA), drop / "users.parquet")
    return drop


def test_zero_stored_events_is_an_error_naming_the_dominant_reason(tmp_path: Path) -> None:
    """Once ``ArrowInvalid: No match for FieldRef.Name(event_id)`` in the next stage."""
    paths = DataPaths(tmp_path / "project")
    with pytest.raises(NothingStored) as exc:
        run(project_params(), _drop(tmp_path, n_old=30, n_bad_rating=5), paths, now=NOW, key=b"k")
    message = str(exc.value)
    assert "all 35 records were quarantined" in message
    assert "dominant reason 'timestamp_before_2000' (30 records, 86%)" in message
    assert "is before 2000-01-01T00:00:00Z" in message and "'invalid_rating': 5" in message
    # nothing lost: the quarantine and the metrics are written before the error
    q = pq.read_table(paths.of("quarantine_records")).to_pandas()
    assert len(q) == 35 and q["record_no"].is_unique
    assert exc.value.result.reconciles() and exc.value.result.quarantined == 35
    assert json.loads(paths.of("metrics_ingest").read_text())["stored"] == 0
