"""Unit tests for components.data.realdata: mapping rules on hand-built frames, then the vendored files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.core.schema import CONTENT_SCHEMA, DROP_EVENT_SCHEMA, REQUIRED_FIELDS, USER_SCHEMA
from components.data import realdata
from components.data.adapters.drop import UNKNOWN, Drop, validate_drop
from components.data.adapters.kuairand import COMMENT_NOT_IN_DATA, kuairand_to_drop
from components.data.adapters.movielens import movielens_to_drop, parse_title_year
from components.data.realdata import write_drop

# ---------------------------------------------------------------------------------------------
# Hand-built inputs
# ---------------------------------------------------------------------------------------------

KR_DEFAULTS: dict[str, object] = {
    "user_id": 1,
    "video_id": 10,
    "date": 20220410,
    "hourmin": 1700,
    "time_ms": 1_649_581_149_287,  # 2022-04-10 08:59:09.287 UTC
    "is_click": 1,
    "is_follow": 0,
    "is_comment": 0,
    "is_forward": 0,
    "long_view": 0,
    "play_time_ms": 12_500,
    "duration_ms": 30_000,
    "comment_stay_time": 0,
    "is_profile_enter": 0,
    "label": 1,
    "timestamp": "2022-04-10 08:59:09",
}


def kr_rows(*overrides: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame([{**KR_DEFAULTS, **o} for o in overrides])


def kr_users(*user_ids: int) -> pd.DataFrame:
    return pd.DataFrame({"user_id": list(user_ids), "user_active_degree": "full_active"})


def ml_frames(
    ratings: list[tuple[int, int, float, int]],
    movies: list[tuple[int, str, str]] | None = None,
    tags: list[tuple[int, int, str, int]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    movies = movies if movies is not None else [(1, "Toy Story (1995)", "Adventure|Comedy")]
    return (
        pd.DataFrame(ratings, columns=["userId", "movieId", "rating", "timestamp"]),
        pd.DataFrame(movies, columns=["movieId", "title", "genres"]),
        pd.DataFrame(tags or [], columns=["userId", "movieId", "tag", "timestamp"]).astype(
            {"userId": "int64", "movieId": "int64", "tag": object, "timestamp": "int64"}
        ),
    )


def types_of_row(drop: Drop, prefix: str, row: int) -> set[str]:
    ids = drop.events["event_id"]
    return set(drop.events.loc[ids.str.startswith(f"{prefix}-{row}-"), "event_type"])


# ---------------------------------------------------------------------------------------------
# KuaiRand rules
# ---------------------------------------------------------------------------------------------


def test_kuairand_row_with_every_flag_gives_every_event_type() -> None:
    flags = {"long_view": 1, "label": 1, "is_follow": 1, "is_comment": 1, "is_forward": 1}
    drop = kuairand_to_drop(kr_rows(flags), kr_users(1))
    assert types_of_row(drop, "kr", 0) == {
        "view",
        "complete_view",
        "like",
        "comment",
        "share",
        "follow",
    }
    assert len(drop.events) == 6


def test_kuairand_plain_hated_row_is_view_and_hide() -> None:
    drop = kuairand_to_drop(kr_rows({"label": 0}), kr_users(1))
    assert types_of_row(drop, "kr", 0) == {"view", "hide"}


def test_kuairand_event_fields() -> None:
    flags = {"long_view": 1, "is_follow": 1, "is_comment": 1, "is_forward": 1}
    drop = kuairand_to_drop(kr_rows(flags), kr_users(1))
    ev = drop.events.set_index("event_type")
    assert list(drop.events.columns) == DROP_EVENT_SCHEMA.names
    assert (drop.events["user_id"] == "kr_u1").all()
    assert (drop.events["content_id"] == "kr_v10").all()
    assert (drop.events["timestamp"] == pd.Timestamp("2022-04-10 08:59:09.287", tz="UTC")).all()
    assert str(drop.events["timestamp"].dtype) == "datetime64[ms, UTC]"
    assert ev.loc["view", "watch_duration_s"] == pytest.approx(12.5)
    assert ev.drop(index="view")["watch_duration_s"].isna().all()  # watch time counted once
    assert ev.loc["comment", "comment_text"] == COMMENT_NOT_IN_DATA
    assert ev.loc["share", "platform"] == UNKNOWN
    assert ev.loc["follow", "creator_id"] == UNKNOWN
    assert ev.loc["view", "event_id"] == "kr-0-view"
    assert ev.loc["complete_view", "event_id"] == "kr-0-complete_view"
    for col in ("device_type", "os", "network", "rating", "reason", "metadata"):
        assert drop.events[col].isna().all(), col
    # consumption first, then feedback, within one input row
    assert list(drop.events["event_type"]) == [
        "view",
        "complete_view",
        "like",
        "comment",
        "share",
        "follow",
    ]


def test_kuairand_events_are_in_time_order_and_ids_follow_input_rows() -> None:
    rows = kr_rows({"time_ms": 2_000_000}, {"time_ms": 1_000_000, "video_id": 11})
    drop = kuairand_to_drop(rows, kr_users(1))
    assert list(drop.events["event_id"]) == ["kr-1-view", "kr-1-like", "kr-0-view", "kr-0-like"]


def test_kuairand_content_duration_zero_is_unknown() -> None:
    rows = kr_rows(
        {"video_id": 10, "duration_ms": 0},
        {"video_id": 11, "duration_ms": 0},
        {"video_id": 11, "duration_ms": 15_000},
    )
    drop = kuairand_to_drop(rows, kr_users(1))
    content = drop.content.set_index("content_id")
    assert list(drop.content.columns) == CONTENT_SCHEMA.names
    assert np.isnan(content.loc["kr_v10", "duration_s"])
    assert content.loc["kr_v11", "duration_s"] == pytest.approx(15.0)
    assert (drop.content["category"] == UNKNOWN).all()
    assert (drop.content["creator_id"] == UNKNOWN).all()
    assert drop.content["upload_timestamp"].isna().all()
    assert drop.reconciliation["content"] == 2
    assert drop.reconciliation["content_unknown_duration"] == 1


def test_kuairand_users_come_from_user_features_with_null_profiles() -> None:
    drop = kuairand_to_drop(kr_rows({"user_id": 1}), kr_users(1, 2))
    assert list(drop.users.columns) == USER_SCHEMA.names
    assert list(drop.users["user_id"]) == ["kr_u1", "kr_u2"]
    assert drop.users.drop(columns="user_id").isna().all().all()
    assert drop.reconciliation["users_without_features"] == 0


def test_kuairand_reconciliation_counts_rows_and_events() -> None:
    rows = kr_rows(
        {"label": 1, "long_view": 1},
        {"label": 0, "is_comment": 1},
        {"label": 0, "is_comment": 1},  # exact duplicate of the row above
    )
    rec = kuairand_to_drop(rows, kr_users(1)).reconciliation
    assert rec["input_rows"] == 3
    assert rec["exact_duplicate_rows"] == 1
    assert (rec["view"], rec["complete_view"], rec["like"], rec["hide"]) == (3, 1, 1, 2)
    assert (rec["comment"], rec["share"], rec["follow"]) == (2, 0, 0)
    assert rec["events"] == 9


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"label": 2}, "label"),
        ({"is_forward": -1}, "is_forward"),
        ({"play_time_ms": -5}, "play_time_ms"),
        ({"time_ms": None}, "time_ms"),
    ],
)
def test_kuairand_rejects_invalid_rows(override: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kuairand_to_drop(kr_rows(override), kr_users(1))


def test_kuairand_rejects_missing_column() -> None:
    with pytest.raises(ValueError, match="long_view"):
        kuairand_to_drop(kr_rows({}).drop(columns="long_view"), kr_users(1))


# ---------------------------------------------------------------------------------------------
# MovieLens rules
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rating", "expected"),
    [
        (4.5, {"complete_view", "like"}),
        (4.0, {"complete_view", "like"}),
        (3.5, {"complete_view"}),
        (2.0, {"complete_view"}),
        (1.5, {"complete_view", "hide"}),
        (1.0, {"complete_view", "hide"}),
        (0.5, {"complete_view", "hide"}),
    ],
)
def test_movielens_rating_to_event_types(rating: float, expected: set[str]) -> None:
    drop = movielens_to_drop(*ml_frames([(7, 1, rating, 964_982_703)]))
    assert types_of_row(drop, "ml", 0) == expected


def test_movielens_event_fields() -> None:
    drop = movielens_to_drop(*ml_frames([(7, 1, 4.5, 964_982_703)]))
    ev = drop.events.set_index("event_type")
    assert ev.loc["complete_view", "rating"] == 4.5
    assert np.isnan(ev.loc["like", "rating"])  # the rating is counted once
    assert ev.loc["complete_view", "event_id"] == "ml-0-complete_view"
    assert ev.loc["like", "event_id"] == "ml-0-like"
    assert (drop.events["user_id"] == "ml_u7").all()
    assert (drop.events["content_id"] == "ml_m1").all()
    assert (drop.events["timestamp"] == pd.Timestamp("2000-07-30 18:45:03", tz="UTC")).all()
    assert drop.events["watch_duration_s"].isna().all()
    for col in ("device_type", "os", "network"):
        assert drop.events[col].isna().all()


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Toy Story (1995)", "1995-01-01"),
        ("2001: A Space Odyssey (1968)", "1968-01-01"),
        ("Runaway Brain (1995) ", "1995-01-01"),
        ("Death Note: Desu nôto (2006–2007)", "2006-01-01"),
        ("Babylon 5", None),
        ("1984", None),
        ("Brazil (1985) (extended)", None),
    ],
)
def test_parse_title_year(title: str, expected: str | None) -> None:
    parsed = parse_title_year(pd.Series([title]))
    assert str(parsed.dtype) == "datetime64[ms, UTC]"
    if expected is None:
        assert pd.isna(parsed.iloc[0])
    else:
        assert parsed.iloc[0] == pd.Timestamp(expected, tz="UTC")


def test_movielens_content_category_tags_description_year() -> None:
    movies = [
        (1, "Toy Story (1995)", "Adventure|Animation|Children"),
        (2, "Babylon 5", "(no genres listed)"),
        (3, "Sicko (2007)", "Documentary|Drama"),
    ]
    tags = [
        (9, 1, "Pixar", 1),
        (8, 1, " pixar ", 2),
        (9, 1, "animation", 3),  # also a genre
        (9, 2, "space", 4),
        (9, 2, "NA", 5),
    ]
    drop = movielens_to_drop(*ml_frames([(7, 1, 3.0, 100)], movies, tags))
    content = drop.content.set_index("content_id")
    assert list(drop.content.columns) == CONTENT_SCHEMA.names
    assert content.loc["ml_m1", "category"] == "adventure"
    assert content.loc["ml_m1", "tags"] == ["adventure", "animation", "children", "pixar"]
    assert content.loc["ml_m1", "description"] == "Toy Story (1995)"
    assert content.loc["ml_m1", "upload_timestamp"] == pd.Timestamp("1995-01-01", tz="UTC")
    assert content.loc["ml_m2", "category"] == UNKNOWN
    assert content.loc["ml_m2", "tags"] == ["na", "space"]
    assert pd.isna(content.loc["ml_m2", "upload_timestamp"])
    assert content.loc["ml_m3", "tags"] == ["documentary", "drama"]
    assert (drop.content["creator_id"] == UNKNOWN).all()
    assert drop.content["duration_s"].isna().all()
    rec = drop.reconciliation
    assert (rec["content"], rec["content_unrated"], rec["content_without_year"]) == (3, 2, 1)


def test_movielens_tag_applications_are_not_events() -> None:
    tags = [(9, 1, "funny", 5), (9, 1, "pixar", 6)]
    drop = movielens_to_drop(*ml_frames([(7, 1, 3.0, 100)], tags=tags))
    assert list(drop.events["event_type"]) == ["complete_view"]
    assert drop.reconciliation["tag_applications"] == 2
    # a user who only tagged still has a profile row
    assert list(drop.users["user_id"]) == ["ml_u7", "ml_u9"]
    assert drop.users.drop(columns="user_id").isna().all().all()


def test_movielens_rejects_out_of_range_rating() -> None:
    with pytest.raises(ValueError, match="rating"):
        movielens_to_drop(*ml_frames([(7, 1, 6.0, 100)]))


def test_movielens_rejects_inverted_thresholds() -> None:
    with pytest.raises(ValueError, match="hide_max_rating"):
        movielens_to_drop(*ml_frames([(7, 1, 3.0, 100)]), like_min_rating=2.0, hide_max_rating=3.0)


# ---------------------------------------------------------------------------------------------
# Validation and writing
# ---------------------------------------------------------------------------------------------


def test_validate_drop_rejects_missing_required_field() -> None:
    drop = kuairand_to_drop(kr_rows({"is_comment": 1}), kr_users(1))
    events = drop.events.copy()
    events.loc[events["event_type"] == "comment", "comment_text"] = ""
    with pytest.raises(ValueError, match="comment events lack comment_text"):
        validate_drop(Drop(events, drop.users, drop.content, drop.reconciliation))


def test_validate_drop_rejects_duplicate_event_ids() -> None:
    drop = kuairand_to_drop(kr_rows({}), kr_users(1))
    events = drop.events.assign(event_id="same")
    with pytest.raises(ValueError, match="duplicate event_id"):
        validate_drop(Drop(events, drop.users, drop.content, drop.reconciliation))


def test_write_drop_is_idempotent_and_refuses_foreign_event_files(tmp_path: Path) -> None:
    drop = kuairand_to_drop(kr_rows({"long_view": 1}), kr_users(1))
    files = write_drop(drop, tmp_path / "drop")
    first = files.events.read_bytes()
    write_drop(drop, tmp_path / "drop")
    assert files.events.read_bytes() == first
    assert sorted(p.name for p in files.events.parent.iterdir()) == ["part-00000.parquet"]
    (files.events.parent / "part-00001.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match=r"part-00001\.parquet"):
        write_drop(drop, tmp_path / "drop")


def test_run_rejects_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        realdata.run("netflix", tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# The vendored files, end to end (each converted once per module)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["kuairand", "movielens"])
def converted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> realdata.RealDataOutputs:
    dataset = request.param
    src = realdata.default_src(dataset)
    if not src.is_dir():
        pytest.fail(f"vendored data set missing: {src}")
    return realdata.run(dataset, src, tmp_path_factory.mktemp(dataset))


EXPECTED = {
    "kuairand": {"input_rows": 41_828, "users": 664, "content": 9_359},
    "movielens": {"input_rows": 100_836, "users": 610, "content": 9_742},
}


def test_full_reconciliation_adds_up(converted: realdata.RealDataOutputs) -> None:
    rec = converted.reconciliation
    for key, value in EXPECTED[converted.dataset].items():
        assert rec[key] == value, key
    type_keys = [k for k in rec if k in REQUIRED_FIELDS]
    assert sum(rec[k] for k in type_keys) == rec["events"]
    src = realdata.default_src(converted.dataset)
    if converted.dataset == "kuairand":
        raw = pd.read_csv(src / "interactions.tsv", sep="\t")
        assert rec["view"] == rec["input_rows"] == len(raw)
        assert rec["like"] + rec["hide"] == rec["input_rows"]
        assert rec["complete_view"] == int(raw["long_view"].sum())
        assert rec["comment"] == int(raw["is_comment"].sum())
        assert rec["share"] == int(raw["is_forward"].sum())
        assert rec["follow"] == int(raw["is_follow"].sum())
        assert rec["exact_duplicate_rows"] == int(raw.duplicated().sum())
        assert rec["content_unknown_duration"] == int(
            (raw.groupby("video_id")["duration_ms"].max() == 0).sum()
        )
    else:
        raw = pd.read_csv(src / "ratings.csv")
        assert rec["complete_view"] == rec["input_rows"] == len(raw)
        assert rec["like"] == int((raw["rating"] >= 4.0).sum())
        assert rec["hide"] == int((raw["rating"] <= 1.5).sum())
        assert rec["tag_applications"] == len(pd.read_csv(src / "tags.csv"))
        assert rec["ratings_for_unlisted_movies"] == 0
    on_disk = json.loads(converted.files.reconciliation.read_text(encoding="utf-8"))
    assert on_disk == rec


def test_full_parquet_reads_back_with_exact_schemas(converted: realdata.RealDataOutputs) -> None:
    files = converted.files
    for path, schema in (
        (files.events, DROP_EVENT_SCHEMA),
        (files.users, USER_SCHEMA),
        (files.content, CONTENT_SCHEMA),
    ):
        assert pq.read_schema(path).equals(schema, check_metadata=True), path
    events = pq.read_table(files.events).to_pandas()
    rec = converted.reconciliation
    assert len(events) == rec["events"]
    assert events["event_id"].is_unique
    assert events["timestamp"].is_monotonic_increasing
    counts = events["event_type"].value_counts().to_dict()
    assert counts == {k: rec[k] for k in rec if k in REQUIRED_FIELDS and rec[k] > 0}
    users = pq.read_table(files.users).to_pandas()
    content = pq.read_table(files.content).to_pandas()
    assert len(users) == rec["users"] and users["user_id"].is_unique
    assert len(content) == rec["content"] and content["content_id"].is_unique
    assert set(events["user_id"]) <= set(users["user_id"])
    assert set(events["content_id"]) <= set(content["content_id"])
