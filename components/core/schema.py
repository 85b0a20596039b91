"""The event, user and content schemas: event types, their required fields, and Arrow schemas.

One event log row per event. The specification's ``additional_info`` is stored flattened into
typed, nullable columns (``watch_duration_s``, ``comment_text``, ``platform``, ``creator_id``,
``reason``, ``metadata``), which keeps the log columnar; which of them an event type requires is
declared in :data:`REQUIRED_FIELDS`. The request context (device, OS, network) rides on every event.

Raw events are Parquet, Hive-partitioned by ``event_date`` (UTC calendar date of ``timestamp``).
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa


class EventType(StrEnum):
    # engagement
    LIKE = "like"
    COMMENT = "comment"
    SHARE = "share"
    FOLLOW = "follow"
    SAVE = "save"
    # consumption
    VIEW = "view"
    COMPLETE_VIEW = "complete_view"
    REPLAY = "replay"
    # negative
    SKIP = "skip"
    HIDE = "hide"
    REPORT = "report"
    UNFOLLOW = "unfollow"
    # supply
    CONTENT_UPLOAD = "content_upload"


EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)

# Named event-type sets: the one vocabulary every stage reads (never redefine one elsewhere).
# Tuples in ``EventType`` order, so that anything iterating them (feature columns) is stable.


def _of(*types: str) -> tuple[str, ...]:
    """``types`` in ``EventType`` order (every name must be an event type)."""
    unknown = set(types) - set(EVENT_TYPES)
    if unknown:
        raise ValueError(f"not event types: {sorted(unknown)}")
    return tuple(t for t in EVENT_TYPES if t in types)


#: Explicit engagement with a content or its creator.
ENGAGEMENT_TYPES: tuple[str, ...] = _of("like", "comment", "share", "follow", "save")
#: Watching a content.
CONSUMPTION_TYPES: tuple[str, ...] = _of("view", "complete_view", "replay")
#: Negative feedback, on a content (skip, hide, report) or on its creator (unfollow).
NEGATIVE_TYPES: tuple[str, ...] = _of("skip", "hide", "report", "unfollow")
#: Supply side: not behaviour of a viewer.
SUPPLY_TYPES: tuple[str, ...] = _of("content_upload")
#: Everything a viewer does (user features count these).
USER_EVENT_TYPES: tuple[str, ...] = tuple(t for t in EVENT_TYPES if t not in SUPPLY_TYPES)
#: Events about a creator rather than one content (they require ``creator_id``, not ``content_id``).
CREATOR_TYPES: tuple[str, ...] = _of("follow", "unfollow")
#: A viewer's events about one content: user events that are not about a creator.
CONTENT_EVENT_TYPES: tuple[str, ...] = tuple(t for t in USER_EVENT_TYPES if t not in CREATOR_TYPES)
#: Engagement with the content itself (a follow is about the creator).
CONTENT_ENGAGEMENT_TYPES: tuple[str, ...] = tuple(t for t in ENGAGEMENT_TYPES if t in CONTENT_EVENT_TYPES)
#: Negative feedback on the content itself: the ranking's negative label and the canary's
#: negative-feedback rate. ``unfollow`` is left out on purpose: it is about the creator.
CONTENT_NEGATIVE_TYPES: tuple[str, ...] = tuple(t for t in NEGATIVE_TYPES if t in CONTENT_EVENT_TYPES)
#: Feedback that removes a content from the user's feed for good.
BLOCKING_TYPES: tuple[str, ...] = _of("hide", "report")
#: The user saw the content (an exposure, whether or not it pleased them).
EXPOSURE_TYPES: tuple[str, ...] = _of("view", "skip")
#: Effortful positive actions (relevance grade 3 in ranking).
STRONG_POSITIVE_TYPES: tuple[str, ...] = _of("comment", "share", "follow", "save")
#: Light positive signals (relevance grade 2 in ranking).
LIGHT_POSITIVE_TYPES: tuple[str, ...] = _of("like", "complete_view", "replay")
#: Positive feedback: engagement plus watching to the end (ranking's engaged label, popularity,
#: exploration rewards, the real-time interest update in serving).
POSITIVE_TYPES: tuple[str, ...] = _of(*STRONG_POSITIVE_TYPES, *LIGHT_POSITIVE_TYPES)

#: Fields every event must carry.
BASE_REQUIRED: tuple[str, ...] = ("event_id", "event_type", "user_id", "timestamp")

#: Extra fields an event type must carry (the specification's additional info).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "like": ("content_id",),
    "comment": ("content_id", "comment_text"),
    "share": ("content_id", "platform"),
    "follow": ("creator_id",),
    "save": ("content_id",),
    "view": ("content_id", "watch_duration_s"),
    "complete_view": ("content_id",),
    "replay": ("content_id",),
    "skip": ("content_id",),
    "hide": ("content_id",),
    "report": ("content_id", "reason"),
    "unfollow": ("creator_id",),
    "content_upload": ("content_id", "creator_id", "metadata"),
}

#: Columns an incoming event may carry, and the Python type each must have in JSON.
STRING_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "user_id",
    "content_id",
    "comment_text",
    "platform",
    "creator_id",
    "reason",
    "metadata",
    "device_type",
    "os",
    "network",
)
NUMBER_FIELDS: tuple[str, ...] = ("watch_duration_s", "rating")
#: Free-text fields whose length is bounded (see ``ingest.max_text_chars`` in params).
TEXT_FIELDS: tuple[str, ...] = ("comment_text", "reason", "metadata", "platform")
#: Short free strings of the request context, bounded by ``ingest.max_field_chars``.
SHORT_FIELDS: tuple[str, ...] = ("device_type", "os", "network")
#: Identifier fields with a short length bound (see ``ingest.max_id_chars``).
ID_FIELDS: tuple[str, ...] = ("event_id", "user_id", "content_id", "creator_id")

EVENT_TIMESTAMP = pa.timestamp("ms", tz="UTC")

#: The raw event log as stored after ingestion (``event_date`` is the partition key).
EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),  # pseudonymised (keyed HMAC)
        pa.field("content_id", pa.string()),
        pa.field("timestamp", EVENT_TIMESTAMP, nullable=False),
        pa.field("watch_duration_s", pa.float64()),
        pa.field("rating", pa.float64()),
        pa.field("comment_text", pa.string()),
        pa.field("platform", pa.string()),
        pa.field("creator_id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("metadata", pa.string()),  # JSON text (content_upload)
        pa.field("device_type", pa.string()),
        pa.field("os", pa.string()),
        pa.field("network", pa.string()),
        pa.field("unknown_content", pa.bool_(), nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
    ]
)
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)

#: One row per quarantined input record, with the reason it was refused.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("record_no", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ]
)

#: User profile: demographics and declared preferences (user id pseudonymised at ingestion).
USER_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("age_group", pa.string()),
        pa.field("location", pa.string()),
        pa.field("language", pa.string()),
        pa.field("preferred_categories", pa.list_(pa.string())),
        pa.field("creators_followed", pa.list_(pa.string())),
        pa.field("signup_timestamp", EVENT_TIMESTAMP),
    ]
)

#: Content metadata; embedding vectors are optional (null when the data set has none).
CONTENT_SCHEMA = pa.schema(
    [
        pa.field("content_id", pa.string(), nullable=False),
        pa.field("creator_id", pa.string()),
        pa.field("upload_timestamp", EVENT_TIMESTAMP),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("description", pa.string()),
        pa.field("category", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("audio_id", pa.string()),
        pa.field("visual_embedding", pa.list_(pa.float32())),
        pa.field("audio_embedding", pa.list_(pa.float32())),
    ]
)

#: Cleaned events after preprocessing: raw columns plus session and content-derived columns.
CLEAN_EVENT_EXTRA = pa.schema(
    [
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("content_duration_s", pa.float64()),
        pa.field("duration_imputed", pa.bool_()),
        pa.field("watch_ratio", pa.float64()),
        pa.field("category", pa.string()),
    ]
)

SESSION_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("start", EVENT_TIMESTAMP, nullable=False),
        pa.field("end", EVENT_TIMESTAMP, nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("n_events", pa.int64(), nullable=False),
        pa.field("n_contents", pa.int64(), nullable=False),
        pa.field("watch_time_s", pa.float64(), nullable=False),
    ]
)

#: Request-context spellings seen in the wild, mapped to the project's vocabulary (preprocess
#: normalises the log with them; the request-time context features read requests with them).
DEVICE_ALIASES: dict[str, str] = {
    "iphone": "ios", "ipad": "ios", "ios": "ios", "apple": "ios",
    "android": "android", "andriod": "android",
    "web": "web", "desktop": "web", "browser": "web", "pc": "web",
}
OS_ALIASES: dict[str, str] = {
    "ios": "ios", "iphone os": "ios", "ipados": "ios",
    "android": "android",
    "windows": "windows", "win": "windows", "win10": "windows", "win11": "windows",
    "macos": "macos", "mac os x": "macos", "osx": "macos", "mac": "macos",
    "linux": "linux",
}
NETWORK_ALIASES: dict[str, str] = {
    "wifi": "wifi", "wi-fi": "wifi", "wlan": "wifi",
    "5g": "5g", "nr": "5g",
    "4g": "4g", "lte": "4g", "4g lte": "4g",
    "3g": "3g", "umts": "3g", "hspa": "3g",
    "2g": "2g", "edge": "2g",
}


#: Columns of an incoming event drop (Parquet or JSON Lines): the raw log without the columns
#: ingestion adds. ``user_id`` is the producer's raw id; ``timestamp`` is a UTC timestamp
#: (Parquet: ``timestamp[ms, UTC]``; JSON: ISO-8601 text or epoch milliseconds).
DROP_EVENT_SCHEMA = pa.schema(
    [f for f in EVENT_SCHEMA if f.name not in {"unknown_content", "event_date"}]
)

# A drop folder holds:
#   events/*.parquet | events/*.jsonl   events (DROP_EVENT_SCHEMA)
#   users.parquet                         USER_SCHEMA, raw user ids
#   content.parquet                       CONTENT_SCHEMA
