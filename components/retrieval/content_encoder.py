"""The content encoder: side features to the blocks of the unified content embedding (what the
FAISS index holds), and the ridge cold-start map into the collaborative space.

Unified content embedding
    L2-normalised blocks, each scaled by ``sqrt(block_weights[block])`` and concatenated, then
    normalised again, so a cosine is a weighted mix of block cosines:
    collaborative (ALS item factor), text (TF-IDF of description + tags reduced by truncated
    SVD), category (one-hot; ``unknown`` is all zeros) and, when the data has them, visual and
    audio vectors. Blocks carrying no information (no text, a single category, no vectors) are
    left out. Cold start: a ridge regression (scikit-learn) maps content-side features (sparse
    TF-IDF, category, visual, audio) to the normalised ALS item factors of contents with enough
    interactions; a content with ``n`` interactions gets ``n / (n + cold_blend)`` of its own ALS
    vector and the rest from the ridge prediction, so a new upload with metadata only still lands
    next to the contents its audience watches. The fitted encoder is kept, so uploads after
    training are embedded with :meth:`ContentEncoder.embed` and added to the index without a
    rebuild.

``components.features.profile`` computes its TF-IDF + SVD text vectors in one fit-and-transform pass
and keeps no fitted vectoriser, so it cannot embed a content uploaded later; the encoder here
uses the same scikit-learn pieces but keeps them fitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.interactions import UNKNOWN


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, list | tuple | np.ndarray):
        return list(v)
    return []


def content_documents(content: pd.DataFrame) -> list[str]:
    """Description plus tags (hashtag marks stripped) per content."""
    desc = content["description"].astype("string").fillna("").astype(str).tolist() if "description" in content else [""] * len(content)
    tags = [_as_list(t) for t in content["tags"].tolist()] if "tags" in content else [[] for _ in range(len(content))]
    return [d + " " + " ".join(str(t).lstrip("#") for t in tl) for d, tl in zip(desc, tags, strict=True)]


def _is_vector(v: Any) -> bool:
    return isinstance(v, list | tuple | np.ndarray) and len(v) > 0


def _vector_matrix(values: pd.Series | None, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(n × dim matrix, has-vector mask); wrong-length or missing vectors are zeros."""
    out = np.zeros((n, dim), dtype=np.float32)
    has = np.zeros(n, dtype=bool)
    if values is None or dim == 0:
        return out, has
    for row, v in enumerate(values.tolist()):
        if _is_vector(v) and len(v) == dim:
            out[row] = np.asarray(v, dtype=np.float32)
            has[row] = True
    return out, has


def _vector_dim(values: pd.Series | None) -> int:
    if values is None:
        return 0
    lengths = [len(v) for v in values.tolist() if _is_vector(v)]
    return int(pd.Series(lengths).mode().iloc[0]) if lengths else 0


@dataclass
class ContentEncoder:
    """Fitted content-side encoder: blocks of the unified embedding and the ridge cold-start map."""

    p: EmbeddingParams
    categories: list[str]
    visual_dim: int
    audio_dim: int
    tfidf: Any = None  # sklearn TfidfVectorizer | None (no text in the catalogue)
    svd: Any = None  # sklearn TruncatedSVD | None
    text_cols: int = 0
    ridge: Any = None  # sklearn Ridge | None (no warm contents to learn from)
    cf_dim: int = 0

    # ---- fitting
    @classmethod
    def fit(cls, content: pd.DataFrame, p: EmbeddingParams) -> ContentEncoder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        cat = content["category"].astype("string").fillna(UNKNOWN).str.lower() if "category" in content else pd.Series([UNKNOWN] * len(content))
        cats = sorted({c for c in cat.astype(str) if c and c != UNKNOWN})
        if len(cats) < 2:
            cats = []  # a single category separates nothing
        visual_dim = _vector_dim(content.get("visual_embedding"))
        audio_dim = _vector_dim(content.get("audio_embedding"))
        enc = cls(p=p, categories=cats, visual_dim=visual_dim, audio_dim=audio_dim)
        docs = content_documents(content)
        if any(d.strip() for d in docs):
            try:
                tfidf = TfidfVectorizer(max_features=p.tfidf_max_features, sublinear_tf=True, dtype=np.float32)
                x = tfidf.fit_transform(docs)
            except ValueError:  # empty vocabulary
                x = None
            if x is not None and x.shape[1] > 0:
                enc.tfidf = tfidf
                k = min(p.text_dim, x.shape[1] - 1, x.shape[0] - 1)
                if k >= 1:
                    enc.svd = TruncatedSVD(n_components=k, random_state=p.seed).fit(x)
                    enc.text_cols = k
        return enc

    def fit_ridge(self, content: pd.DataFrame, targets: np.ndarray) -> ContentEncoder:
        """Learn side features -> (normalised) collaborative vectors on warm contents."""
        from sklearn.linear_model import Ridge

        self.cf_dim = targets.shape[1]
        x = self.side_features(content)
        if len(content) >= 2 and x.shape[1] > 0:
            self.ridge = Ridge(alpha=self.p.ridge_alpha, fit_intercept=True, solver="auto").fit(x, targets)
        return self

    # ---- transforms
    def text_vectors(self, content: pd.DataFrame) -> np.ndarray:
        if self.tfidf is None or self.svd is None:
            return np.zeros((len(content), 0), dtype=np.float32)
        return normalize_rows(self.svd.transform(self.tfidf.transform(content_documents(content))).astype(np.float32))

    def category_onehot(self, content: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(content), len(self.categories)), dtype=np.float32)
        if not self.categories or "category" not in content:
            return out
        idx = pd.Index(self.categories).get_indexer(pd.Index(content["category"].astype("string").fillna(UNKNOWN).str.lower()))
        rows = np.flatnonzero(idx >= 0)
        out[rows, idx[rows]] = 1.0
        return out

    def vectors(self, content: pd.DataFrame, kind: str) -> np.ndarray:
        dim = self.visual_dim if kind == "visual" else self.audio_dim
        col = f"{kind}_embedding"
        mat, _ = _vector_matrix(content.get(col), len(content), dim)
        return normalize_rows(mat)

    def side_features(self, content: pd.DataFrame) -> sp.csr_matrix:
        """Ridge input: sparse TF-IDF, category one-hot, visual and audio vectors with indicators."""
        parts: list[sp.spmatrix] = []
        if self.tfidf is not None:
            parts.append(self.tfidf.transform(content_documents(content)))
        parts.append(sp.csr_matrix(self.category_onehot(content)))
        for kind, dim in (("visual", self.visual_dim), ("audio", self.audio_dim)):
            if dim:
                v = self.vectors(content, kind)
                parts.append(sp.csr_matrix(np.hstack([v, (np.abs(v).sum(axis=1, keepdims=True) > 0).astype(np.float32)])))
        return sp.hstack(parts, format="csr", dtype=np.float32)

    def predict_collaborative(self, content: pd.DataFrame) -> np.ndarray:
        """Ridge estimate of the normalised collaborative vector (zeros before ``fit_ridge``)."""
        if self.ridge is None:
            return np.zeros((len(content), self.cf_dim), dtype=np.float32)
        return normalize_rows(np.asarray(self.ridge.predict(self.side_features(content)), dtype=np.float32))

    def block_dims(self) -> dict[str, int]:
        dims = {
            "collaborative": self.cf_dim,
            "text": self.text_cols,
            "category": len(self.categories),
            "visual": self.visual_dim,
            "audio": self.audio_dim,
        }
        return {b: d for b, d in dims.items() if d > 0 and float(self.p.block_weights.get(b, 0.0)) > 0}

    def assemble(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """Weighted concatenation of normalised blocks, normalised (missing blocks are zeros)."""
        dims = self.block_dims()
        n = next(iter(blocks.values())).shape[0] if blocks else 0
        parts = []
        for b, d in dims.items():
            x = blocks.get(b)
            x = np.zeros((n, d), dtype=np.float32) if x is None else normalize_rows(np.asarray(x, dtype=np.float32))
            parts.append(x * np.float32(np.sqrt(float(self.p.block_weights[b]))))
        return normalize_rows(np.hstack(parts).astype(np.float32)) if parts else np.zeros((n, 0), dtype=np.float32)

    def content_blocks(self, content: pd.DataFrame, collaborative: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "collaborative": collaborative,
            "text": self.text_vectors(content),
            "category": self.category_onehot(content),
            "visual": self.vectors(content, "visual"),
            "audio": self.vectors(content, "audio"),
        }

    def embed(self, content: pd.DataFrame) -> np.ndarray:
        """Unified vectors of contents without interactions (new uploads): metadata only."""
        return self.assemble(self.content_blocks(content, self.predict_collaborative(content)))

    def block_slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for b, d in self.block_dims().items():
            out[b] = slice(start, start + d)
            start += d
        return out

    @property
    def dim(self) -> int:
        return sum(self.block_dims().values())
