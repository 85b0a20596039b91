"""The features stage end to end on the vendored KuaiRand subset (real Kuaishou interactions):
realdata -> ingest -> preprocess -> features in a temporary root; row counts and spot values are
checked against numbers computed straight from ``interactions.tsv``."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from components.core.catalog import PROJECT_ROOT, DataPaths
from components.core.config import load_params
from components.data import ingest, preprocess, realdata
from components.data.ingestion.pseudonyms import pseudonymise
from components.features.columns import FILES
from components.features.compute import FeaturesResult
from components.features.compute import run as features_run

SRC = PROJECT_ROOT / "datasets" / "kuairand-subset"
KEY = b"kuairand-test-key"
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def kuairand(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataPaths, FeaturesResult]:
    root = tmp_path_factory.mktemp("kuairand")
    paths = DataPaths(root)
    drop = root / "drop"
    realdata.run("kuairand", SRC, drop)
    params = load_params()
    ingest.run(params, drop, paths, now=pd.Timestamp("2026-01-01", tz="UTC"), key=KEY)
    preprocess.run(params, paths)
    return paths, features_run(params, paths)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    df = pd.read_csv(SRC / "interactions.tsv", sep="\t")
    df["day_end"] = (df["time_ms"] // DAY_MS + 1) * DAY_MS
    return df


def test_row_counts_match_the_raw_interactions(kuairand, raw) -> None:
    paths, result = kuairand
    assert result.rows["user"] == raw[["user_id", "day_end"]].drop_duplicates().shape[0]
    assert result.rows["content"] == raw[["video_id", "day_end"]].drop_duplicates().shape[0]
    assert result.rows["content_profile"] == raw["video_id"].nunique() == 9359
    assert result.rows["creator"] == 0  # the subset has no creator ids
    assert result.entities["user"] == raw["user_id"].nunique() == 664
    metrics = json.loads((paths.metrics / "features.json").read_text())
    assert metrics["rows"] == result.rows and metrics["events"] > len(raw)
    assert (
        metrics["first_snapshot"]
        == pd.Timestamp(raw["day_end"].min(), unit="ms", tz="UTC").isoformat()
    )


def test_spot_values_of_the_busiest_user_and_video(kuairand, raw) -> None:
    paths, _ = kuairand
    users = pd.read_parquet(paths.features / FILES["user"])
    uid = int(raw["user_id"].value_counts().idxmax())
    pseudo = pseudonymise(pd.Series([f"kr_u{uid}"], dtype="string"), KEY).iloc[0]
    mine = users[users["user_id"] == pseudo].sort_values("event_timestamp")
    assert len(mine) == raw.loc[raw["user_id"] == uid, "day_end"].nunique()
    r = mine.iloc[len(mine) // 2]
    T = int(r["event_timestamp"].value // 1_000_000)
    rows = raw[(raw["user_id"] == uid) & (raw["time_ms"] < T)]
    week = rows[rows["time_ms"] >= T - 7 * DAY_MS]
    day = rows[rows["time_ms"] >= T - DAY_MS]
    assert r["u_view_7d"] == len(week) and r["u_view_24h"] == len(day)
    assert r["u_like_24h"] == int((day["label"] == 1).sum()) and r["u_hide_7d"] == int(
        (week["label"] == 0).sum()
    )
    assert r["u_complete_view_7d"] == int(week["long_view"].sum())
    engaged = (
        (rows["label"] == 1).sum()
        + rows["is_comment"].sum()
        + rows["is_forward"].sum()
        + rows["is_follow"].sum()
    )
    assert r["u_n_engagements"] == int(engaged)
    assert r["u_hours_since_last_event"] == pytest.approx((T - rows["time_ms"].max()) / 3_600_000)
    latest = rows[rows["time_ms"] == rows["time_ms"].max()]
    assert r["rt_last_viewed"][0] in {f"kr_v{v}" for v in latest["video_id"]}
    assert r["u_device_share_ios"] != r["u_device_share_ios"]  # NaN: no device in the data

    content = pd.read_parquet(paths.features / FILES["content"])
    vid = int(raw["video_id"].value_counts().idxmax())
    c = content[content["content_id"] == f"kr_v{vid}"].sort_values("event_timestamp").iloc[-1]
    T = int(c["event_timestamp"].value // 1_000_000)
    seen = raw[(raw["video_id"] == vid) & (raw["time_ms"] < T)]
    assert c["c_n_view"] == len(seen) and c["c_n_like"] == int((seen["label"] == 1).sum())
    assert c["c_like_rate"] == pytest.approx((seen["label"] == 1).mean())
    assert c["c_completion_rate"] == pytest.approx(seen["long_view"].mean())
    assert c["c_n_comment"] == int(seen["is_comment"].sum())
    assert pd.isna(c["c_age_hours"])  # upload time unknown in the subset
