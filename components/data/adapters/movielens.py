"""The MovieLens adapter: ratings, movies and tags onto a drop.

MovieLens ml-latest-small (``datasets/ml-latest-small``, GroupLens licence in its README.txt):
every rating becomes a ``complete_view`` carrying ``rating``, plus a ``like`` when the rating is
≥ 4 and a ``hide`` when it is ≤ 1.5 (only the ``complete_view`` carries the rating, so each
rating is counted once). Tag applications are content text, not events. Content:
one row per movie of ``movies.csv``; category = first genre, lower-case (``(no genres listed)``
→ :data:`UNKNOWN`); tags = the genres then the movie's free-text tags, lower-case, stripped and
deduplicated; description = title; ``upload_timestamp`` = 1 January (UTC) of the year in the
title's trailing "(1995)" (or the first year of a range such as "(2006–2007)"), null without one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pdv

from components.data.adapters.drop import (
    UNKNOWN,
    Drop,
    assemble_events,
    base_events,
    complete_content,
    emit,
    empty_users,
    type_counts,
    utc_ms,
    validate_drop,
    validated,
)

logger = logging.getLogger(__name__)


#: MovieLens rating thresholds: a rating at or above ``LIKE_MIN_RATING`` also emits ``like``, at
#: or below ``HIDE_MAX_RATING`` also emits ``hide`` (explicit dislike).
LIKE_MIN_RATING = 4.0
HIDE_MAX_RATING = 1.5
NO_GENRES = "(no genres listed)"


# Title ends with "(1995)" or a range "(2006–2007)"; the first year is the release year.
_TITLE_YEAR = r"\((\d{4})(?:\s*[-–]\s*\d{4})?\)\s*$"


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
    rows = validated(_ML_RATINGS, ratings)
    films = validated(_ML_MOVIES, movies)
    tag_rows = validated(_ML_TAGS, tags)

    base = base_events(
        "ml_u" + rows["userId"].astype(str),
        "ml_m" + rows["movieId"].astype(str),
        utc_ms(rows["timestamp"], "s"),
    )
    parts = [
        emit(base, "complete_view", rating=rows["rating"].astype("float64")),
        emit(base, "like", rows["rating"] >= like_min_rating),
        emit(base, "hide", rows["rating"] <= hide_max_rating),
    ]
    events = assemble_events(parts, "ml")

    user_ids = pd.Series(
        np.union1d(rows["userId"].to_numpy(), tag_rows["userId"].to_numpy()), dtype="int64"
    )
    users = empty_users("ml_u" + user_ids.astype(str))

    films = films.sort_values("movieId", ignore_index=True)
    category, movie_tags = _movie_tags(films, tag_rows)
    title = films["title"].str.strip()
    content = complete_content(
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
        **type_counts(events, ("complete_view", "like", "hide")),
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
