"""The impression log reader of the gates, the monitor, the KPIs and the experiments: one
unreadable file is quarantined with its reason and the rest is read, instead of one torn file
stopping every later analysis."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from components.experiments.outcomes import read_impression_log


def _log_file(folder: Path, name: str, n: int, arm: str) -> None:
    pd.DataFrame(
        {
            "request_id": [f"{name}-{i}" for i in range(n)],
            "user_id": [f"u{i}" for i in range(n)],
            "content_id": [f"c{i}" for i in range(n)],
            "arm": arm,
            "timestamp": pd.Timestamp("2026-01-20", tz="UTC") + pd.to_timedelta(range(n), unit="s"),
        }
    ).to_parquet(folder / f"impressions-{name}.parquet", index=False)


def test_an_unreadable_file_is_quarantined_and_the_rest_is_read(tmp_path: Path) -> None:
    _log_file(tmp_path, "a", 5, "production")
    (tmp_path / "impressions-b.parquet").write_bytes(b"PAR1 torn by a crash")
    _log_file(tmp_path, "c", 3, "canary")
    out = read_impression_log(tmp_path, ["request_id", "user_id", "content_id", "arm", "timestamp"])
    assert len(out) == 8 and set(out["arm"]) == {"production", "canary"}
    assert not (tmp_path / "impressions-b.parquet").exists()
    assert (tmp_path / "quarantine" / "impressions-b.parquet").read_bytes() == b"PAR1 torn by a crash"
    reason = json.loads((tmp_path / "quarantine" / "impressions-b.parquet.reason.json").read_text())
    assert reason["file"] == "impressions-b.parquet" and reason["reason"]
    # the next reader does not meet it again
    assert len(read_impression_log(tmp_path)) == 8
