"""The observable tables of the synthetic world: user profiles and content metadata.

Declared categories are a noisy top-k of the true interests; content gets tags (category words
and hashtags), a description, an audio id from a per-category pool and, for about half the
items, a 16-d visual embedding clustered by category. In-period uploads also carry their
metadata as JSON text for the ``content_upload`` events.
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from components.core.schema import CONTENT_SCHEMA, EVENT_TIMESTAMP, USER_SCHEMA
from components.data.synthetic.arrays import (
    choose_codes,
    id_width,
    list_array,
    number_strings,
    take_codes,
)
from components.data.synthetic.constants import (
    AGE_GROUPS,
    AGE_P,
    EMB_DIM,
    GENERAL_HASHTAGS,
    LOCATION_LANG,
    LOCATION_P,
    LOCATIONS,
    MS_PER_DAY,
    VOCAB_SIZE,
)
from components.data.synthetic.params import GenParams


def users_table(
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
    k = np.minimum(choose_codes(rng, 4, n_users, (0.1, 0.3, 0.4, 0.2)), n_cat)
    noisy = interest * rng.lognormal(0.0, 0.4, interest.shape)
    top = np.argsort(-noisy, axis=1, kind="stable")
    declared = top[np.arange(n_cat)[None, :] < k[:, None]]
    pref = list_array(
        np.concatenate([[0], np.cumsum(k)]), cat_names.take(pa.array(declared)), mask=k == 0
    )
    fav_sorted = np.sort(fav, axis=1)
    keep = np.ones_like(fav_sorted, dtype=bool)
    keep[:, 1:] = fav_sorted[:, 1:] != fav_sorted[:, :-1]
    followed = list_array(
        np.concatenate([[0], np.cumsum(keep.sum(axis=1))]),
        creator_ids.take(pa.array(fav_sorted[keep])),
    )
    location = choose_codes(rng, len(LOCATIONS), n_users, LOCATION_P)
    signup = p.start_ms - rng.integers(MS_PER_DAY, 1000 * MS_PER_DAY, n_users)
    return pa.Table.from_arrays(
        [
            user_ids,
            take_codes(pa.array(AGE_GROUPS), choose_codes(rng, len(AGE_GROUPS), n_users, AGE_P)),
            take_codes(pa.array(LOCATIONS), location),
            take_codes(pa.array(LOCATION_LANG), location),
            pref,
            followed,
            pa.array(signup.astype(np.int64)).cast(EVENT_TIMESTAMP),
        ],
        schema=USER_SCHEMA,
    )


def content_table(
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
    word_code = item_cat[row] * VOCAB_SIZE + rng.integers(0, VOCAB_SIZE, len(row))
    general = n_cat + rng.integers(0, len(GENERAL_HASHTAGS), len(row))
    first_hash = (rank == n_words[row]) & (rng.random(len(row)) < 0.7)
    hash_code = np.where(first_hash, item_cat[row], general)
    all_words = pa.concat_arrays([vocab, hashtags])
    code = np.where(is_word, word_code, len(vocab) + hash_code)
    tags = list_array(offsets, all_words.take(pa.array(code)))

    # description: 3-6 category words
    n_desc = rng.integers(3, 7, n_items)
    d_off = np.concatenate([[0], np.cumsum(n_desc)])
    d_row = np.repeat(np.arange(n_items), n_desc)
    d_code = item_cat[d_row] * VOCAB_SIZE + rng.integers(0, VOCAB_SIZE, len(d_row))
    description = pc.utf8_capitalize(
        pc.binary_join(list_array(d_off, vocab.take(pa.array(d_code))), " ")
    )

    # audio: a per-category pool with a few dominant sounds
    per_cat = max(2, n_items // (4 * n_cat))
    audio = item_cat * per_cat + np.floor(per_cat * rng.random(n_items) ** 2).astype(np.int64)
    audio_ids = number_strings("audio_", audio, id_width(per_cat * n_cat, 6))

    # visual embedding for about half the items: category centroid + noise, unit length
    centroids = rng.normal(0.0, 1.0, (n_cat, EMB_DIM))
    emb = centroids[item_cat] + rng.normal(0.0, 0.7, (n_items, EMB_DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    has_emb = rng.random(n_items) < 0.5
    e_off = np.concatenate([[0], np.cumsum(has_emb * EMB_DIM)])
    visual = list_array(e_off, pa.array(emb[has_emb].astype(np.float32).ravel()), mask=~has_emb)

    table = pa.Table.from_arrays(
        [
            item_ids,
            take_codes(creator_ids, item_creator),
            pa.array(upload_ms).cast(EVENT_TIMESTAMP),
            tags,
            description,
            take_codes(cat_names, item_cat),
            pa.array(duration, pa.float64()),
            audio_ids,
            visual,
            pa.nulls(n_items, pa.list_(pa.float32())),
        ],
        schema=CONTENT_SCHEMA,
    )
    return table, tags


def upload_metadata(content: pa.Table, tags: pa.Array, in_period: np.ndarray) -> pa.Array:
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
