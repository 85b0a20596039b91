"""Adapters that turn the two vendored real data sets into event drops.

A drop (see the bottom of :mod:`components.core.schema`) is what a producer delivers to ingestion, so
real data flows through exactly the same ingestion, quarantine and pseudonymisation as synthetic
data. Each adapter is a pure function from the data set's own tables to a :class:`Drop`, with a
``reconciliation`` that accounts for every event by the input rows it came from.

KuaiRand subset (``datasets/kuairand-subset``, CC BY-SA 4.0; the derived drop is share-alike):
every interaction row becomes one ``view`` (``watch_duration_s = play_time_ms / 1000``; rows
with ``play_time_ms = 0`` stay views of 0 s, as logged) plus, on the same timestamp,
``complete_view`` if ``long_view = 1``, ``like`` if ``label = 1`` / ``hide`` if ``label = 0``,
``comment`` if ``is_comment = 1``, ``share`` if ``is_forward = 1`` and ``follow`` if
``is_follow = 1``. Only the ``view`` carries the watch time, so watch time is never counted twice.
The subset has no creator ids, comment texts or share targets, while the event schema requires
them; such fields get explicit sentinels (:data:`UNKNOWN` for ``creator_id`` and ``platform``,
:data:`COMMENT_NOT_IN_DATA` for ``comment_text``) rather than invented values. ``is_click``,
``is_profile_enter`` and ``comment_stay_time`` have no event type and are not mapped. Exact
duplicate input rows (116 in the subset) are mapped like any other row — one ``view`` per input
row — and counted in the reconciliation (``exact_duplicate_rows``) so that a later stage can
decide whether to drop them; their events have distinct ids. Content: one row per video, ``duration_s`` from the positive
``duration_ms`` (0 means unknown → null), category and creator :data:`UNKNOWN` (the subset has
no video features), ``upload_timestamp`` null — the first time a video is seen is only an upper
bound on its upload time and would make every video look brand-new. Users: one row per user of
``user_features.csv`` (and of the interactions); the schema has no slot for KuaiRand's anonymised
side features, there are no demographics and ``register_days`` has no documented anchor date, so
every profile column is null.

MovieLens ml-latest-small (``datasets/ml-latest-small``, GroupLens licence in its README.txt):
every rating becomes a ``complete_view`` carrying ``rating``, plus a ``like`` when the rating is
≥ 4 and a ``hide`` when it is ≤ 1.5 (only the ``complete_view`` carries the rating, so each
rating is counted once). Tag applications are content text, not events. Content:
one row per movie of ``movies.csv``; category = first genre, lower-case (``(no genres listed)``
→ :data:`UNKNOWN`); tags = the genres then the movie's free-text tags, lower-case, stripped and
deduplicated; description = title; ``upload_timestamp`` = 1 January (UTC) of the year in the
title's trailing "(1995)" (or the first year of a range such as "(2006–2007)"), null without one.

Both: device, OS and network are null (not in the data). Event ids are deterministic,
``"<kr|ml>-<row>-<event_type>"`` with ``row`` the 0-based data row of the interactions / ratings
file, so a re-run yields the same ids and ingestion deduplicates re-delivered drops. User and
content ids are the data sets' own, prefixed (``kr_u``/``kr_v``, ``ml_u``/``ml_m``) so the two
sets can share one store; ingestion pseudonymises user ids as for any producer.

Input checks use pandera; the mapping itself is a few vectorised pandas steps, for which no
library exists.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pandera.errors as pandera_errors
import pandera.pandas as pdv
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.io import atomic_write_json, atomic_write_parquet
from components.core.catalog import DataPaths
from components.core.schema import (
    CONTENT_SCHEMA,
    DROP_EVENT_SCHEMA,
    EVENT_TYPES,
    REQUIRED_FIELDS,
    STRING_FIELDS,
    USER_SCHEMA,
)

logger = logging.getLogger(__name__)

#: Sentinel for a categorical value the data set does not have (creator, category, share platform).
UNKNOWN = "unknown"
#: ``comment_text`` of a KuaiRand comment event: the subset records that a comment was made, not
#: its text, and the schema requires a non-empty text on comment events.
COMMENT_NOT_IN_DATA = "[not in data set]"
#: MovieLens rating thresholds: a rating at or above ``LIKE_MIN_RATING`` also emits ``like``, at
#: or below ``HIDE_MAX_RATING`` also emits ``hide`` (explicit dislike).
LIKE_MIN_RATING = 4.0
HIDE_MAX_RATING = 1.5
NO_GENRES = "(no genres listed)"

#: The vendored data sets; each one's folder is the catalogue's ``dataset_<name>``.
DATASETS: tuple[str, ...] = ("kuairand", "movielens")

EVENTS_FILE = Path("events") / "part-00000.parquet"
USERS_FILE = Path("users.parquet")
CONTENT_FILE = Path("content.parquet")
RECONCILIATION_FILE = Path("reconciliation.json")

_FLOAT_EVENT_COLUMNS = frozenset({"watch_duration_s", "rating"})
# Title ends with "(1995)" or a range "(2006–2007)"; the first year is the release year.
_TITLE_YEAR = r"\((\d{4})(?:\s*[-–]\s*\d{4})?\)\s*$"

_FLAG = pdv.Check.isin([0, 1])
_KUAIRAND_INTERACTIONS = pdv.DataFrameSchema(
    {
        "user_id": pdv.Column("int64"),
        "video_id": pdv.Column("int64"),
        "time_ms": pdv.Column("int64", pdv.Check.gt(0)),
        "play_time_ms": pdv.Column("int64", pdv.Check.ge(0)),
        "duration_ms": pdv.Column("int64", pdv.Check.ge(0)),
        "long_view": pdv.Column("int64", _FLAG),
        "label": pdv.Column("int64", _FLAG),
        "is_follow": pdv.Column("int64", _FLAG),
        "is_comment": pdv.Column("int64", _FLAG),
        "is_forward": pdv.Column("int64", _FLAG),
    },
    strict=False,
    name="kuairand interactions",
)
_KUAIRAND_USERS = pdv.DataFrameSchema(
    {"user_id": pdv.Column("int64", unique=True)}, strict=False, name="kuairand user_features"
)
_ML_RATINGS = pdv.DataFrameSchema(
    {
        "userId": pdv.Column("int64"),
        "movieId": pdv.Column("int64"),
        "rating": pdv.Column("float64", pdv.Check.in_range(0.5, 5.0)),
        "timestamp": pdv.Column("int64", pdv.Check.ge(0)),
    },
    strict=False,
    name="movielens ratings",
)
_ML_MOVIES = pdv.DataFrameSchema(
    {
        "movieId": pdv.Column("int64", unique=True),
        "title": pdv.Column(str),
        "genres": pdv.Column(str),
    },
    strict=False,
    name="movielens movies",
)
_ML_TAGS = pdv.DataFrameSchema(
    {"userId": pdv.Column("int64"), "movieId": pdv.Column("int64"), "tag": pdv.Column(str)},
    strict=False,
    name="movielens tags",
)


@dataclass(frozen=True, eq=False)
class Drop:
    """One drop: events (DROP_EVENT_SCHEMA), users (USER_SCHEMA), content (CONTENT_SCHEMA).

    ``reconciliation`` accounts for every event: input rows, events per type, their total
    (``events``), and the sizes of the user and content tables. ``eq=False`` because frames
    have no single truth value.
    """

    events: pd.DataFrame
    users: pd.DataFrame
    content: pd.DataFrame
    reconciliation: dict[str, int]


@dataclass(frozen=True)
class DropFiles:
    """Where :func:`write_drop` put each part of a drop."""

    out_dir: Path
    events: Path
    users: Path
    content: Path
    reconciliation: Path


@dataclass(frozen=True, eq=False)
class RealDataOutputs:
    """What :func:`run` produced: the files, the reconciliation and the wall time it took."""

    dataset: str
    files: DropFiles
    reconciliation: dict[str, int]
    seconds: float


# --------------------------------------------------------------------------------------------
# Pure core
# --------------------------------------------------------------------------------------------


def _validated(schema: pdv.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """Check an input frame against its pandera schema; any failure is a ValueError."""
    try:
        checked = schema.validate(frame, lazy=True)
    except (pandera_errors.SchemaErrors, pandera_errors.SchemaError) as exc:
        raise ValueError(f"{schema.name}: invalid input: {exc}") from exc
    return checked.reset_index(drop=True)


def _utc_ms(values: pd.Series, unit: Literal["s", "ms"]) -> pd.Series:
    """Epoch numbers → ``datetime64[ms, UTC]`` (the drop's timestamp type)."""
    return pd.to_datetime(values, unit=unit, utc=True).astype("datetime64[ms, UTC]")


def _null_timestamps(n: int) -> pd.Series:
    """``n`` unknown timestamps of the drop's timestamp type."""
    return pd.Series(pd.NaT, index=pd.RangeIndex(n), dtype="datetime64[ms, UTC]")


def _emit(
    base: pd.DataFrame, event_type: str, mask: pd.Series | None = None, **cols: pd.Series | str
) -> pd.DataFrame:
    """The events of one type: the rows of ``base`` selected by ``mask``, plus extra columns."""
    part = base if mask is None else base.loc[mask.to_numpy()]
    part = part.assign(event_type=event_type)
    for name, value in cols.items():
        part[name] = value.loc[part.index] if isinstance(value, pd.Series) else value
    return part


def _assemble_events(parts: list[pd.DataFrame], prefix: str) -> pd.DataFrame:
    """All events in time order (ties: input row, then position in ``parts``), with ids."""
    events = pd.concat(
        [part.assign(_rank=rank) for rank, part in enumerate(parts)], ignore_index=True
    )
    events = events.sort_values(["timestamp", "_row", "_rank"], kind="stable", ignore_index=True)
    events["event_id"] = prefix + "-" + events["_row"].astype(str) + "-" + events["event_type"]
    for name in DROP_EVENT_SCHEMA.names:
        if name not in events.columns:
            events[name] = np.nan if name in _FLOAT_EVENT_COLUMNS else None
    return events[list(DROP_EVENT_SCHEMA.names)]


def _type_counts(events: pd.DataFrame, types: Sequence[str]) -> dict[str, int]:
    counts = events["event_type"].value_counts()
    return {t: int(counts.get(t, 0)) for t in types}


def _empty_users(user_ids: pd.Series) -> pd.DataFrame:
    """A users table with only ids known (no demographics, preferences or sign-up date)."""
    users = pd.DataFrame({"user_id": user_ids.reset_index(drop=True)})
    for name in USER_SCHEMA.names[1:]:
        users[name] = None
    users["signup_timestamp"] = _null_timestamps(len(users))
    return users[list(USER_SCHEMA.names)]


def _complete_content(content: pd.DataFrame) -> pd.DataFrame:
    """Add the content columns a data set lacks (audio, embeddings) as nulls, in schema order."""
    for name in CONTENT_SCHEMA.names:
        if name not in content.columns:
            content[name] = np.nan if name == "duration_s" else None
    return content[list(CONTENT_SCHEMA.names)].reset_index(drop=True)


def kuairand_to_drop(interactions: pd.DataFrame, user_features: pd.DataFrame) -> Drop:
    """Map the KuaiRand subset (interactions.tsv, user_features.csv) onto a drop.

    See the module docstring for the rules. Creator ids are not in the subset: ``follow``
    events and all content rows carry ``creator_id = "unknown"``; comment texts are not in it
    either: ``comment`` events carry ``comment_text = "[not in data set]"``; shares carry
    ``platform = "unknown"``. ``upload_timestamp`` is null (unknown), not the first time seen.
    """
    rows = _validated(_KUAIRAND_INTERACTIONS, interactions)
    users_in = _validated(_KUAIRAND_USERS, user_features)

    base = pd.DataFrame(
        {
            "_row": np.arange(len(rows), dtype=np.int64),
            "user_id": "kr_u" + rows["user_id"].astype(str),
            "content_id": "kr_v" + rows["video_id"].astype(str),
            "timestamp": _utc_ms(rows["time_ms"], "ms"),
        }
    )
    parts = [
        _emit(base, "view", watch_duration_s=rows["play_time_ms"] / 1000.0),
        _emit(base, "complete_view", rows["long_view"] == 1),
        _emit(base, "like", rows["label"] == 1),
        _emit(base, "hide", rows["label"] == 0),
        _emit(base, "comment", rows["is_comment"] == 1, comment_text=COMMENT_NOT_IN_DATA),
        _emit(base, "share", rows["is_forward"] == 1, platform=UNKNOWN),
        _emit(base, "follow", rows["is_follow"] == 1, creator_id=UNKNOWN),
    ]
    events = _assemble_events(parts, "kr")

    user_ids = pd.Series(
        np.union1d(users_in["user_id"].to_numpy(), rows["user_id"].to_numpy()), dtype="int64"
    )
    users = _empty_users("kr_u" + user_ids.astype(str))

    known = rows.loc[rows["duration_ms"] > 0]
    per_video = known.groupby("video_id")["duration_ms"].agg(["max", "nunique"])
    conflicting = int((per_video["nunique"] > 1).sum())
    if conflicting:
        logger.warning(
            "kuairand: %d videos have several durations; keeping the longest", conflicting
        )
    video_ids = pd.Series(np.unique(rows["video_id"].to_numpy()), dtype="int64")
    duration_s = video_ids.map(per_video["max"] / 1000.0).astype("float64")
    content = _complete_content(
        pd.DataFrame(
            {
                "content_id": "kr_v" + video_ids.astype(str),
                "creator_id": UNKNOWN,
                "upload_timestamp": _null_timestamps(len(video_ids)),
                "category": UNKNOWN,
                "duration_s": duration_s,
            }
        )
    )

    types = ("view", "complete_view", "like", "hide", "comment", "share", "follow")
    reconciliation = {
        "input_rows": len(rows),
        "exact_duplicate_rows": int(rows.duplicated().sum()),
        **_type_counts(events, types),
        "events": len(events),
        "users": len(users),
        "users_without_features": int((~user_ids.isin(users_in["user_id"])).sum()),
        "content": len(content),
        "content_unknown_duration": int(content["duration_s"].isna().sum()),
    }
    drop = Drop(events, users, content, reconciliation)
    validate_drop(drop)
    return drop


def parse_title_year(titles: pd.Series) -> pd.Series:
    """1 January (UTC) of the release year in a MovieLens title ("Heat (1995)"), else NaT."""
    years = titles.str.extract(_TITLE_YEAR, expand=False)
    stamps = pd.to_datetime(years + "-01-01", format="%Y-%m-%d", utc=True, errors="coerce")
    return stamps.astype("datetime64[ms, UTC]")


def _movie_tags(movies: pd.DataFrame, tags: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per movie: category (first genre or "unknown") and tags (genres + free-text tags)."""
    genres = [
        [g.strip().lower() for g in str(s).split("|") if g.strip() and g.strip() != NO_GENRES]
        for s in movies["genres"]
    ]
    free = tags.assign(tag=tags["tag"].str.strip().str.lower())
    free = free.loc[free["tag"] != ""]
    by_movie = free.groupby("movieId")["tag"].agg(lambda s: sorted(set(s)))
    text_tags = movies["movieId"].map(by_movie)
    merged = [
        list(dict.fromkeys(g + (t if isinstance(t, list) else [])))
        for g, t in zip(genres, text_tags, strict=True)
    ]
    category = pd.Series([g[0] if g else UNKNOWN for g in genres], dtype=object)
    return category, pd.Series(merged, dtype=object)


def movielens_to_drop(
    ratings: pd.DataFrame,
    movies: pd.DataFrame,
    tags: pd.DataFrame,
    *,
    like_min_rating: float = LIKE_MIN_RATING,
    hide_max_rating: float = HIDE_MAX_RATING,
) -> Drop:
    """Map MovieLens (ratings.csv, movies.csv, tags.csv) onto a drop.

    Every rating is a ``complete_view`` carrying the rating, plus ``like`` at or above
    ``like_min_rating`` and ``hide`` at or below ``hide_max_rating``. Tag applications are not
    events: they only feed the content's ``tags``. See the module docstring for content rules.
    """
    if hide_max_rating >= like_min_rating:
        raise ValueError("hide_max_rating must be below like_min_rating")
    rows = _validated(_ML_RATINGS, ratings)
    films = _validated(_ML_MOVIES, movies)
    tag_rows = _validated(_ML_TAGS, tags)

    base = pd.DataFrame(
        {
            "_row": np.arange(len(rows), dtype=np.int64),
            "user_id": "ml_u" + rows["userId"].astype(str),
            "content_id": "ml_m" + rows["movieId"].astype(str),
            "timestamp": _utc_ms(rows["timestamp"], "s"),
        }
    )
    parts = [
        _emit(base, "complete_view", rating=rows["rating"].astype("float64")),
        _emit(base, "like", rows["rating"] >= like_min_rating),
        _emit(base, "hide", rows["rating"] <= hide_max_rating),
    ]
    events = _assemble_events(parts, "ml")

    user_ids = pd.Series(
        np.union1d(rows["userId"].to_numpy(), tag_rows["userId"].to_numpy()), dtype="int64"
    )
    users = _empty_users("ml_u" + user_ids.astype(str))

    films = films.sort_values("movieId", ignore_index=True)
    category, movie_tags = _movie_tags(films, tag_rows)
    title = films["title"].str.strip()
    content = _complete_content(
        pd.DataFrame(
            {
                "content_id": "ml_m" + films["movieId"].astype(str),
                "creator_id": UNKNOWN,
                "upload_timestamp": parse_title_year(title),
                "tags": movie_tags,
                "description": title,
                "category": category,
                "duration_s": np.nan,
            }
        )
    )

    unlisted = int((~rows["movieId"].isin(films["movieId"])).sum())
    if unlisted:
        logger.warning("movielens: %d ratings are for movies missing from movies.csv", unlisted)
    reconciliation = {
        "input_rows": len(rows),
        **_type_counts(events, ("complete_view", "like", "hide")),
        "events": len(events),
        "tag_applications": len(tag_rows),
        "users": len(users),
        "content": len(content),
        "content_unrated": int((~films["movieId"].isin(rows["movieId"])).sum()),
        "content_without_year": int(content["upload_timestamp"].isna().sum()),
        "ratings_for_unlisted_movies": unlisted,
    }
    drop = Drop(events, users, content, reconciliation)
    validate_drop(drop)
    return drop


def table_to_drop(
    parts: Mapping[str, pd.DataFrame],
    content: pd.DataFrame | None = None,
    *,
    like_min_rating: float = LIKE_MIN_RATING,
    hide_max_rating: float = HIDE_MAX_RATING,
) -> Drop:
    """Map ``user,item,rating,timestamp`` tables (a split brought as files) onto one drop.

    Each part (e.g. ``{"train": ..., "test": ...}``) keeps its name in its event ids
    (``<part>-<row>-<type>``), so the split survives ingestion. A row is a ``complete_view``
    carrying the rating, plus ``like`` / ``hide`` by the MovieLens thresholds when the rating is
    known. Ids are kept as given; ``content`` (``content_id`` plus any content column) describes
    the items, otherwise only their ids are known.
    """
    if hide_max_rating >= like_min_rating:
        raise ValueError("hide_max_rating must be below like_min_rating")
    frames = []
    for name, rows in parts.items():
        missing = {"user", "item", "timestamp"} - set(rows.columns)
        if missing:
            raise ValueError(f"{name}: missing column(s) {sorted(missing)}")
        rating = pd.to_numeric(rows["rating"], errors="coerce") if "rating" in rows else pd.Series(np.nan, index=rows.index)
        base = pd.DataFrame(
            {
                "_row": np.arange(len(rows), dtype=np.int64),
                "user_id": rows["user"].astype(str).to_numpy(),
                "content_id": rows["item"].astype(str).to_numpy(),
                "timestamp": pd.to_datetime(rows["timestamp"], utc=True).astype("datetime64[ms, UTC]").to_numpy(),
            }
        )
        r = pd.Series(rating.to_numpy(dtype="float64"), index=base.index)
        events = _assemble_events(
            [
                _emit(base, "complete_view", rating=r),
                _emit(base, "like", r >= like_min_rating),
                _emit(base, "hide", r <= hide_max_rating),
            ],
            str(name),
        )
        frames.append(events)
    events = pd.concat(frames, ignore_index=True)
    items = pd.Series(sorted(events["content_id"].unique()), dtype=object)
    if content is None:
        table = pd.DataFrame({"content_id": items, "creator_id": UNKNOWN, "category": UNKNOWN})
    else:
        table = content.copy()
        table["content_id"] = table["content_id"].astype(str)
        extra = items[~items.isin(table["content_id"])]
        table = pd.concat([table, pd.DataFrame({"content_id": extra})], ignore_index=True)
        for col in ("creator_id", "category"):
            table[col] = table[col].fillna(UNKNOWN) if col in table else UNKNOWN
    if "upload_timestamp" not in table:
        table["upload_timestamp"] = _null_timestamps(len(table))
    users = _empty_users(pd.Series(sorted(events["user_id"].unique()), dtype=object))
    reconciliation = {
        **{f"{name}_rows": len(rows) for name, rows in parts.items()},
        **_type_counts(events, ("complete_view", "like", "hide")),
        "events": len(events),
        "users": len(users),
        "content": len(table),
    }
    drop = Drop(events, users, _complete_content(table), reconciliation)
    validate_drop(drop)
    return drop


def to_arrow(frame: pd.DataFrame, schema: pa.Schema, what: str) -> pa.Table:
    """A frame as an Arrow table of exactly ``schema`` (types, nullability, no pandas metadata)."""
    if list(frame.columns) != schema.names:
        raise ValueError(f"{what}: columns {list(frame.columns)} != schema {schema.names}")
    try:
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ValueError(f"{what}: does not conform to its schema: {exc}") from exc
    return table.replace_schema_metadata(None)


def validate_drop(drop: Drop) -> None:
    """Raise ValueError unless the drop is one ingestion accepts in full.

    Checks: each table converts to its Arrow schema; event types are known; every event carries
    its type's required fields (non-null, and non-blank for text); event, user and content ids
    are unique; the reconciliation's per-type counts add up to ``events``.
    """
    to_arrow(drop.events, DROP_EVENT_SCHEMA, "events")
    to_arrow(drop.users, USER_SCHEMA, "users")
    to_arrow(drop.content, CONTENT_SCHEMA, "content")
    events = drop.events
    unknown = sorted(set(events["event_type"]) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"events: unknown event types {unknown}")
    for event_type, fields in REQUIRED_FIELDS.items():
        of_type = events.loc[events["event_type"] == event_type]
        for field in fields:
            values = of_type[field]
            missing = values.isna()
            if field in STRING_FIELDS:
                missing |= values.astype(str).str.strip() == ""
            if missing.any():
                raise ValueError(f"events: {int(missing.sum())} {event_type} events lack {field}")
    for frame, key, what in (
        (events, "event_id", "events"),
        (drop.users, "user_id", "users"),
        (drop.content, "content_id", "content"),
    ):
        if frame[key].duplicated().any():
            raise ValueError(f"{what}: duplicate {key}")
    rec = drop.reconciliation
    if rec.get("events") != len(events) or sum(rec.get(t, 0) for t in EVENT_TYPES) != len(events):
        raise ValueError(f"reconciliation does not account for the {len(events)} events: {rec}")


# --------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------


def read_kuairand(src: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The KuaiRand subset's interactions and user features, as stored in ``src``."""
    interactions = pd.read_csv(src / "interactions.tsv", sep="\t", dtype={"timestamp": str})
    user_features = pd.read_csv(src / "user_features.csv")
    return interactions, user_features


def read_movielens(src: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """MovieLens ratings, movies and tags; text is read verbatim (a tag "NA" stays "NA")."""
    ratings = pd.read_csv(
        src / "ratings.csv",
        dtype={"userId": "int64", "movieId": "int64", "rating": "float64", "timestamp": "int64"},
    )
    movies = pd.read_csv(
        src / "movies.csv",
        dtype={"movieId": "int64", "title": "str", "genres": "str"},
        keep_default_na=False,
    )
    tags = pd.read_csv(
        src / "tags.csv",
        dtype={"userId": "int64", "movieId": "int64", "tag": "str", "timestamp": "int64"},
        keep_default_na=False,
    )
    return ratings, movies, tags


def write_drop(drop: Drop, out_dir: Path) -> DropFiles:
    """Write a drop folder: events/part-00000.parquet, users/content Parquet, reconciliation.json.

    Idempotent: a re-run replaces the same files (each atomically). Refuses to write when
    ``events/`` holds other event files, which ingestion would read as part of this drop.
    """
    files = DropFiles(
        out_dir=out_dir,
        events=out_dir / EVENTS_FILE,
        users=out_dir / USERS_FILE,
        content=out_dir / CONTENT_FILE,
        reconciliation=out_dir / RECONCILIATION_FILE,
    )
    if files.events.parent.is_dir():
        foreign = sorted(
            p.name
            for p in files.events.parent.iterdir()
            if p.name != files.events.name and not p.name.startswith(".")
        )
        if foreign:
            raise ValueError(
                f"{files.events.parent} holds other files {foreign}; remove them first"
            )
    validate_drop(drop)
    tables = (
        (files.events, to_arrow(drop.events, DROP_EVENT_SCHEMA, "events")),
        (files.users, to_arrow(drop.users, USER_SCHEMA, "users")),
        (files.content, to_arrow(drop.content, CONTENT_SCHEMA, "content")),
    )
    for path, table in tables:
        # Compliant nested types would read back as list<element: …>, not the schema's list<item>.
        atomic_write_parquet(path, table, use_compliant_nested_type=False)
    atomic_write_json(files.reconciliation, drop.reconciliation, sort_keys=False)
    logger.info("wrote drop to %s: %d events", out_dir, len(drop.events))
    return files


def default_src(dataset: str) -> Path:
    """The vendored copy of a data set under the project root."""
    return DataPaths().of(f"dataset_{_checked_dataset(dataset)}")


def default_out(dataset: str) -> Path:
    """The drop folder a data set is converted into by default (``data/drops/<dataset>``)."""
    return DataPaths().of("drop", dataset=_checked_dataset(dataset))


def _checked_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    return dataset


def convert(dataset: str, src: Path) -> Drop:
    """Read a data set from ``src`` and map it onto a drop (no writing)."""
    if _checked_dataset(dataset) == "kuairand":
        return kuairand_to_drop(*read_kuairand(src))
    return movielens_to_drop(*read_movielens(src))


def run(dataset: str, src: Path, out: Path) -> RealDataOutputs:
    """Convert one vendored data set (``"kuairand"`` or ``"movielens"``) into a drop folder."""
    started = time.perf_counter()
    drop = convert(dataset, src)
    files = write_drop(drop, out)
    seconds = time.perf_counter() - started
    logger.info("%s: %s in %.2f s", dataset, drop.reconciliation, seconds)
    return RealDataOutputs(dataset, files, drop.reconciliation, seconds)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.data.realdata",
        description="Map a vendored real data set onto the project's drop format.",
    )
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--src", type=Path, help="data set folder (default: datasets/<name>)")
    parser.add_argument("--out", type=Path, help="drop folder (default: data/drops/<dataset>)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    src = args.src if args.src is not None else default_src(args.dataset)
    out = args.out if args.out is not None else default_out(args.dataset)
    try:
        result = run(args.dataset, src, out)
    except (ValueError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        return 1
    print(
        json.dumps(
            {
                "dataset": result.dataset,
                "out": str(result.files.out_dir),
                "seconds": round(result.seconds, 2),
                **result.reconciliation,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
