"""Deterministic synthetic drops: users, content and an event log with a known preference structure.

The generator plays the producer side of the pipeline: it writes a drop folder in the format
described at the bottom of :mod:`components.core.schema` (``events/part-NNNNN.parquet``,
``users.parquet``, ``content.parquet``) plus ``truth.parquet``, the latent per-user category
interests, so later stages can be evaluated against true preferences.

Latent world
    Users have Dirichlet interests over categories (concentrated on a few), a few favourite
    creators, a heavy-tailed activity level, a preferred device (with matching OS) and a usual
    network. Creators have a main category; items inherit it (mostly), and have a latent quality,
    a lognormal duration (5-180 s), an upload time (60 % before ``start``, the rest spread over
    the period), tags, a description, an audio id and, for about half of them, a 16-d visual
    embedding clustered by category.

Sessions and impressions
    Each user gets sessions whose starts follow an hourly intensity (evening peak, weekend lift)
    and are at least 3 h apart, so a 30-minute inactivity gap always separates them; a session
    never lasts longer than 2 h. Inside a session impressions follow each other after the watch
    time plus a few seconds. The item of an impression is interest-driven (category from the
    user's interests, item by popularity x trend at that hour among items already uploaded), from
    a favourite creator, or - with probability ``exploration_share`` - uniform over uploaded items.

Outcome
    ``p = sigmoid(0.8 log-interest + 0.5 quality + favourite creator + night - 3g - web)`` shapes a
    Beta watch ratio (``view``; ``complete_view`` at >= 0.95; ``replay`` when it exceeds 1;
    ``skip`` under 0.1) and the odds of ``like``/``share``/``comment``/``save``/``follow``
    (high p) and ``hide``/``report``/``unfollow`` (low p). In-period uploads emit
    ``content_upload`` events from a pseudo user ``user_<creator_id>``.

Exactly ``n_events`` rows are written: sessions are planned with a margin (every impression
yields at least its ``view``), visited in a seeded random order and the stream is cut at
``n_events``, which thins sessions uniformly instead of cutting off the end of the period.
Each part is sorted by timestamp. A share ``bad_event_rate`` of rows is then made invalid in one
of five ways (negative watch time, far-future timestamp, duplicate ``event_id`` of an earlier
row, event type ``zap``, unknown content id) while keeping the Parquet types valid.

Hand-written on NumPy: no maintained library simulates short-video sessions with latent
interests (Faker and SDV model tabular marginals, not behaviour). Everything per event is
vectorised; Python loops run only over event types, digits, and items (upload metadata JSON).
Memory is bounded by ``chunk_events`` plus the session plan (about 35 bytes per planned session).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.core.config import Params, stage_context, stage_parser
from components.core.io import atomic_write_parquet
from components.core.catalog import PROJECT_ROOT, DataPaths
from components.core.schema import (
    CONTENT_SCHEMA,
    DROP_EVENT_SCHEMA,
    EVENT_TIMESTAMP,
    EVENT_TYPES,
    USER_SCHEMA,
)

logger = logging.getLogger(__name__)

MS_PER_S = 1_000
MS_PER_H = 3_600_000
MS_PER_DAY = 86_400_000

#: Layout of ``truth.parquet`` (long format: one row per user and category, sorted by both).
TRUTH_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("interest", pa.float64(), nullable=False),
    ]
)

# --- vocabularies -------------------------------------------------------------------------------

DEVICES = ("ios", "android", "web")
_DEVICE_P = (0.45, 0.42, 0.13)
DESKTOP_OS = ("windows", "macos", "linux")
_DESKTOP_OS_P = (0.6, 0.3, 0.1)
#: OS codes: 0 ios, 1 android, 2 + desktop OS (web sessions).
OS_NAMES = ("ios", "android", *DESKTOP_OS)
NETWORKS = ("wifi", "5g", "4g", "3g")
_NETWORK_P = (0.55, 0.15, 0.22, 0.08)
SHARE_PLATFORMS = ("whatsapp", "instagram", "messenger", "sms", "copy_link", "x")
_SHARE_P = (0.35, 0.2, 0.15, 0.1, 0.15, 0.05)
REPORT_REASONS = ("spam", "inappropriate", "misleading", "violence", "copyright", "other")
COMMENTS = (
    "love this",
    "so funny",
    "wow",
    "need more of this",
    "this is the best",
    "tutorial please",
    "who else is watching at night",
    "underrated",
    "came back to watch again",
    "not bad",
    "what song is this",
    "first",
    "this made my day",
    "how did you do that",
    "saving this",
)
AGE_GROUPS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
_AGE_P = (0.12, 0.33, 0.27, 0.15, 0.08, 0.05)
LOCATIONS = ("US", "GB", "DE", "FR", "BR", "IN", "JP", "MX", "ID", "NG")
_LOCATION_LANG = ("en", "en", "de", "fr", "pt", "hi", "ja", "es", "id", "en")
_LOCATION_P = (0.25, 0.08, 0.07, 0.06, 0.12, 0.12, 0.06, 0.09, 0.1, 0.05)
GENERAL_HASHTAGS = ("#fyp", "#foryou", "#viral", "#trending", "#new")
_GENERIC_SUFFIXES = (
    "vibes", "daily", "tips", "life", "clips", "fun", "pro", "hacks", "world", "moments",
)  # fmt: skip
_CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "dance": ("dance", "choreo", "moves", "trend", "hiphop", "kpop", "shuffle", "duet", "routine", "freestyle"),
    "comedy": ("funny", "prank", "skit", "joke", "meme", "parody", "standup", "lol", "roast", "bloopers"),
    "food": ("recipe", "cooking", "foodie", "baking", "streetfood", "mukbang", "vegan", "dessert", "pasta", "spicy"),
    "pets": ("dog", "cat", "puppy", "kitten", "pets", "cute", "rescue", "training", "parrot", "hamster"),
    "fitness": ("workout", "gym", "yoga", "cardio", "abs", "running", "stretch", "hiit", "gains", "pilates"),
    "beauty": ("makeup", "skincare", "nails", "hair", "glowup", "lipstick", "contour", "grwm", "lashes", "routine"),
    "fashion": ("outfit", "ootd", "style", "thrift", "haul", "streetwear", "sneakers", "vintage", "lookbook", "fit"),
    "travel": ("travel", "beach", "roadtrip", "hiking", "wanderlust", "city", "hotel", "island", "backpacking", "sunset"),
    "gaming": ("gaming", "minecraft", "speedrun", "esports", "gameplay", "clutch", "retro", "console", "pc", "boss"),
    "music": ("music", "cover", "singing", "guitar", "piano", "rap", "remix", "concert", "beat", "acoustic"),
    "sports": ("football", "basketball", "soccer", "skate", "highlights", "goal", "dunk", "tennis", "boxing", "surf"),
    "diy": ("diy", "crafts", "woodworking", "hack", "upcycle", "build", "repair", "garden", "decor", "tools"),
    "education": ("learn", "science", "history", "math", "facts", "language", "study", "explained", "physics", "tips"),
    "tech": ("tech", "gadgets", "phone", "unboxing", "coding", "ai", "setup", "review", "robot", "laptop"),
    "art": ("art", "drawing", "painting", "sketch", "digitalart", "pottery", "calligraphy", "timelapse", "anime", "portrait"),
    "cars": ("cars", "supercar", "drift", "tuning", "motorcycle", "ev", "racing", "engine", "restoration", "offroad"),
    "nature": ("nature", "wildlife", "ocean", "forest", "birds", "mountains", "flowers", "storm", "camping", "sunrise"),
    "family": ("family", "kids", "baby", "parenting", "wedding", "mom", "dad", "siblings", "grandma", "toddler"),
    "asmr": ("asmr", "satisfying", "slime", "relaxing", "whisper", "soap", "cutting", "tapping", "crunchy", "calm"),
    "news": ("news", "politics", "explainer", "breaking", "economy", "climate", "debate", "interview", "world", "update"),
}  # fmt: skip
_VOCAB_SIZE = 10

#: Relative session-start intensity per UTC hour of day (evening peak, night trough).
_HOURLY = np.array(
    [0.75, 0.5, 0.32, 0.22, 0.18, 0.2, 0.32, 0.5, 0.6, 0.62, 0.65, 0.72,
     0.85, 0.82, 0.78, 0.8, 0.9, 1.05, 1.25, 1.45, 1.65, 1.7, 1.45, 1.05]
)  # fmt: skip
_WEEKEND_LIFT = 1.15

# --- latent-structure constants (the generator's design, not tunables of the specification) -----

_N_FAV = 3  # favourite creators per user
_PRE_PERIOD_SHARE = 0.6  # share of items uploaded before ``start``
_PRE_PERIOD_DAYS = 60
_FOLLOWING_SHARE = 0.1  # of non-exploration impressions: from a favourite creator
_SESSION_MEAN = 12  # planned impressions per session (before heavy users stretch it)
_SESSION_MAX = 200  # impressions per session
_SESSION_WINDOW_MS = 2 * MS_PER_H  # impressions beyond this offset in a session are dropped
_SESSION_SPACING_MS = (
    3 * MS_PER_H
)  # min start-to-start gap of a user's sessions (> window + 30 min)
_PLAN_MARGIN = 1.1  # planned impressions per requested event (>= 1 event per impression)
_MAX_BUCKET_CELLS = 4_000_000  # (time bucket x item) cells of the popularity table
_EMB_DIM = 16
_FAR_FUTURE_MS = 50 * 365 * MS_PER_DAY  # shift of the "timestamp in the far future" bad events

_T_VIEW, _T_COMPLETE, _T_REPLAY, _T_SKIP = (EVENT_TYPES.index(t) for t in ("view", "complete_view", "replay", "skip"))  # fmt: skip
_T_LIKE, _T_SHARE, _T_COMMENT, _T_SAVE = (EVENT_TYPES.index(t) for t in ("like", "share", "comment", "save"))  # fmt: skip
_T_FOLLOW, _T_UNFOLLOW, _T_HIDE, _T_REPORT = (EVENT_TYPES.index(t) for t in ("follow", "unfollow", "hide", "report"))  # fmt: skip
_T_UPLOAD = EVENT_TYPES.index("content_upload")
_T_ZAP = len(EVENT_TYPES)  # code of the invalid event type
_TYPE_NAMES = (*EVENT_TYPES, "zap")
#: The ways a deliberately invalid event is broken (one per bad row).
BAD_KINDS = (
    "negative_watch",
    "future_timestamp",
    "duplicate_id",
    "unknown_type",
    "unknown_content",
)

_EVENT_FIELDS = ("unit", "ts", "user", "item", "etype", "watch", "aux", "creator", "device", "os", "net")  # fmt: skip
_Events = dict[str, np.ndarray]  # numeric event columns, see _EVENT_FIELDS


# --- parameters and results ---------------------------------------------------------------------


@dataclass(frozen=True)
class GenParams:
    """Size, period and noise of the synthetic drop (``params.yaml``: ``base.seed`` + ``datagen``)."""

    seed: int
    n_users: int
    n_items: int
    n_creators: int
    n_categories: int
    n_events: int
    start: str
    days: int
    bad_event_rate: float
    exploration_share: float
    chunk_events: int

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_creators", "n_categories", "n_events", "days", "chunk_events"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"datagen.{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"base.seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 <= self.bad_event_rate < 0.5:
            raise ValueError(
                f"datagen.bad_event_rate must be in [0, 0.5), got {self.bad_event_rate}"
            )
        if not 0.0 <= self.exploration_share <= 1.0:
            raise ValueError(
                f"datagen.exploration_share must be in [0, 1], got {self.exploration_share}"
            )
        try:
            dt.date.fromisoformat(self.start)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"datagen.start must be an ISO date, got {self.start!r}") from exc

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> GenParams:
        """Build from the validated params: ``base.seed`` and the ``datagen`` section."""
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.datagen.model_dump())

    @property
    def start_ms(self) -> int:
        """Period start (UTC midnight of ``start``) in epoch milliseconds."""
        day = dt.datetime.combine(dt.date.fromisoformat(self.start), dt.time(), tzinfo=dt.UTC)
        return int(day.timestamp()) * MS_PER_S

    @property
    def end_ms(self) -> int:
        """Period end (exclusive) in epoch milliseconds."""
        return self.start_ms + self.days * MS_PER_DAY


@dataclass(frozen=True)
class GenSummary:
    """What :func:`write_drop` wrote."""

    n_events: int
    n_users: int
    n_items: int
    n_bad: int
    files: tuple[Path, ...]
    seconds: float


@dataclass(frozen=True, eq=False)
class EventPart:
    """One output part of the event log and how many deliberately invalid rows it holds."""

    index: int
    table: pa.Table
    n_bad: int


@dataclass(frozen=True, eq=False)
class World:
    """The latent world: observable tables plus the hidden arrays the event simulation needs."""

    params: GenParams
    categories: tuple[str, ...]
    users: pa.Table  # USER_SCHEMA
    content: pa.Table  # CONTENT_SCHEMA
    truth: pa.Table  # TRUTH_SCHEMA
    interest: np.ndarray  # (n_users, n_categories), rows sum to 1
    interest_flat: np.ndarray  # cumulative interest, row u shifted by u (row-wise sampling)
    activity: np.ndarray  # (n_users,) heavy-tailed
    user_device: np.ndarray  # code into DEVICES
    user_desktop_os: np.ndarray  # code into DESKTOP_OS
    user_network: np.ndarray  # code into NETWORKS
    fav: np.ndarray  # (n_users, _N_FAV) creator codes
    item_creator: np.ndarray
    item_category: np.ndarray
    item_quality: np.ndarray
    item_duration_s: np.ndarray
    item_upload_ms: np.ndarray
    bucket_ms: int  # width of a popularity time bucket
    cat_order: np.ndarray  # items sorted by category
    cat_start: np.ndarray  # (n_categories + 1,) offsets into cat_order
    pop_cum: np.ndarray  # cumulative popularity x trend over (bucket, cat_order), leading 0
    upload_order: np.ndarray  # items sorted by upload time
    upload_sorted_ms: np.ndarray
    creator_order: np.ndarray  # items sorted by (creator, upload time)
    creator_start: np.ndarray  # (n_creators + 1,) offsets into creator_order
    creator_key: np.ndarray  # creator * key_span + upload offset, along creator_order
    key_span: int
    key_origin_ms: int
    user_ids: pa.Array  # raw user ids, then the creators' pseudo user ids
    item_ids: pa.Array
    creator_ids: pa.Array
    metadata: pa.Array  # JSON text for items uploaded in the period, else null


# --- small vectorised helpers -------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent, reproducible stream for one purpose (world, plan, batch i, part i)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _pick(
    rng: np.random.Generator, n: int, size: int, p: Sequence[float] | np.ndarray
) -> np.ndarray:
    """``size`` codes in ``0 .. n - 1`` with probabilities ``p``."""
    return np.asarray(rng.choice(n, size=size, p=np.asarray(p, dtype=np.float64)))


def _number_strings(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` as an Arrow string array, built without Python loops."""
    n = len(numbers)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    row = len(head) + width
    if n * row >= 2**31:
        raise ValueError("too many ids for one string array; lower chunk_events")
    buf = np.empty((n, row), dtype=np.uint8)
    buf[:, : len(head)] = head
    rest = np.asarray(numbers, dtype=np.int64).copy()
    for col in range(row - 1, len(head) - 1, -1):  # loop over digits, not rows
        buf[:, col] = rest % 10 + 48
        rest //= 10
    offsets = np.arange(0, (n + 1) * row, row, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])


def _width(n: int, minimum: int) -> int:
    """Digits needed for ids ``0 .. n - 1``."""
    return max(minimum, len(str(max(n - 1, 0))))


def _row_categorical(flat: np.ndarray, m: int, rows: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Draw one column per entry of ``rows`` from row-wise cumulative probabilities.

    ``flat`` is the (n_rows, m) cumulative matrix with row ``i`` shifted by ``i``, raveled, so one
    ``searchsorted`` serves every row at once.
    """
    idx = np.searchsorted(flat, rows + r, side="right") - rows * m
    return np.clip(idx, 0, m - 1)


def _segment_starts(lengths: np.ndarray) -> np.ndarray:
    """Start offset of each segment of the given lengths."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def _list_array(offsets: np.ndarray, values: pa.Array, mask: np.ndarray | None = None) -> pa.Array:
    """A ``list<…>`` array from offsets and flat values (``mask`` marks null rows)."""
    arr_mask = None if mask is None else pa.array(mask)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values, mask=arr_mask)


def _take(values: pa.Array, codes: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """``values[codes]`` as Arrow, null where ``valid`` is false."""
    idx = pa.array(codes.astype(np.int64), mask=None if valid is None else ~valid)
    return values.take(idx)


def _category_vocab(n: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Category names and their (n, _VOCAB_SIZE) word table; synthetic topics beyond the list."""
    names: list[str] = []
    rows: list[tuple[str, ...]] = []
    for k in range(n):
        if k < len(_CATEGORY_WORDS):
            name = list(_CATEGORY_WORDS)[k]
            words = _CATEGORY_WORDS[name]
        else:
            name = f"topic{k:03d}"
            words = tuple(f"{name}{s}" for s in _GENERIC_SUFFIXES)
        names.append(name)
        rows.append(words[:_VOCAB_SIZE])
    return tuple(names), np.array(rows, dtype=object)


def _trend(age_days: np.ndarray, tau_days: np.ndarray) -> np.ndarray:
    """Popularity multiplier by age: rises over the first hours, decays over days, small floor."""
    age = np.maximum(age_days, 0.0)
    curve = (1.0 - np.exp(-age / 0.25)) * np.exp(-age / tau_days) + 0.03
    return np.where(age_days >= 0, curve, 0.0)


def _intensity_grid(p: GenParams) -> tuple[np.ndarray, np.ndarray, float]:
    """Hour boundaries (ms offsets), the cumulative "activity time" at them, and the peak rate.

    Activity time runs at the hourly intensity, normalised to average 1 over the period, so
    uniform points in activity time are session starts with the intended time-of-day profile.
    """
    hours = np.arange(p.days * 24)
    weekday0 = dt.date.fromisoformat(p.start).weekday()
    weekend = ((weekday0 + hours // 24) % 7) >= 5
    lam = _HOURLY[hours % 24] * np.where(weekend, _WEEKEND_LIFT, 1.0)
    lam = lam / lam.mean()
    t_grid = np.arange(len(hours) + 1, dtype=np.float64) * MS_PER_H
    tau_grid = np.concatenate([[0.0], np.cumsum(lam) * MS_PER_H])
    return t_grid, tau_grid, float(lam.max())


# --- the latent world ---------------------------------------------------------------------------


def make_world(p: GenParams) -> World:
    """Draw users, creators and items with their latent preferences, quality and popularity."""
    rng = _rng(p.seed, 0)
    n_cat, n_users, n_items, n_creators = p.n_categories, p.n_users, p.n_items, p.n_creators
    start_ms, end_ms = p.start_ms, p.end_ms
    categories, words = _category_vocab(n_cat)
    cat_names = pa.array(categories, pa.string())
    cat_pop = rng.dirichlet(np.full(n_cat, 3.0))

    # users: concentrated interests (popular categories more often), heavy-tailed activity
    interest = rng.dirichlet(0.1 + 1.5 * cat_pop, size=n_users) + 1e-6
    interest /= interest.sum(axis=1, keepdims=True)
    cum = np.cumsum(interest, axis=1)
    cum[:, -1] = 1.0
    interest_flat = (cum + np.arange(n_users)[:, None]).ravel()
    activity = rng.lognormal(0.0, 1.0, n_users)
    device = _pick(rng, len(DEVICES), n_users, _DEVICE_P).astype(np.int8)
    desktop_os = _pick(rng, len(DESKTOP_OS), n_users, _DESKTOP_OS_P).astype(np.int8)
    network = _pick(rng, len(NETWORKS), n_users, _NETWORK_P).astype(np.int8)
    network[(device == 2) & (rng.random(n_users) < 0.7)] = 0  # web mostly on wifi

    # creators and each user's favourites (a creator of a category the user likes)
    creator_cat = _pick(rng, n_cat, n_creators, cat_pop)
    creator_pop = rng.normal(0.0, 1.0, n_creators)
    creator_rate = rng.lognormal(0.0, 1.0, n_creators)
    n_fav = min(_N_FAV, n_creators)
    fav_rows = np.repeat(np.arange(n_users), n_fav)
    fav_cat = _row_categorical(interest_flat, n_cat, fav_rows, rng.random(len(fav_rows)))
    by_cat = np.argsort(creator_cat, kind="stable")
    by_cat_start = np.searchsorted(creator_cat[by_cat], np.arange(n_cat + 1))
    count = by_cat_start[fav_cat + 1] - by_cat_start[fav_cat]
    pick = by_cat_start[fav_cat] + np.floor(rng.random(len(fav_rows)) * count).astype(np.int64)
    fav = np.where(
        count > 0,
        by_cat[np.minimum(pick, n_creators - 1)],
        rng.integers(0, n_creators, len(fav_rows)),
    ).reshape(n_users, n_fav)

    # items
    item_creator = _pick(rng, n_creators, n_items, creator_rate / creator_rate.sum())
    item_cat = np.where(
        rng.random(n_items) < 0.85, creator_cat[item_creator], _pick(rng, n_cat, n_items, cat_pop)
    )
    quality = rng.normal(0.0, 1.0, n_items)
    duration = np.round(np.clip(rng.lognormal(np.log(22.0), 0.75, n_items), 5.0, 180.0), 1)
    pre = rng.random(n_items) < _PRE_PERIOD_SHARE
    pre[0] = True  # something is always on the shelf at ``start``
    upload_ms = np.where(
        pre,
        start_ms - rng.integers(1, _PRE_PERIOD_DAYS * MS_PER_DAY, n_items),
        start_ms + rng.integers(0, p.days * MS_PER_DAY, n_items),
    ).astype(np.int64)
    tau_days = rng.lognormal(np.log(4.0), 0.5, n_items)
    pop = np.exp(0.6 * quality + 0.4 * creator_pop[item_creator] + rng.normal(0.0, 0.6, n_items))

    # popularity x trend per time bucket, cumulated over items sorted by category
    bucket_h = max(1, math.ceil(p.days * 24 * n_items / _MAX_BUCKET_CELLS))
    bucket_ms = bucket_h * MS_PER_H
    n_buckets = math.ceil(p.days * MS_PER_DAY / bucket_ms)
    cat_order = np.argsort(item_cat, kind="stable")
    cat_start = np.searchsorted(item_cat[cat_order], np.arange(n_cat + 1))
    bucket_t = start_ms + np.arange(n_buckets, dtype=np.int64) * bucket_ms
    age = (bucket_t[:, None] - upload_ms[cat_order][None, :]) / MS_PER_DAY
    weight = pop[cat_order][None, :] * _trend(age, tau_days[cat_order][None, :])
    pop_cum = np.concatenate([[0.0], np.cumsum(weight.ravel())])
    del age, weight

    upload_order = np.argsort(upload_ms, kind="stable")
    creator_order = np.lexsort((upload_ms, item_creator))
    creator_start = np.searchsorted(item_creator[creator_order], np.arange(n_creators + 1))
    key_origin = int(upload_ms.min())
    key_span = int(upload_ms.max()) - key_origin + 1
    creator_key = item_creator[creator_order].astype(np.int64) * key_span + (
        upload_ms[creator_order] - key_origin
    )

    # observable tables
    user_ids = _number_strings("user_", np.arange(n_users), _width(n_users, 6))
    item_ids = _number_strings("video_", np.arange(n_items), _width(n_items, 6))
    creator_ids = _number_strings("creator_", np.arange(n_creators), _width(n_creators, 5))
    pseudo_ids = pc.binary_join_element_wise("user_", creator_ids, "")
    all_user_ids = pa.concat_arrays([user_ids, pseudo_ids])

    users = _users_table(rng, p, user_ids, creator_ids, interest, fav, cat_names)
    content, tags_py = _content_table(
        rng, p, words, cat_names, item_ids, creator_ids, item_creator, item_cat, duration, upload_ms
    )
    metadata = _upload_metadata(content, tags_py, upload_ms >= start_ms)
    truth = pa.Table.from_arrays(
        [
            user_ids.take(pa.array(np.repeat(np.arange(n_users), n_cat))),
            cat_names.take(pa.array(np.tile(np.arange(n_cat), n_users))),
            pa.array(interest.ravel()),
        ],
        schema=TRUTH_SCHEMA,
    )
    logger.debug("world: %d users, %d items, %d time buckets", n_users, n_items, n_buckets)
    assert end_ms > start_ms
    return World(
        params=p,
        categories=categories,
        users=users,
        content=content,
        truth=truth,
        interest=interest,
        interest_flat=interest_flat,
        activity=activity,
        user_device=device,
        user_desktop_os=desktop_os,
        user_network=network,
        fav=fav,
        item_creator=item_creator,
        item_category=item_cat,
        item_quality=quality,
        item_duration_s=duration,
        item_upload_ms=upload_ms,
        bucket_ms=bucket_ms,
        cat_order=cat_order,
        cat_start=cat_start,
        pop_cum=pop_cum,
        upload_order=upload_order,
        upload_sorted_ms=upload_ms[upload_order],
        creator_order=creator_order,
        creator_start=creator_start,
        creator_key=creator_key,
        key_span=key_span,
        key_origin_ms=key_origin,
        user_ids=all_user_ids,
        item_ids=item_ids,
        creator_ids=creator_ids,
        metadata=metadata,
    )


def _users_table(
    rng: np.random.Generator,
    p: GenParams,
    user_ids: pa.Array,
    creator_ids: pa.Array,
    interest: np.ndarray,
    fav: np.ndarray,
    cat_names: pa.Array,
) -> pa.Table:
    """User profiles: declared categories are a noisy top-k of the true interests (k may be 0)."""
    n_users, n_cat = interest.shape
    k = np.minimum(_pick(rng, 4, n_users, (0.1, 0.3, 0.4, 0.2)), n_cat)
    noisy = interest * rng.lognormal(0.0, 0.4, interest.shape)
    top = np.argsort(-noisy, axis=1, kind="stable")
    declared = top[np.arange(n_cat)[None, :] < k[:, None]]
    pref = _list_array(
        np.concatenate([[0], np.cumsum(k)]), cat_names.take(pa.array(declared)), mask=k == 0
    )
    fav_sorted = np.sort(fav, axis=1)
    keep = np.ones_like(fav_sorted, dtype=bool)
    keep[:, 1:] = fav_sorted[:, 1:] != fav_sorted[:, :-1]
    followed = _list_array(
        np.concatenate([[0], np.cumsum(keep.sum(axis=1))]),
        creator_ids.take(pa.array(fav_sorted[keep])),
    )
    location = _pick(rng, len(LOCATIONS), n_users, _LOCATION_P)
    signup = p.start_ms - rng.integers(MS_PER_DAY, 1000 * MS_PER_DAY, n_users)
    return pa.Table.from_arrays(
        [
            user_ids,
            _take(pa.array(AGE_GROUPS), _pick(rng, len(AGE_GROUPS), n_users, _AGE_P)),
            _take(pa.array(LOCATIONS), location),
            _take(pa.array(_LOCATION_LANG), location),
            pref,
            followed,
            pa.array(signup.astype(np.int64)).cast(EVENT_TIMESTAMP),
        ],
        schema=USER_SCHEMA,
    )


def _content_table(
    rng: np.random.Generator,
    p: GenParams,
    words: np.ndarray,
    cat_names: pa.Array,
    item_ids: pa.Array,
    creator_ids: pa.Array,
    item_creator: np.ndarray,
    item_cat: np.ndarray,
    duration: np.ndarray,
    upload_ms: np.ndarray,
) -> tuple[pa.Table, pa.Array]:
    """Content metadata: tags (category words + hashtags), description, audio, embeddings."""
    n_items = len(item_cat)
    n_cat = len(cat_names)
    vocab = pa.array(words.ravel().tolist(), pa.string())
    hashtags = pa.array([f"#{c}" for c in cat_names.to_pylist()] + list(GENERAL_HASHTAGS))

    # tags: 2-4 category words followed by 1-2 hashtags (the first usually "#<category>")
    n_words = rng.integers(2, 5, n_items)
    n_hash = rng.integers(1, 3, n_items)
    n_tags = n_words + n_hash
    offsets = np.concatenate([[0], np.cumsum(n_tags)])
    row = np.repeat(np.arange(n_items), n_tags)
    rank = np.arange(len(row)) - offsets[row]
    is_word = rank < n_words[row]
    word_code = item_cat[row] * _VOCAB_SIZE + rng.integers(0, _VOCAB_SIZE, len(row))
    general = n_cat + rng.integers(0, len(GENERAL_HASHTAGS), len(row))
    first_hash = (rank == n_words[row]) & (rng.random(len(row)) < 0.7)
    hash_code = np.where(first_hash, item_cat[row], general)
    all_words = pa.concat_arrays([vocab, hashtags])
    code = np.where(is_word, word_code, len(vocab) + hash_code)
    tags = _list_array(offsets, all_words.take(pa.array(code)))

    # description: 3-6 category words
    n_desc = rng.integers(3, 7, n_items)
    d_off = np.concatenate([[0], np.cumsum(n_desc)])
    d_row = np.repeat(np.arange(n_items), n_desc)
    d_code = item_cat[d_row] * _VOCAB_SIZE + rng.integers(0, _VOCAB_SIZE, len(d_row))
    description = pc.utf8_capitalize(
        pc.binary_join(_list_array(d_off, vocab.take(pa.array(d_code))), " ")
    )

    # audio: a per-category pool with a few dominant sounds
    per_cat = max(2, n_items // (4 * n_cat))
    audio = item_cat * per_cat + np.floor(per_cat * rng.random(n_items) ** 2).astype(np.int64)
    audio_ids = _number_strings("audio_", audio, _width(per_cat * n_cat, 6))

    # visual embedding for about half the items: category centroid + noise, unit length
    centroids = rng.normal(0.0, 1.0, (n_cat, _EMB_DIM))
    emb = centroids[item_cat] + rng.normal(0.0, 0.7, (n_items, _EMB_DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    has_emb = rng.random(n_items) < 0.5
    e_off = np.concatenate([[0], np.cumsum(has_emb * _EMB_DIM)])
    visual = _list_array(e_off, pa.array(emb[has_emb].astype(np.float32).ravel()), mask=~has_emb)

    table = pa.Table.from_arrays(
        [
            item_ids,
            _take(creator_ids, item_creator),
            pa.array(upload_ms).cast(EVENT_TIMESTAMP),
            tags,
            description,
            _take(cat_names, item_cat),
            pa.array(duration, pa.float64()),
            audio_ids,
            visual,
            pa.nulls(n_items, pa.list_(pa.float32())),
        ],
        schema=CONTENT_SCHEMA,
    )
    return table, tags


def _upload_metadata(content: pa.Table, tags: pa.Array, in_period: np.ndarray) -> pa.Array:
    """JSON text of tags/description/category/duration for items uploaded in the period."""
    out: list[str | None] = [None] * content.num_rows
    rows = np.flatnonzero(in_period)
    if len(rows):
        idx = pa.array(rows)
        sub_tags = tags.take(idx).to_pylist()
        desc = content.column("description").take(idx).to_pylist()
        cat = content.column("category").take(idx).to_pylist()
        dur = content.column("duration_s").take(idx).to_pylist()
        for j, i in enumerate(rows.tolist()):  # per item, not per event
            out[i] = orjson.dumps(
                {
                    "category": cat[j],
                    "tags": sub_tags[j],
                    "description": desc[j],
                    "duration_s": dur[j],
                }
            ).decode()
    return pa.array(out, pa.string())


# --- session plan -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Plan:
    """Planned sessions plus in-period uploads, in the seeded order they are simulated."""

    user: np.ndarray
    start_ms: np.ndarray
    length: np.ndarray
    device: np.ndarray
    os: np.ndarray
    net: np.ndarray
    upload_items: np.ndarray
    order: np.ndarray  # permutation of units: sessions are 0..S-1, uploads S..S+U-1
    cum_weight: np.ndarray  # cumulative planned impressions along ``order`` (an upload counts 1)


def _water_fill(demand: np.ndarray, cap: float) -> np.ndarray:
    """Cap per-user demand and hand the excess to the others in proportion."""
    out = demand.astype(np.float64).copy()
    for _ in range(50):
        over = out > cap
        excess = float((out[over] - cap).sum())
        if excess <= 1e-9:
            break
        out[over] = cap
        free = ~over & (out < cap)
        if not free.any():
            break
        out[free] += excess * out[free] / out[free].sum()
    return np.minimum(out, cap)


def _plan(world: World) -> _Plan:
    """Sessions per user (by activity), their lengths, start times and context."""
    p = world.params
    rng = _rng(p.seed, 1)
    n_users = p.n_users
    period = p.days * MS_PER_DAY
    t_grid, tau_grid, lam_max = _intensity_grid(p)
    spacing = _SESSION_SPACING_MS * lam_max  # in activity time: >= _SESSION_SPACING_MS real time
    k_max = max(1, int(period // spacing))
    cap = float(k_max * _SESSION_MAX)
    need = math.ceil(p.n_events * _PLAN_MARGIN) + 100
    if need > 0.9 * cap * n_users:
        raise ValueError(
            f"n_events={p.n_events} is more than {n_users} users can watch in {p.days} days "
            f"(at most ~{int(0.9 * cap * n_users / _PLAN_MARGIN)}); raise n_users or days"
        )
    share = world.activity / world.activity.sum()
    scale = 1.0
    for _ in range(20):
        demand = _water_fill(need * scale * share, cap)
        k = np.clip(np.ceil(demand / _SESSION_MEAN), 1, k_max).astype(np.int64)
        mean_extra = np.maximum(demand / k - 1.0, 0.0)
        sess_user = np.repeat(np.arange(n_users), k)
        extra = mean_extra[sess_user]
        length = 1 + rng.negative_binomial(2, 2.0 / (2.0 + extra))
        length = np.minimum(length, _SESSION_MAX)
        total = int(length.sum())
        if total >= need:
            break
        scale *= 1.05 * need / total
    else:
        raise RuntimeError("could not plan enough impressions")

    # starts: sorted uniforms in activity time with a minimum spacing, mapped back to real time
    n_sess = len(sess_user)
    first = _segment_starts(k)
    span = period - (k - 1) * spacing
    v = rng.random(n_sess) * span[sess_user]
    v = v[np.lexsort((v, sess_user))]
    rank = np.arange(n_sess) - first[sess_user]
    tau = v + rank * spacing
    start = p.start_ms + np.interp(tau, tau_grid, t_grid).astype(np.int64)

    # per-session context: usually the user's own device / network
    dev = np.where(
        rng.random(n_sess) < 0.9,
        world.user_device[sess_user],
        _pick(rng, len(DEVICES), n_sess, _DEVICE_P),
    ).astype(np.int8)
    os_code = np.where(dev == 2, 2 + world.user_desktop_os[sess_user], dev).astype(np.int8)
    net = np.where(
        rng.random(n_sess) < 0.75,
        world.user_network[sess_user],
        _pick(rng, len(NETWORKS), n_sess, _NETWORK_P),
    ).astype(np.int8)

    uploads = np.flatnonzero(world.item_upload_ms >= p.start_ms)
    order = rng.permutation(n_sess + len(uploads))
    weight = np.concatenate([length, np.ones(len(uploads), dtype=np.int64)])
    logger.debug("plan: %d sessions, %d impressions, %d uploads", n_sess, total, len(uploads))
    return _Plan(
        user=sess_user.astype(np.int32),
        start_ms=start,
        length=length.astype(np.int32),
        device=dev,
        os=os_code,
        net=net,
        upload_items=uploads,
        order=order,
        cum_weight=np.cumsum(weight[order]),
    )


# --- event simulation ---------------------------------------------------------------------------


def _choose_items(
    world: World,
    rng: np.random.Generator,
    user: np.ndarray,
    t0: np.ndarray,
) -> np.ndarray:
    """Pick an item per impression: favourite creator, interest x popularity, or exploration."""
    p = world.params
    n = len(user)
    n_cat = p.n_categories
    item = np.full(n, -1, dtype=np.int64)
    r_mode = rng.random(n)
    explore = r_mode < p.exploration_share
    following = ~explore & (
        r_mode < p.exploration_share + (1.0 - p.exploration_share) * _FOLLOWING_SHARE
    )

    # from a favourite creator: newer uploads more likely, only those already uploaded
    idx = np.flatnonzero(following)
    fav = world.fav[user[idx], rng.integers(0, world.fav.shape[1], len(idx))]
    lo = world.creator_start[fav]
    offset = np.minimum(t0[idx] - world.key_origin_ms, world.key_span - 1)
    n_up = np.searchsorted(world.creator_key, fav * world.key_span + offset, side="right") - lo
    r = rng.random(len(idx))
    ok = n_up > 0
    pick = lo + n_up - 1 - np.floor(n_up * r**2).astype(np.int64)
    item[idx[ok]] = world.creator_order[pick[ok]]

    # interest-driven: category from the user's interests, item by popularity x trend
    idx = np.flatnonzero(~explore & (item < 0))
    cat = _row_categorical(world.interest_flat, n_cat, user[idx], rng.random(len(idx)))
    base = (t0[idx] - p.start_ms) // world.bucket_ms * p.n_items
    lo_pos = base + world.cat_start[cat]
    hi_pos = base + world.cat_start[cat + 1]
    lo_w = world.pop_cum[lo_pos]
    hi_w = world.pop_cum[hi_pos]
    u = lo_w + rng.random(len(idx)) * (hi_w - lo_w)
    ok = hi_w > lo_w
    pos = np.searchsorted(world.pop_cum, u[ok], side="right") - 1
    pos = np.clip(pos, lo_pos[ok], hi_pos[ok] - 1) - base[ok]
    item[idx[ok]] = world.cat_order[pos]

    # exploration (and fallback): uniform over items uploaded by then
    idx = np.flatnonzero(item < 0)
    n_up = np.searchsorted(world.upload_sorted_ms, t0[idx], side="right")
    pick = np.floor(rng.random(len(idx)) * n_up).astype(np.int64)
    item[idx] = world.upload_order[pick]
    return item


def _simulate(world: World, plan: _Plan, units: np.ndarray, rng: np.random.Generator) -> _Events:
    """Events of a batch of units (sessions and uploads), ordered by unit then impression."""
    p = world.params
    n_sessions = len(plan.user)
    unit_pos = np.arange(len(units))
    is_sess = units < n_sessions
    sess, sess_pos = units[is_sess], unit_pos[is_sess]
    lens = plan.length[sess].astype(np.int64)
    si = np.repeat(np.arange(len(sess)), lens)
    user = plan.user[sess][si].astype(np.int64)
    t0 = plan.start_ms[sess][si]
    dev = plan.device[sess][si]
    net = plan.net[sess][si]
    n = len(si)

    item = _choose_items(world, rng, user, t0)

    # engagement probability
    cat = world.item_category[item]
    rel = world.interest[user, cat] * p.n_categories
    aff = np.clip(np.log(rel + 0.05), -3.0, 2.5)
    fav = (world.fav[user] == world.item_creator[item][:, None]).any(axis=1)
    hour = (t0 // MS_PER_H) % 24
    night = (hour >= 22) | (hour < 4)
    is3g = net == 3
    logit = (
        -0.6
        + 0.8 * aff
        + 0.5 * world.item_quality[item]
        + 1.0 * fav
        + 0.15 * night
        - 0.3 * is3g
        - 0.1 * (dev == 2)
    )
    prob = 1.0 / (1.0 + np.exp(-logit))

    # watch ratio: Beta around an engagement-driven mean; finished videos may loop (replay)
    dur = world.item_duration_s[item]
    mu = np.clip(0.05 + 0.9 * prob - 0.12 * is3g - 0.07 * np.log(dur / 20.0), 0.03, 0.97)
    base = rng.beta(1.5 * mu, 1.5 * (1.0 - mu))
    complete = base >= 0.95
    replay = complete & (rng.random(n) < np.clip(0.6 * prob * np.sqrt(20.0 / dur), 0.0, 0.9))
    ratio = base + replay * np.minimum(0.2 + rng.exponential(0.6, n), 3.0)
    watch_ms = np.round(ratio * dur * MS_PER_S).astype(np.int64)
    dur_ms = np.round(dur * MS_PER_S).astype(np.int64)
    skip = ratio < 0.1

    w = prob * np.minimum(1.0, ratio / 0.5)
    like = rng.random(n) < 0.22 * w
    share = rng.random(n) < 0.05 * w
    comment = rng.random(n) < 0.035 * w
    save = rng.random(n) < 0.06 * w
    follow = like & ~fav & (rng.random(n) < 0.12 * prob)
    unfollow = rng.random(n) < (0.002 + 0.02 * fav) * (1.0 - prob)
    hide = rng.random(n) < 0.03 * (1.0 - prob) ** 2 * np.where(ratio < 0.3, 1.0, 0.2)
    report = rng.random(n) < 0.004 * (1.0 - prob) ** 2

    # timeline: each impression starts after the previous one's watch time plus a short gap
    gap_ms = (
        np.round(MS_PER_S * (0.8 + rng.exponential(2.5, n))).astype(np.int64)
        + 8_000 * comment
        + 2_500 * share
    )
    step = watch_ms + gap_ms
    excl = np.cumsum(step) - step
    offset = excl - excl[_segment_starts(lens)][si]
    t = t0 + offset
    keep = (offset <= _SESSION_WINDOW_MS) & (t + step < p.end_ms)
    after = t + watch_ms  # end of watching

    def later() -> np.ndarray:  # an action taken after watching, before the next impression
        return after + np.floor(rng.random(n) * gap_ms).astype(np.int64)

    like_ts = t + np.floor((0.3 + 0.7 * rng.random(n)) * watch_ms).astype(np.int64)
    kinds: list[tuple[int, np.ndarray, np.ndarray]] = [  # (type, impressions, timestamps)
        (_T_VIEW, keep, after),
        (_T_COMPLETE, keep & complete, t + np.minimum(watch_ms, dur_ms)),
        (_T_REPLAY, keep & replay, t + dur_ms + 100),
        (_T_SKIP, keep & skip, after),
        (_T_LIKE, keep & like, like_ts),
        (_T_SHARE, keep & share, later()),
        (_T_COMMENT, keep & comment, later()),
        (_T_SAVE, keep & save, later()),
        (_T_FOLLOW, keep & follow, later()),
        (_T_UNFOLLOW, keep & unfollow, later()),
        (_T_HIDE, keep & hide, later()),
        (_T_REPORT, keep & report, later()),
    ]

    sess_unit = sess_pos[si]
    os_code = plan.os[sess][si]
    creator = world.item_creator[item]
    aux_vocab = {_T_COMMENT: len(COMMENTS), _T_SHARE: len(SHARE_PLATFORMS), _T_REPORT: len(REPORT_REASONS)}  # fmt: skip
    cols: dict[str, list[np.ndarray]] = {f: [] for f in _EVENT_FIELDS}
    imp_cols: list[np.ndarray] = []  # impression number, only to order the batch
    for code, mask, ts in kinds:
        k = int(mask.sum())
        imp_cols.append(np.flatnonzero(mask))
        cols["unit"].append(sess_unit[mask])
        cols["ts"].append(ts[mask])
        cols["user"].append(user[mask])
        cols["item"].append(item[mask])
        cols["etype"].append(np.full(k, code, dtype=np.int8))
        cols["watch"].append(watch_ms[mask] / MS_PER_S if code == _T_VIEW else np.full(k, np.nan))
        if code == _T_SHARE:
            cols["aux"].append(_pick(rng, len(SHARE_PLATFORMS), k, _SHARE_P))
        elif code in aux_vocab:
            cols["aux"].append(rng.integers(0, aux_vocab[code], k))
        else:
            cols["aux"].append(np.full(k, -1))
        cols["creator"].append(
            creator[mask] if code in (_T_FOLLOW, _T_UNFOLLOW) else np.full(k, -1)
        )
        cols["device"].append(dev[mask])
        cols["os"].append(os_code[mask])
        cols["net"].append(net[mask])

    # uploads: one event per in-period item, from the creator's pseudo user
    up = plan.upload_items[units[~is_sess] - n_sessions]
    k = len(up)
    up_dev = rng.integers(0, 2, k).astype(np.int8)
    imp_cols.append(np.zeros(k, dtype=np.int64))
    cols["unit"].append(unit_pos[~is_sess])
    cols["ts"].append(world.item_upload_ms[up])
    cols["user"].append(p.n_users + world.item_creator[up])
    cols["item"].append(up)
    cols["etype"].append(np.full(k, _T_UPLOAD, dtype=np.int8))
    cols["watch"].append(np.full(k, np.nan))
    cols["aux"].append(np.full(k, -1))
    cols["creator"].append(world.item_creator[up])
    cols["device"].append(up_dev)
    cols["os"].append(up_dev)
    cols["net"].append(np.where(rng.random(k) < 0.85, 0, 2).astype(np.int8))

    # unit, then impression, then the type order above (view first): cutting the stream at
    # n_events can drop trailing actions of the last impression, never the view they follow
    ev = {f: np.concatenate(v) for f, v in cols.items()}
    order = np.lexsort((np.concatenate(imp_cols), ev["unit"]))  # lexsort is stable
    return {f: v[order] for f, v in ev.items()}


def _inject_bad(
    world: World, ev: _Events, eid: np.ndarray, rng: np.random.Generator
) -> tuple[_Events, np.ndarray, np.ndarray, int]:
    """Turn a ``bad_event_rate`` share of rows invalid.

    Returns the events, their id numbers, the replacement number of rows given an unknown
    content id (-1 elsewhere; the event keeps its item for everything else) and the bad count.
    """
    p = world.params
    n = len(ev["ts"])
    unknown = np.full(n, -1, dtype=np.int64)
    if p.bad_event_rate <= 0 or n < 2:
        return ev, eid, unknown, 0
    n_bad = min(int(rng.binomial(n, p.bad_event_rate)), n - 1)
    if n_bad == 0:
        return ev, eid, unknown, 0
    pos = np.sort(rng.choice(n - 1, n_bad, replace=False) + 1)  # row 0 stays valid
    # a kind per row (index into BAD_KINDS); only views get a negative watch time (kind 0)
    is_view = ev["etype"][pos] == _T_VIEW
    n_kinds = len(BAD_KINDS)
    kind = np.where(is_view, rng.integers(0, n_kinds, n_bad), rng.integers(1, n_kinds, n_bad))
    bad = np.zeros(n, dtype=bool)
    bad[pos] = True
    good = np.flatnonzero(~bad)

    # duplicate id: reuse the id of a valid earlier row
    dup = pos[kind == BAD_KINDS.index("duplicate_id")]
    n_before = np.searchsorted(good, dup)  # >= 1 because row 0 is valid
    src = good[np.floor(rng.random(len(dup)) * n_before).astype(np.int64)]
    eid = eid.copy()
    eid[dup] = eid[src]

    ev = {f: v.copy() for f, v in ev.items()}
    neg = pos[kind == BAD_KINDS.index("negative_watch")]
    ev["watch"][neg] = -(ev["watch"][neg] + 0.5 + rng.random(len(neg)))
    fut = pos[kind == BAD_KINDS.index("future_timestamp")]
    ev["ts"][fut] += _FAR_FUTURE_MS
    ev["etype"][pos[kind == BAD_KINDS.index("unknown_type")]] = _T_ZAP
    unk = pos[kind == BAD_KINDS.index("unknown_content")]
    digits = _width(p.n_items, 6) + 1  # one digit more than any catalogue id
    unknown[unk] = rng.integers(10 ** (digits - 1), 10**digits, len(unk))
    return ev, eid, unknown, n_bad


def _to_table(world: World, ev: _Events, eid: np.ndarray, unknown: np.ndarray) -> pa.Table:
    """Materialise numeric event columns as a ``DROP_EVENT_SCHEMA`` table."""
    p = world.params
    n = len(eid)
    etype = ev["etype"]
    item = ev["item"]
    has_item = item >= 0
    content = _take(world.item_ids, np.maximum(item, 0), has_item)
    is_unknown = unknown >= 0
    if is_unknown.any():
        missing = _number_strings("video_", unknown[is_unknown], _width(p.n_items, 6) + 1)
        content = pc.replace_with_mask(content, pa.array(is_unknown), missing)
    watch = ev["watch"]
    aux = ev["aux"]
    creator = ev["creator"]
    is_upload = etype == _T_UPLOAD
    return pa.Table.from_arrays(
        [
            _number_strings("e", eid, _width(p.n_events, 9)),
            _take(pa.array(_TYPE_NAMES), etype),
            _take(world.user_ids, ev["user"]),
            content,
            pa.array(ev["ts"]).cast(EVENT_TIMESTAMP),
            pa.array(watch, pa.float64(), mask=np.isnan(watch)),
            pa.nulls(n, pa.float64()),
            _take(pa.array(COMMENTS), np.maximum(aux, 0), etype == _T_COMMENT),
            _take(pa.array(SHARE_PLATFORMS), np.maximum(aux, 0), etype == _T_SHARE),
            _take(world.creator_ids, np.maximum(creator, 0), creator >= 0),
            _take(pa.array(REPORT_REASONS), np.maximum(aux, 0), etype == _T_REPORT),
            _take(world.metadata, np.where(is_upload, item, 0), is_upload),
            _take(pa.array(DEVICES), ev["device"]),
            _take(pa.array(OS_NAMES), ev["os"]),
            _take(pa.array(NETWORKS), ev["net"]),
        ],
        schema=DROP_EVENT_SCHEMA,
    )


def iter_event_parts(world: World) -> Iterator[EventPart]:
    """Yield the event log in parts of ``chunk_events`` rows (the last truncated to ``n_events``)."""
    p = world.params
    plan = _plan(world)
    n_units = len(plan.order)
    batch_weight = int(np.clip(p.chunk_events // 2, 5_000, 200_000))
    emitted = part = batch = pos = 0
    buf: list[_Events] = []
    buffered = 0
    while emitted < p.n_events:
        need = min(p.chunk_events, p.n_events - emitted)
        while buffered < need:
            if pos >= n_units:
                raise RuntimeError("session plan exhausted before n_events; this is a bug")
            done = int(plan.cum_weight[pos - 1]) if pos else 0
            stop = max(pos + 1, int(np.searchsorted(plan.cum_weight, done + batch_weight)))
            ev = _simulate(world, plan, plan.order[pos:stop], _rng(p.seed, 3, batch))
            buf.append(ev)
            buffered += len(ev["ts"])
            pos, batch = stop, batch + 1
        merged = {f: np.concatenate([b[f] for b in buf]) for f in _EVENT_FIELDS}
        head = {f: v[:need] for f, v in merged.items()}
        buf = [{f: v[need:] for f, v in merged.items()}]
        buffered -= need
        order = np.argsort(head["ts"], kind="stable")
        head = {f: v[order] for f, v in head.items()}
        eid = emitted + np.arange(need, dtype=np.int64)
        head, eid, unknown, n_bad = _inject_bad(world, head, eid, _rng(p.seed, 4, part))
        yield EventPart(index=part, table=_to_table(world, head, eid, unknown), n_bad=n_bad)
        emitted += need
        part += 1


# --- I/O ------------------------------------------------------------------------------------------


def _write(table: pa.Table, path: Path) -> Path:
    """Write Parquet (zstd) atomically."""
    return atomic_write_parquet(path, table, compression="zstd")


def write_drop(params: GenParams | Mapping[str, Any], out_dir: Path) -> GenSummary:
    """Generate and write a drop folder: ``events/part-*.parquet``, users, content and truth."""
    p = params if isinstance(params, GenParams) else GenParams.from_params(params)
    began = time.perf_counter()
    out_dir = Path(out_dir)
    events_dir = out_dir / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(events_dir.glob("part-*.parquet")):
        stale.unlink()  # a re-run must not leave parts of a larger earlier drop behind
    world = make_world(p)
    files = [
        _write(world.users, out_dir / "users.parquet"),
        _write(world.content, out_dir / "content.parquet"),
        _write(world.truth, out_dir / "truth.parquet"),
    ]
    n_bad = n_rows = 0
    for part in iter_event_parts(world):
        files.append(_write(part.table, events_dir / f"part-{part.index:05d}.parquet"))
        n_bad += part.n_bad
        n_rows += part.table.num_rows
        logger.info("wrote part %d (%d rows, %d bad)", part.index, part.table.num_rows, part.n_bad)
    summary = GenSummary(
        n_events=n_rows,
        n_users=p.n_users,
        n_items=p.n_items,
        n_bad=n_bad,
        files=tuple(files),
        seconds=round(time.perf_counter() - began, 3),
    )
    logger.info(
        "drop %s: %d events (%d bad), %d users, %d items in %.1f s",
        out_dir, summary.n_events, summary.n_bad, summary.n_users, summary.n_items, summary.seconds,
    )  # fmt: skip
    return summary


def run(params: Mapping[str, Any], out_dir: Path, n_events: int | None = None) -> GenSummary:
    """Stage entry: params mapping in, drop folder out (``n_events`` overrides the params)."""
    p = GenParams.from_params(params)
    if n_events is not None:
        p = replace(p, n_events=n_events)
    return write_drop(p, out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m components.data.datagen --params params.yaml --out data/drops/synthetic``."""
    parser = stage_parser("Write a deterministic synthetic drop.")
    parser.prog = "python -m components.data.datagen"
    parser.add_argument(
        "--out",
        type=Path,
        default=DataPaths().of("drop_synthetic"),
        help="drop folder; relative paths are taken from the project root",
    )
    parser.add_argument("--n-events", type=int, default=None, help="override datagen.n_events")
    args = parser.parse_args(argv)
    if args.params is not None and not Path(args.params).is_absolute():
        args.params = PROJECT_ROOT / args.params
    params, _paths = stage_context(args)
    out = args.out if args.out.is_absolute() else PROJECT_ROOT / args.out
    s = run(params, out, n_events=args.n_events)
    print(
        f"datagen: {s.n_events} events ({s.n_bad} bad), {s.n_users} users, {s.n_items} items, "
        f"{len(s.files)} files -> {out} in {s.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
