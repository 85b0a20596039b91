"""The impression log keeps rows whose write failed (issue 16: 3 of 3 rows were lost)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from components.serving import impressions
from components.serving.impressions import ImpressionLog


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"request_id": f"r{start + i}", "user_id": "u", "content_id": "c", "position": i,
             "timestamp": pd.Timestamp("2026-01-01", tz="UTC")} for i in range(n)]


def test_a_failed_background_write_keeps_its_rows_for_the_next_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = impressions.atomic_write_parquet
    failing = {"on": True}

    def write(path: Path, table: Any, **kw: Any) -> Path:
        if failing["on"]:
            raise OSError("disk full")
        return real(path, table, **kw)

    monkeypatch.setattr(impressions, "atomic_write_parquet", write)
    log = ImpressionLog(tmp_path / "imp", flush_every=3, clock=lambda: 0.0)
    log.add(_rows(3))  # full: handed to the background writer, which fails
    log.add(_rows(1, start=3))
    with pytest.raises(OSError, match="disk full"):
        log.flush()  # the failed batch and the buffered row are both kept
    assert len(log) == 4 and log.files == []
    failing["on"] = False
    path = log.flush()
    assert path is not None and len(log) == 0
    assert sorted(pd.read_parquet(path)["request_id"]) == ["r0", "r1", "r2", "r3"]
