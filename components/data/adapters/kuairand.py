"""The KuaiRand subset adapter: interactions and user features onto a drop.

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
    null_timestamps,
    type_counts,
    utc_ms,
    validate_drop,
    validated,
)

logger = logging.getLogger(__name__)


#: ``comment_text`` of a KuaiRand comment event: the subset records that a comment was made, not
#: its text, and the schema requires a non-empty text on comment events.
COMMENT_NOT_IN_DATA = "[not in data set]"


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


def kuairand_to_drop(interactions: pd.DataFrame, user_features: pd.DataFrame) -> Drop:
    """Map the KuaiRand subset (interactions.tsv, user_features.csv) onto a drop.

    See the module docstring for the rules. Creator ids are not in the subset: ``follow``
    events and all content rows carry ``creator_id = "unknown"``; comment texts are not in it
    either: ``comment`` events carry ``comment_text = "[not in data set]"``; shares carry
    ``platform = "unknown"``. ``upload_timestamp`` is null (unknown), not the first time seen.
    """
    rows = validated(_KUAIRAND_INTERACTIONS, interactions)
    users_in = validated(_KUAIRAND_USERS, user_features)

    base = base_events(
        "kr_u" + rows["user_id"].astype(str),
        "kr_v" + rows["video_id"].astype(str),
        utc_ms(rows["time_ms"], "ms"),
    )
    parts = [
        emit(base, "view", watch_duration_s=rows["play_time_ms"] / 1000.0),
        emit(base, "complete_view", rows["long_view"] == 1),
        emit(base, "like", rows["label"] == 1),
        emit(base, "hide", rows["label"] == 0),
        emit(base, "comment", rows["is_comment"] == 1, comment_text=COMMENT_NOT_IN_DATA),
        emit(base, "share", rows["is_forward"] == 1, platform=UNKNOWN),
        emit(base, "follow", rows["is_follow"] == 1, creator_id=UNKNOWN),
    ]
    events = assemble_events(parts, "kr")

    user_ids = pd.Series(
        np.union1d(users_in["user_id"].to_numpy(), rows["user_id"].to_numpy()), dtype="int64"
    )
    users = empty_users("kr_u" + user_ids.astype(str))

    known = rows.loc[rows["duration_ms"] > 0]
    per_video = known.groupby("video_id")["duration_ms"].agg(["max", "nunique"])
    conflicting = int((per_video["nunique"] > 1).sum())
    if conflicting:
        logger.warning(
            "kuairand: %d videos have several durations; keeping the longest", conflicting
        )
    video_ids = pd.Series(np.unique(rows["video_id"].to_numpy()), dtype="int64")
    duration_s = video_ids.map(per_video["max"] / 1000.0).astype("float64")
    content = complete_content(
        pd.DataFrame(
            {
                "content_id": "kr_v" + video_ids.astype(str),
                "creator_id": UNKNOWN,
                "upload_timestamp": null_timestamps(len(video_ids)),
                "category": UNKNOWN,
                "duration_s": duration_s,
            }
        )
    )

    types = ("view", "complete_view", "like", "hide", "comment", "share", "follow")
    reconciliation = {
        "input_rows": len(rows),
        "exact_duplicate_rows": int(rows.duplicated().sum()),
        **type_counts(events, types),
        "events": len(events),
        "users": len(users),
        "users_without_features": int((~user_ids.isin(users_in["user_id"])).sum()),
        "content": len(content),
        "content_unknown_duration": int(content["duration_s"].isna().sum()),
    }
    drop = Drop(events, users, content, reconciliation)
    validate_drop(drop)
    return drop


def read_kuairand(src: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The KuaiRand subset's interactions and user features, as stored in ``src``."""
    interactions = pd.read_csv(src / "interactions.tsv", sep="\t", dtype={"timestamp": str})
    user_features = pd.read_csv(src / "user_features.csv")
    return interactions, user_features
