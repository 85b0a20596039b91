"""Both real data sets flow through import → ingest → preprocess with reconciled counts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.core.catalog import PROJECT_ROOT, DataPaths
from components.core.config import load_params
from components.data import realdata
from components.data.ingest import run as ingest_run
from components.data.ingestion.store import read_events
from components.data.preprocess import run as preprocess_run

NOW = pd.Timestamp("2026-11-01T00:00:00Z")


@pytest.mark.parametrize(
    ("dataset", "folder", "input_rows", "events", "users", "contents"),
    [
        ("kuairand", "kuairand-subset", 41_828, 104_864, 664, 9_359),
        ("movielens", "ml-latest-small", 100_836, 155_388, 610, 9_724),
    ],
)
def test_real_data_set_end_to_end(
    tmp_path: Path, dataset: str, folder: str, input_rows: int, events: int, users: int, contents: int
) -> None:
    drop = tmp_path / "drop"
    out = realdata.run(dataset, PROJECT_ROOT / "datasets" / folder, drop)
    recon = json.loads((drop / "reconciliation.json").read_text())
    assert recon["input_rows"] == input_rows and recon["events"] == events
    assert out.reconciliation["events"] == events

    params = load_params()
    params["data"] = {"source": dataset}
    paths = DataPaths(tmp_path / "project")
    ing = ingest_run(params, drop, paths, now=NOW, key=b"test-key")
    # Every event accounted for; these curated sets have no invalid or repeated events.
    assert ing.reconciles()
    assert (ing.n_in, ing.stored, ing.quarantined, ing.duplicates) == (events, events, 0, 0)
    assert ing.users == users
    assert ing.contents == contents  # distinct content ids with at least one event
    assert ing.unknown_content == 0

    stored = read_events(paths.raw_events, columns=["user_id", "event_type"])
    assert not stored["user_id"].str.startswith(("kr_u", "ml_u")).any()  # pseudonymised

    pre = preprocess_run(params, paths)
    assert pre.events_in == pre.events_out == events
    sessions = pq.read_table(paths.interim / "sessions.parquet").to_pandas()
    assert sessions["n_events"].sum() == events
    assert sessions["user_id"].nunique() == users
    clean = pq.read_table(paths.interim / "events.parquet").to_pandas()
    # sessions never span a gap over 30 minutes
    gaps = clean.groupby("session_id")["timestamp"].diff().dropna()
    assert (gaps <= pd.Timedelta(minutes=30)).all()
    if dataset == "kuairand":
        views = clean[clean["event_type"] == "view"]
        assert views["watch_duration_s"].notna().all()
        content = pq.read_table(paths.interim / "content.parquet").to_pandas()
        assert content["duration_imputed"].sum() == 1_200  # unknown durations, imputed and flagged
        assert content["duration_s"].notna().all()
