"""Unit tests for the synthetic drop generator, on a tiny world (the whole file runs in seconds)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from components.core.config import deep_merge
from components.core.schema import (
    CONTENT_SCHEMA,
    DROP_EVENT_SCHEMA,
    EVENT_TYPES,
    REQUIRED_FIELDS,
    USER_SCHEMA,
)
from components.data.datagen import GenSummary, main, run, write_drop
from components.data.synthetic.constants import TRUTH_SCHEMA
from components.data.synthetic.params import GenParams
from tests.fixtures.params import project_params

SMALL = GenParams(
    seed=7,
    n_users=150,
    n_items=400,
    n_creators=40,
    n_categories=8,
    n_events=40_000,
    start="2026-01-05",
    days=7,
    bad_event_rate=0.005,
    exploration_share=0.1,
    chunk_events=15_000,
)
START = pd.Timestamp(SMALL.start, tz="UTC")
END = START + pd.Timedelta(days=SMALL.days)
THIRTY_MIN = 30 * 60


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenSummary]:
    out = tmp_path_factory.mktemp("drop")
    return out, write_drop(SMALL, out)


@pytest.fixture(scope="module")
def content(drop: tuple[Path, GenSummary]) -> pd.DataFrame:
    return pq.read_table(drop[0] / "content.parquet").to_pandas()


@pytest.fixture(scope="module")
def events(drop: tuple[Path, GenSummary], content: pd.DataFrame) -> pd.DataFrame:
    """All events in file order, with a ``bad`` flag recomputed from the values alone."""
    parts = sorted((drop[0] / "events").glob("part-*.parquet"))
    ev = pd.concat([pq.read_table(f).to_pandas() for f in parts], ignore_index=True)
    ev["neg_watch"] = ev["watch_duration_s"] < 0
    ev["future"] = ev["timestamp"] >= END
    ev["zap"] = ev["event_type"] == "zap"
    ev["unknown_content"] = ev["content_id"].notna() & ~ev["content_id"].isin(content["content_id"])
    ev["dup_id"] = ev["event_id"].duplicated(keep="first")  # the copy comes after its original
    ev["bad"] = ev[["neg_watch", "future", "zap", "unknown_content", "dup_id"]].any(axis=1)
    return ev


@pytest.fixture(scope="module")
def truth(drop: tuple[Path, GenSummary]) -> pd.DataFrame:
    return pq.read_table(drop[0] / "truth.parquet").to_pandas()


@pytest.fixture(scope="module")
def good_user_events(events: pd.DataFrame) -> pd.DataFrame:
    """Valid events of real users (not the creators' upload pseudo users), sorted per user."""
    ev = events[~events["bad"] & events["user_id"].str.fullmatch(r"user_\d+")]
    return ev.sort_values(["user_id", "timestamp"], kind="stable")


# --- params -------------------------------------------------------------------------------------


def test_from_params_reads_base_seed_and_datagen_section() -> None:
    params = project_params(base={"seed": 3}, datagen={"n_users": 10, "start": dt.date(2026, 2, 1), "bad_event_rate": 0})
    p = GenParams.from_params(params)
    assert p.seed == 3
    assert p.n_users == 10
    assert p.start == "2026-02-01"  # YAML's unquoted date is accepted
    assert p.bad_event_rate == 0.0 and isinstance(p.bad_event_rate, float)
    assert p.n_items == params["datagen"]["n_items"]  # the rest from params.yaml
    assert p.end_ms - p.start_ms == params["datagen"]["days"] * 86_400_000


def _without(section: str, key: str) -> dict[str, Any]:
    raw = project_params()
    del raw[section][key]
    return raw


@pytest.mark.parametrize(
    ("params", "where"),
    [
        (_without("base", "seed"), "base.seed: missing key"),
        (_without("datagen", "n_events"), "datagen.n_events: missing key"),
        (deep_merge(project_params(), {"datagen": {"seed": 2}}), "datagen.seed: unknown key"),  # seeds only from base
        (deep_merge(project_params(), {"datagen": {"n_userz": 2}}), "datagen.n_userz: unknown key"),  # typo
    ],
)
def test_from_params_rejects_bad_sections(params: dict[str, Any], where: str) -> None:
    with pytest.raises(ValueError, match=re.escape(where)):
        GenParams.from_params(params)


@pytest.mark.parametrize(
    "change",
    [
        {"n_events": 0},
        {"n_users": -1},
        {"bad_event_rate": 0.7},
        {"exploration_share": 1.5},
        {"start": "next monday"},
        {"seed": -1},
    ],
)
def test_invalid_params_raise(change: dict) -> None:
    with pytest.raises(ValueError):
        SMALL.replace(**change)


def test_too_many_events_for_the_population_is_refused(tmp_path: Path) -> None:
    p = SMALL.replace(n_users=2, n_items=20, n_creators=2, n_categories=2, n_events=10_000_000, days=1)
    with pytest.raises(ValueError, match="raise n_users or days"):
        write_drop(p, tmp_path)


# --- output contract ----------------------------------------------------------------------------


def test_same_params_give_byte_identical_files(
    drop: tuple[Path, GenSummary], tmp_path: Path
) -> None:
    out, summary = drop
    again = write_drop(SMALL, tmp_path / "again")
    rel = [f.relative_to(out) for f in summary.files]
    assert rel == [f.relative_to(tmp_path / "again") for f in again.files]
    for r in rel:
        assert (out / r).read_bytes() == (tmp_path / "again" / r).read_bytes(), r
    assert again.n_bad == summary.n_bad


def test_another_seed_gives_other_events(drop: tuple[Path, GenSummary], tmp_path: Path) -> None:
    other = SMALL.replace(seed=8, n_events=2_000)
    write_drop(other, tmp_path)
    a = pq.read_table(drop[0] / "events" / "part-00000.parquet").slice(0, 2_000)
    b = pq.read_table(tmp_path / "events" / "part-00000.parquet")
    assert not a.column("content_id").equals(b.column("content_id"))


def test_exact_event_count_and_part_sizes(drop: tuple[Path, GenSummary]) -> None:
    out, summary = drop
    sizes = [pq.read_metadata(f).num_rows for f in sorted((out / "events").glob("part-*.parquet"))]
    assert sizes == [15_000, 15_000, 10_000]
    assert summary.n_events == sum(sizes) == SMALL.n_events
    assert (summary.n_users, summary.n_items) == (SMALL.n_users, SMALL.n_items)


def test_run_overrides_n_events_and_rerun_replaces_parts(tmp_path: Path) -> None:
    params = project_params(
        base={"seed": 1}, datagen={"n_users": 40, "n_items": 80, "n_creators": 8, "n_categories": 4, "days": 3}
    )
    first = run(deep_merge(params, {"datagen": {"chunk_events": 100}}), tmp_path, 1_234)
    assert first.n_events == 1_234
    assert len(list((tmp_path / "events").glob("part-*.parquet"))) == 13
    second = run(params, tmp_path, n_events=777)
    parts = sorted((tmp_path / "events").glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet"]  # stale parts removed
    assert pq.read_metadata(parts[0]).num_rows == second.n_events == 777


def test_parquet_files_match_the_drop_schemas(drop: tuple[Path, GenSummary]) -> None:
    out, _ = drop
    for f in sorted((out / "events").glob("part-*.parquet")):
        assert pq.read_schema(f).remove_metadata().equals(DROP_EVENT_SCHEMA), f
    assert pq.read_schema(out / "users.parquet").remove_metadata().equals(USER_SCHEMA)
    assert pq.read_schema(out / "content.parquet").remove_metadata().equals(CONTENT_SCHEMA)
    assert pq.read_schema(out / "truth.parquet").remove_metadata().equals(TRUTH_SCHEMA)
    assert str(DROP_EVENT_SCHEMA.field("timestamp").type) == "timestamp[ms, tz=UTC]"


def test_every_event_type_appears(events: pd.DataFrame) -> None:
    counts = events.loc[~events["bad"], "event_type"].value_counts()
    assert set(EVENT_TYPES) <= set(counts.index), set(EVENT_TYPES) - set(counts.index)
    assert counts["view"] > counts["like"] > counts["share"] > counts["report"]


def test_required_fields_present_on_valid_events(events: pd.DataFrame) -> None:
    ev = events[~events["bad"]]
    for etype, required in REQUIRED_FIELDS.items():
        rows = ev[ev["event_type"] == etype]
        for col in ("event_id", "user_id", "timestamp", *required):
            assert rows[col].notna().all(), (etype, col)
    assert ev["event_id"].is_unique


def test_context_is_consistent(events: pd.DataFrame) -> None:
    assert set(events["device_type"]) <= {"ios", "android", "web"}
    assert set(events["network"]) <= {"wifi", "5g", "4g", "3g"}
    mobile = events["device_type"] != "web"
    assert (events.loc[mobile, "os"] == events.loc[mobile, "device_type"]).all()
    assert set(events.loc[~mobile, "os"]) <= {"windows", "macos", "linux"}


def test_user_and_content_tables(drop: tuple[Path, GenSummary], content: pd.DataFrame) -> None:
    users = pq.read_table(drop[0] / "users.parquet").to_pandas()
    assert users["user_id"].is_unique and len(users) == SMALL.n_users
    assert users["user_id"].str.fullmatch(r"user_\d{6}").all()
    assert content["content_id"].is_unique and len(content) == SMALL.n_items
    assert content["duration_s"].between(5, 180).all()
    has_emb = content["visual_embedding"].notna()
    assert 0.35 < has_emb.mean() < 0.65
    assert content.loc[has_emb, "visual_embedding"].map(len).eq(16).all()
    assert content["tags"].map(lambda t: any(x.startswith("#") for x in t)).all()
    assert (content["upload_timestamp"] < START).any() and (
        content["upload_timestamp"] >= START
    ).any()


def test_truth_table_holds_interest_vectors(
    drop: tuple[Path, GenSummary], truth: pd.DataFrame
) -> None:
    assert len(truth) == SMALL.n_users * SMALL.n_categories
    sums = truth.groupby("user_id")["interest"].sum()
    assert np.allclose(sums, 1.0)
    assert (truth.groupby("user_id")["interest"].max() > 2 / SMALL.n_categories).mean() > 0.9
    users = pq.read_table(drop[0] / "users.parquet").to_pandas()
    declared = users[["user_id", "preferred_categories"]].dropna().explode("preferred_categories")
    merged = declared.merge(truth, left_on=["user_id", "preferred_categories"],
                            right_on=["user_id", "category"])  # fmt: skip
    assert merged["interest"].mean() > 2 / SMALL.n_categories  # declared ~ true interests


# --- behaviour ----------------------------------------------------------------------------------


def test_sessions_are_bursts_separated_by_long_gaps(good_user_events: pd.DataFrame) -> None:
    gaps = good_user_events.groupby("user_id")["timestamp"].diff().dt.total_seconds().dropna()
    long = gaps > THIRTY_MIN
    assert long.sum() > SMALL.n_users  # most users come back in several sessions
    assert long.mean() < 0.1
    assert gaps[~long].median() < 60  # within a session: watch time + a few seconds
    assert gaps[~long].quantile(0.99) < 15 * 60
    assert not gaps.between(20 * 60, 40 * 60).any()  # a 30-minute split is unambiguous


def test_activity_peaks_in_the_evening(good_user_events: pd.DataFrame) -> None:
    hours = good_user_events["timestamp"].dt.hour
    assert hours.between(19, 22).sum() > 2 * hours.between(3, 6).sum()


def test_users_engage_more_with_their_high_interest_categories(
    events: pd.DataFrame, content: pd.DataFrame, truth: pd.DataFrame
) -> None:
    ev = events[~events["bad"] & events["event_type"].isin(["view", "like"])]
    ev = ev.merge(content[["content_id", "category"]], on="content_id").merge(
        truth, on=["user_id", "category"]
    )
    high = ev[ev["interest"] >= 0.3]["event_type"].value_counts()
    low = ev[ev["interest"] < 0.03]["event_type"].value_counts()
    assert low["view"] > 500 and high["view"] > 500  # both groups are well populated
    like_high = high["like"] / high["view"]
    like_low = low.get("like", 0) / low["view"]
    assert like_high > 3 * like_low and like_high - like_low > 0.05


def test_3g_sessions_watch_less(events: pd.DataFrame, content: pd.DataFrame) -> None:
    views = events[~events["bad"] & (events["event_type"] == "view")]
    views = views.merge(content[["content_id", "duration_s"]], on="content_id")
    ratio = views["watch_duration_s"] / views["duration_s"]
    by_net = ratio.groupby(views["network"]).mean()
    assert by_net["3g"] < by_net["wifi"] - 0.05


def test_watch_ratio_flags_are_consistent(events: pd.DataFrame, content: pd.DataFrame) -> None:
    """replay => some view longer than the video; complete_view => some view >= 95 % of it."""
    ev = events[~events["bad"]]
    views = ev[ev["event_type"] == "view"].merge(content[["content_id", "duration_s"]])
    key = ["user_id", "content_id"]
    touched = events.loc[events["bad"], key].drop_duplicates().assign(touched=True)
    # a view turned into an unknown-content row hides its pair, so allow that many misses
    hidden = int(events["unknown_content"].sum())
    for etype, min_ratio in (("replay", 1.0), ("complete_view", 0.95)):
        flagged = ev[ev["event_type"] == etype][key].drop_duplicates().merge(touched, how="left")
        flagged = flagged[flagged["touched"].isna()][key]
        ok = views[views["watch_duration_s"] >= min_ratio * views["duration_s"] - 0.001][key]
        matched = len(flagged.merge(ok.drop_duplicates()))
        assert len(flagged) > 100, etype
        assert len(flagged) - hidden <= matched <= len(flagged), etype


def test_watch_durations_non_negative_except_injected(
    events: pd.DataFrame, drop: tuple[Path, GenSummary]
) -> None:
    views = events["event_type"] == "view"
    assert events.loc[views, "watch_duration_s"].notna().all()
    # only views carry a watch time (a view turned into "zap" keeps its own)
    assert events.loc[~views & ~events["zap"], "watch_duration_s"].isna().all()
    negative = events["watch_duration_s"] < 0
    assert negative.sum() > 0
    assert (events.loc[negative & ~events["neg_watch"]]).empty
    assert (events.loc[~events["bad"], "watch_duration_s"].dropna() >= 0).all()


def test_bad_event_count_matches_rate(events: pd.DataFrame, drop: tuple[Path, GenSummary]) -> None:
    _, summary = drop
    kinds = events[["neg_watch", "future", "zap", "unknown_content", "dup_id"]]
    assert (kinds.sum(axis=1) <= 1).all()  # one defect per bad row
    assert kinds.to_numpy().sum() == summary.n_bad
    assert (kinds.sum() > 0).all()  # every kind of defect is represented
    expected = SMALL.bad_event_rate * SMALL.n_events
    assert abs(summary.n_bad - expected) < 4 * np.sqrt(expected) + 5


def test_uploads_only_for_items_uploaded_in_the_period(
    events: pd.DataFrame, content: pd.DataFrame
) -> None:
    ups = events[(events["event_type"] == "content_upload") & ~events["bad"]]
    assert len(ups) > 10
    merged = ups.merge(content, on="content_id", suffixes=("", "_item"))
    assert len(merged) == len(ups)
    assert merged["upload_timestamp"].between(START, END, inclusive="left").all()
    assert (merged["timestamp"] == merged["upload_timestamp"]).all()
    assert (merged["creator_id"] == merged["creator_id_item"]).all()
    assert (merged["user_id"] == "user_" + merged["creator_id"]).all()
    meta = merged["metadata"].map(json.loads)
    assert (meta.map(lambda m: m["category"]) == merged["category"]).all()
    assert meta.map(lambda m: set(m) == {"category", "tags", "description", "duration_s"}).all()


def test_no_event_on_an_item_before_its_upload(events: pd.DataFrame, content: pd.DataFrame) -> None:
    ev = events[~events["bad"] & events["content_id"].notna()]
    merged = ev.merge(content[["content_id", "upload_timestamp"]], on="content_id")
    assert len(merged) == len(ev)
    assert (merged["timestamp"] >= merged["upload_timestamp"]).all()
    fresh = merged[(merged["event_type"] == "view") & (merged["upload_timestamp"] >= START)]
    assert len(fresh) > 100  # new uploads do get watched, so the check has teeth


def test_cli_writes_a_drop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    small = {"n_users": 30, "n_items": 60, "n_creators": 6, "n_categories": 3, "start": dt.date(2026, 3, 2), "days": 2}
    params.write_text(yaml.safe_dump(project_params(base={"seed": 5}, datagen=small)), encoding="utf-8")
    out = tmp_path / "drop"
    assert main(["--params", str(params), "--out", str(out), "--n-events", "500"]) == 0
    assert "500 events" in capsys.readouterr().out
    table = pq.read_table(out / "events")
    assert table.num_rows == 500
    assert (out / "users.parquet").exists() and (out / "content.parquet").exists()
