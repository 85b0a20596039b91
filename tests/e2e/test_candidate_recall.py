"""generate → ingest → preprocess → embeddings → candidates on a tiny synthetic set.

Asserts on the contents: the merged candidate set beats popularity on the time-based
hold-out, the approximate index agrees with exact search, the candidates exclude what users
already saw, the index is a versioned artefact, and a second run gives identical metrics.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.core.catalog import DataPaths
from components.core.config import load_params
from components.data import datagen
from components.data.ingest import run as ingest_run
from components.data.preprocess import run as preprocess_run
from components.retrieval import candidates, embeddings
from components.retrieval.index import ContentIndex
from components.retrieval.params import SOURCES

pytestmark = pytest.mark.slow

TINY = {"n_users": 300, "n_items": 900, "n_creators": 60, "n_events": 40_000, "days": 7}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataPaths, dict]:
    root = tmp_path_factory.mktemp("cand")
    params = load_params()
    params["datagen"] = {**params["datagen"], **TINY}
    params["data"] = {"source": "synthetic"}
    drop = root / "data" / "drops" / "synthetic"
    datagen.run(params, drop)
    paths = DataPaths(root)
    ingest_run(params, drop, paths, now=pd.Timestamp("2100-01-01", tz="UTC"), key=b"e2e-key")
    preprocess_run(params, paths)
    embeddings.run(params, paths)
    candidates.run(params, paths)
    return paths, params


def test_merged_candidates_beat_popularity(project: tuple[DataPaths, dict]) -> None:
    paths, _ = project
    m = json.loads((paths.metrics / "candidates.json").read_text())
    ev = m["evaluation"]
    assert ev["test_users"] > 100 and ev["test_positives"] > 300
    rec = ev["recall"]
    assert set(rec) == {*SOURCES, "merged", "popularity"}
    assert rec["merged"]["@100"] > 1.5 * rec["popularity"]["@100"]
    assert rec["merged"]["@500"] > rec["popularity"]["@500"]
    assert rec["merged"]["@100"] <= rec["merged"]["@500"] <= rec["merged"]["@1000"]
    assert ev["index"]["recall@100"] >= 0.95 and ev["index"]["recall@500"] >= 0.95
    assert "seconds" not in json.dumps(m)  # no timings in DVC metrics
    emb = json.loads((paths.metrics / "embeddings.json").read_text())
    assert emb["unified_blocks"]["collaborative"] > 0 and emb["unified_blocks"]["category"] > 0
    assert emb["neighbour_category_agreement@10"]["unified"] > 0.8


def test_candidates_exclude_seen_and_index_is_versioned(project: tuple[DataPaths, dict]) -> None:
    paths, params = project
    table = pq.read_table(paths.of("candidates_table")).to_pandas()
    assert list(table.columns) == ["user_id", "content_id", "score", "source", "rank"]
    assert table.groupby("user_id").size().max() == params["candidates"]["per_user"]
    assert not table.duplicated(["user_id", "content_id"]).any()
    events = pq.read_table(paths.interim / "events.parquet", columns=["user_id", "content_id", "event_type"]).to_pandas()
    seen = events[events["content_id"].notna() & (events["event_type"] != "content_upload")][["user_id", "content_id"]]
    clash = table.merge(seen.drop_duplicates(), on=["user_id", "content_id"])
    assert clash.empty
    root = paths.of("faiss_index")
    version = (root / "LATEST").read_text().strip()
    manifest = json.loads((root / version / "manifest.json").read_text())
    assert manifest["version"] == version and manifest["type"] == params["candidates"]["index"]["type"]
    index = ContentIndex.load(root)
    assert index.ntotal == manifest["ntotal"] == len(index.content_ids)


def test_rerun_gives_identical_metrics(project: tuple[DataPaths, dict]) -> None:
    paths, params = project
    before = {n: (paths.metrics / n).read_text() for n in ("embeddings.json", "candidates.json")}
    embeddings.run(params, paths)
    candidates.run(params, paths)
    after = {n: (paths.metrics / n).read_text() for n in before}
    assert after == before
