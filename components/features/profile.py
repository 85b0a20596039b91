"""Content profile: one static row per catalogue content, and the category vocabulary.

Each row is stamped when the content became available (upload time, else its first event):
category, duration, tag / hashtag counts, hashtag document frequency (share of the catalogue
carrying the hashtag; mean and max over the content's hashtags), a TF-IDF vector of
description + tags reduced with truncated SVD (``text_dim``), and the visual / audio embeddings
when the data has them. IDF, SVD and hashtag frequencies are fitted on the whole catalogue:
corpus statistics, not labels. TF-IDF and SVD are scikit-learn's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from components.features.columns import PROFILE_SCHEMA, UNKNOWN, feature_frame
from components.features.content import availability
from components.features.params import FeatureParams
from components.features.timeline import Events, codes_in, list_array, str_or_none

_HASHTAG_RE = re.compile(r"#(\w+)", re.UNICODE)


def category_vocab(content: pd.DataFrame, max_categories: int) -> list[str]:
    """Categories by catalogue size (ties by name); beyond ``max_categories - 1`` -> ``other``."""
    counts = content["category"].astype("string").fillna(UNKNOWN).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    names = [str(k) for k, _ in ranked]
    if len(names) > max_categories:
        names = [*names[: max_categories - 1], "other"]
    return names


def _text_vectors(docs: list[str], p: FeatureParams) -> np.ndarray:
    """TF-IDF of each document reduced to ``text_dim`` dimensions (L2-normalised; zeros if no text)."""
    out = np.zeros((len(docs), p.text_dim), dtype="float32")
    if not any(d.strip() for d in docs):
        return out
    try:
        tfidf = TfidfVectorizer(max_features=p.tfidf_max_features, sublinear_tf=True).fit_transform(
            docs
        )
    except ValueError:  # empty vocabulary (only stop words / one-letter tokens)
        return out
    k = min(p.text_dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
    if k < 1:
        dense = normalize(tfidf).toarray()[:, : p.text_dim]
        out[:, : dense.shape[1]] = dense
        return out
    reduced = TruncatedSVD(n_components=k, random_state=p.seed).fit_transform(tfidf)
    out[:, :k] = normalize(reduced).astype("float32")
    return out


def _vector_column(values: pd.Series) -> pa.Array:
    return pa.array(values.tolist(), type=pa.list_(pa.float32()), from_pandas=True)


def _hashtag_columns(tags: list[list[Any]], desc: list[str]) -> dict[str, np.ndarray]:
    """Hashtags from the tags (``#x``) and the description: count, and their catalogue document
    frequency (mean and max over the content's hashtags)."""
    hashtags = [
        {str(t).lstrip("#").lower() for t in tl if str(t).startswith("#")}
        | {h.lower() for h in _HASHTAG_RE.findall(d)}
        for tl, d in zip(tags, desc, strict=True)
    ]
    df_counts: dict[str, int] = {}
    for hs in hashtags:
        for h in hs:
            df_counts[h] = df_counts.get(h, 0) + 1
    n_items = max(len(tags), 1)
    freqs = [[df_counts[h] / n_items for h in hs] for hs in hashtags]
    return {
        "c_n_hashtags": np.array([len(h) for h in hashtags], dtype="int64"),
        "c_hashtag_freq_mean": np.array([float(np.mean(f)) if f else 0.0 for f in freqs]),
        "c_hashtag_freq_max": np.array([float(np.max(f)) if f else 0.0 for f in freqs]),
    }


def _embedding_columns(c: pd.DataFrame) -> dict[str, Any]:
    """Visual / audio embeddings (null where the data has none) and their presence flags."""
    out: dict[str, Any] = {}
    for col, kind in (("visual_embedding", "visual"), ("audio_embedding", "audio")):
        values = c[col] if col in c else pd.Series([None] * len(c))
        has = np.array([v is not None and len(v) > 0 for v in values], dtype="int64")
        out[f"c_has_{kind}"] = has
        out[f"c_{kind}_vec"] = _vector_column(values.where(has.astype(bool), None))
    return out


def content_profile(
    events: pd.DataFrame, content: pd.DataFrame, categories: Sequence[str], p: FeatureParams
) -> pd.DataFrame:
    """One static row per catalogue content, stamped when it became available."""
    c = content.drop_duplicates("content_id", keep="first").reset_index(drop=True)
    ids = c["content_id"].astype(str).to_numpy(dtype=object)
    avail = availability(Events.of(events), c)
    tags = [list(t) if isinstance(t, list | np.ndarray) else [] for t in c["tags"].tolist()]
    desc = c["description"].astype("string").fillna("").astype(str).tolist()
    docs = [
        d + " " + " ".join(str(t).lstrip("#") for t in tl) for d, tl in zip(desc, tags, strict=True)
    ]
    text = _text_vectors(docs, p)
    other = categories.index("other") if "other" in categories else None
    category = c["category"].astype("string").fillna(UNKNOWN)
    out: dict[str, Any] = {
        "c_creator_id": str_or_none(c["creator_id"]),
        "c_category": category.to_numpy(dtype=object),
        "c_category_idx": codes_in(category, categories, other=other),
        "c_duration_s": pd.to_numeric(c["duration_s"], errors="coerce").to_numpy(dtype="float64"),
        "c_duration_imputed": c.get("duration_imputed", pd.Series(False, index=c.index))
        .fillna(False)
        .to_numpy(dtype="int64"),
        "c_n_tags": np.array([len(t) for t in tags], dtype="int64"),
        **_hashtag_columns(tags, desc),
        **_embedding_columns(c),
        "c_text_vec": list_array(np.arange(len(c) + 1) * p.text_dim, pa.array(text.reshape(-1))),
    }
    order = np.argsort(ids.astype(str), kind="stable")
    out = {
        k: (v.take(pa.array(order)) if isinstance(v, pa.Array) else np.asarray(v)[order])
        for k, v in out.items()
    }
    return feature_frame("content_id", ids[order], avail[order], out, PROFILE_SCHEMA)
