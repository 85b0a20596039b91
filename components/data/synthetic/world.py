"""The latent world: users with category interests and favourite creators, creators, and items
with category, quality, duration, upload time and popularity, plus the observable tables.

Users have Dirichlet interests over categories (concentrated on a few), a few favourite
creators, a heavy-tailed activity level, a preferred device (with matching OS) and a usual
network. Creators have a main category; items inherit it (mostly), and have a latent quality,
a lognormal duration (5-180 s), an upload time (60 % before ``start``, the rest spread over
the period), tags, a description, an audio id and, for about half of them, a 16-d visual
embedding clustered by category. Every draw comes from one seeded stream, in a fixed order.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.data.synthetic.arrays import (
    choose_codes,
    id_width,
    number_strings,
    row_categorical,
    seeded_rng,
)
from components.data.synthetic.constants import (
    CATEGORY_WORDS,
    DESKTOP_OS,
    DESKTOP_OS_P,
    DEVICE_P,
    DEVICES,
    GENERIC_SUFFIXES,
    MAX_BUCKET_CELLS,
    MS_PER_DAY,
    MS_PER_H,
    N_FAV,
    NETWORK_P,
    NETWORKS,
    PRE_PERIOD_DAYS,
    PRE_PERIOD_SHARE,
    TRUTH_SCHEMA,
    VOCAB_SIZE,
)
from components.data.synthetic.params import GenParams
from components.data.synthetic.tables import content_table, upload_metadata, users_table

logger = logging.getLogger(__name__)


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
    fav: np.ndarray  # (n_users, N_FAV) creator codes
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


def _category_vocab(n: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Category names and their (n, VOCAB_SIZE) word table; synthetic topics beyond the list."""
    names: list[str] = []
    rows: list[tuple[str, ...]] = []
    for k in range(n):
        if k < len(CATEGORY_WORDS):
            name = list(CATEGORY_WORDS)[k]
            words = CATEGORY_WORDS[name]
        else:
            name = f"topic{k:03d}"
            words = tuple(f"{name}{s}" for s in GENERIC_SUFFIXES)
        names.append(name)
        rows.append(words[:VOCAB_SIZE])
    return tuple(names), np.array(rows, dtype=object)


def _trend(age_days: np.ndarray, tau_days: np.ndarray) -> np.ndarray:
    """Popularity multiplier by age: rises over the first hours, decays over days, small floor."""
    age = np.maximum(age_days, 0.0)
    curve = (1.0 - np.exp(-age / 0.25)) * np.exp(-age / tau_days) + 0.03
    return np.where(age_days >= 0, curve, 0.0)


@dataclass(frozen=True, eq=False)
class _Users:
    """Latent user arrays: interests (plain and row-shifted cumulative), activity, usual context."""

    interest: np.ndarray
    interest_flat: np.ndarray
    activity: np.ndarray
    device: np.ndarray
    desktop_os: np.ndarray
    network: np.ndarray


@dataclass(frozen=True, eq=False)
class _Items:
    """Latent item arrays: creator, category, quality, duration, upload time, trend and popularity."""

    creator: np.ndarray
    category: np.ndarray
    quality: np.ndarray
    duration: np.ndarray
    upload_ms: np.ndarray
    tau_days: np.ndarray
    pop: np.ndarray


@dataclass(frozen=True, eq=False)
class _PopularityIndex:
    """Cumulative popularity x trend per time bucket over items sorted by category."""

    bucket_ms: int
    n_buckets: int
    cat_order: np.ndarray
    cat_start: np.ndarray
    pop_cum: np.ndarray


@dataclass(frozen=True, eq=False)
class _UploadIndex:
    """Items by upload time, and by (creator, upload time) with a searchable composite key."""

    upload_order: np.ndarray
    creator_order: np.ndarray
    creator_start: np.ndarray
    creator_key: np.ndarray
    key_span: int
    key_origin_ms: int


def _draw_users(rng: np.random.Generator, n_users: int, cat_pop: np.ndarray) -> _Users:
    """Concentrated interests (popular categories more often), heavy-tailed activity, context."""
    interest = rng.dirichlet(0.1 + 1.5 * cat_pop, size=n_users) + 1e-6
    interest /= interest.sum(axis=1, keepdims=True)
    cum = np.cumsum(interest, axis=1)
    cum[:, -1] = 1.0
    interest_flat = (cum + np.arange(n_users)[:, None]).ravel()
    activity = rng.lognormal(0.0, 1.0, n_users)
    device = choose_codes(rng, len(DEVICES), n_users, DEVICE_P).astype(np.int8)
    desktop_os = choose_codes(rng, len(DESKTOP_OS), n_users, DESKTOP_OS_P).astype(np.int8)
    network = choose_codes(rng, len(NETWORKS), n_users, NETWORK_P).astype(np.int8)
    network[(device == 2) & (rng.random(n_users) < 0.7)] = 0  # web mostly on wifi
    return _Users(interest, interest_flat, activity, device, desktop_os, network)


def _draw_favourites(
    rng: np.random.Generator, interest_flat: np.ndarray, creator_cat: np.ndarray, n_users: int
) -> np.ndarray:
    """Each user's favourite creators: a creator of a category the user likes (any if none)."""
    n_creators = len(creator_cat)
    n_cat = len(interest_flat) // n_users
    n_fav = min(N_FAV, n_creators)
    fav_rows = np.repeat(np.arange(n_users), n_fav)
    fav_cat = row_categorical(interest_flat, n_cat, fav_rows, rng.random(len(fav_rows)))
    by_cat = np.argsort(creator_cat, kind="stable")
    by_cat_start = np.searchsorted(creator_cat[by_cat], np.arange(n_cat + 1))
    count = by_cat_start[fav_cat + 1] - by_cat_start[fav_cat]
    pick = by_cat_start[fav_cat] + np.floor(rng.random(len(fav_rows)) * count).astype(np.int64)
    return np.where(
        count > 0,
        by_cat[np.minimum(pick, n_creators - 1)],
        rng.integers(0, n_creators, len(fav_rows)),
    ).reshape(n_users, n_fav)


def _draw_items(
    rng: np.random.Generator,
    p: GenParams,
    cat_pop: np.ndarray,
    creator_cat: np.ndarray,
    creator_pop: np.ndarray,
    creator_rate: np.ndarray,
) -> _Items:
    """Items: mostly their creator's category, latent quality, duration, upload time, popularity."""
    n_items, n_cat, start_ms = p.n_items, p.n_categories, p.start_ms
    item_creator = choose_codes(rng, p.n_creators, n_items, creator_rate / creator_rate.sum())
    item_cat = np.where(
        rng.random(n_items) < 0.85,
        creator_cat[item_creator],
        choose_codes(rng, n_cat, n_items, cat_pop),
    )
    quality = rng.normal(0.0, 1.0, n_items)
    duration = np.round(np.clip(rng.lognormal(np.log(22.0), 0.75, n_items), 5.0, 180.0), 1)
    pre = rng.random(n_items) < PRE_PERIOD_SHARE
    pre[0] = True  # something is always on the shelf at ``start``
    upload_ms = np.where(
        pre,
        start_ms - rng.integers(1, PRE_PERIOD_DAYS * MS_PER_DAY, n_items),
        start_ms + rng.integers(0, p.days * MS_PER_DAY, n_items),
    ).astype(np.int64)
    tau_days = rng.lognormal(np.log(4.0), 0.5, n_items)
    pop = np.exp(0.6 * quality + 0.4 * creator_pop[item_creator] + rng.normal(0.0, 0.6, n_items))
    return _Items(item_creator, item_cat, quality, duration, upload_ms, tau_days, pop)


def _popularity_index(p: GenParams, items: _Items) -> _PopularityIndex:
    """Popularity x trend per time bucket, cumulated over items sorted by category."""
    n_items = len(items.category)
    bucket_h = max(1, math.ceil(p.days * 24 * n_items / MAX_BUCKET_CELLS))
    bucket_ms = bucket_h * MS_PER_H
    n_buckets = math.ceil(p.days * MS_PER_DAY / bucket_ms)
    cat_order = np.argsort(items.category, kind="stable")
    cat_start = np.searchsorted(items.category[cat_order], np.arange(p.n_categories + 1))
    bucket_t = p.start_ms + np.arange(n_buckets, dtype=np.int64) * bucket_ms
    age = (bucket_t[:, None] - items.upload_ms[cat_order][None, :]) / MS_PER_DAY
    weight = items.pop[cat_order][None, :] * _trend(age, items.tau_days[cat_order][None, :])
    pop_cum = np.concatenate([[0.0], np.cumsum(weight.ravel())])
    return _PopularityIndex(bucket_ms, n_buckets, cat_order, cat_start, pop_cum)


def _upload_index(items: _Items, n_creators: int) -> _UploadIndex:
    """Orders for "uploaded by then" lookups, overall and per creator."""
    upload_ms, item_creator = items.upload_ms, items.creator
    creator_order = np.lexsort((upload_ms, item_creator))
    key_origin = int(upload_ms.min())
    key_span = int(upload_ms.max()) - key_origin + 1
    creator_key = item_creator[creator_order].astype(np.int64) * key_span + (
        upload_ms[creator_order] - key_origin
    )
    return _UploadIndex(
        upload_order=np.argsort(upload_ms, kind="stable"),
        creator_order=creator_order,
        creator_start=np.searchsorted(item_creator[creator_order], np.arange(n_creators + 1)),
        creator_key=creator_key,
        key_span=key_span,
        key_origin_ms=key_origin,
    )


def _truth_table(user_ids: pa.Array, cat_names: pa.Array, interest: np.ndarray) -> pa.Table:
    """The latent interests in long format (one row per user and category)."""
    n_users, n_cat = interest.shape
    return pa.Table.from_arrays(
        [
            user_ids.take(pa.array(np.repeat(np.arange(n_users), n_cat))),
            cat_names.take(pa.array(np.tile(np.arange(n_cat), n_users))),
            pa.array(interest.ravel()),
        ],
        schema=TRUTH_SCHEMA,
    )


def make_world(p: GenParams) -> World:
    """Draw users, creators and items with their latent preferences, quality and popularity."""
    rng = seeded_rng(p.seed, 0)
    n_cat, n_users, n_items, n_creators = p.n_categories, p.n_users, p.n_items, p.n_creators
    categories, words = _category_vocab(n_cat)
    cat_names = pa.array(categories, pa.string())
    cat_pop = rng.dirichlet(np.full(n_cat, 3.0))
    u = _draw_users(rng, n_users, cat_pop)
    creator_cat = choose_codes(rng, n_cat, n_creators, cat_pop)
    creator_pop = rng.normal(0.0, 1.0, n_creators)
    creator_rate = rng.lognormal(0.0, 1.0, n_creators)
    fav = _draw_favourites(rng, u.interest_flat, creator_cat, n_users)
    items = _draw_items(rng, p, cat_pop, creator_cat, creator_pop, creator_rate)
    popularity = _popularity_index(p, items)
    uploads = _upload_index(items, n_creators)

    # observable tables
    user_ids = number_strings("user_", np.arange(n_users), id_width(n_users, 6))
    item_ids = number_strings("video_", np.arange(n_items), id_width(n_items, 6))
    creator_ids = number_strings("creator_", np.arange(n_creators), id_width(n_creators, 5))
    pseudo_ids = pc.binary_join_element_wise("user_", creator_ids, "")
    users = users_table(rng, p, user_ids, creator_ids, u.interest, fav, cat_names)
    content, tags_py = content_table(
        rng, p, words, cat_names, item_ids, creator_ids, items.creator, items.category,
        items.duration, items.upload_ms,
    )  # fmt: skip
    metadata = upload_metadata(content, tags_py, items.upload_ms >= p.start_ms)
    logger.debug(
        "world: %d users, %d items, %d time buckets", n_users, n_items, popularity.n_buckets
    )
    assert p.end_ms > p.start_ms
    return World(
        params=p,
        categories=categories,
        users=users,
        content=content,
        truth=_truth_table(user_ids, cat_names, u.interest),
        interest=u.interest,
        interest_flat=u.interest_flat,
        activity=u.activity,
        user_device=u.device,
        user_desktop_os=u.desktop_os,
        user_network=u.network,
        fav=fav,
        item_creator=items.creator,
        item_category=items.category,
        item_quality=items.quality,
        item_duration_s=items.duration,
        item_upload_ms=items.upload_ms,
        bucket_ms=popularity.bucket_ms,
        cat_order=popularity.cat_order,
        cat_start=popularity.cat_start,
        pop_cum=popularity.pop_cum,
        upload_order=uploads.upload_order,
        upload_sorted_ms=items.upload_ms[uploads.upload_order],
        creator_order=uploads.creator_order,
        creator_start=uploads.creator_start,
        creator_key=uploads.creator_key,
        key_span=uploads.key_span,
        key_origin_ms=uploads.key_origin_ms,
        user_ids=pa.concat_arrays([user_ids, pseudo_ids]),
        item_ids=item_ids,
        creator_ids=creator_ids,
        metadata=metadata,
    )
