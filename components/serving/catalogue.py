"""The exported catalogue as the engine indexes it: content id ↔ catalogue position (the FAISS
index's order), and each content id's rank in id order (the re-ranking's tie-break). Uploads
since the export are appended (:meth:`Catalogue.extend`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd


class Catalogue:
    """Content ids of the artefact set, by catalogue position."""

    def __init__(self, content_ids: Sequence[str]) -> None:
        self.ids = np.asarray(content_ids, dtype=object)
        self.id_rank = _id_rank(self.ids)  # rank of each content id in id order
        self.positions = pd.Index(self.ids)

    def extend(self, content_ids: Sequence[str]) -> np.ndarray:
        """Append contents (not already in the catalogue); returns their positions. Readers on
        other threads see the tie-break ranks first, then the ids, then the lookup: a position
        they can obtain is always covered."""
        start = len(self.ids)
        ids = np.concatenate([self.ids, np.asarray([str(c) for c in content_ids], dtype=object)])
        self.id_rank = _id_rank(ids)
        self.ids = ids
        self.positions = pd.Index(ids)
        return np.arange(start, len(ids), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, content_ids: Sequence[str] | pd.Series) -> np.ndarray:
        """Catalogue position of each of ``content_ids`` (-1 for an unknown one), in their order."""
        return self.positions.get_indexer(pd.Index(content_ids))

    def to_positions(self, content_ids: Iterable[str]) -> np.ndarray:
        """Catalogue positions of the known contents among ``content_ids`` (sorted)."""
        ids = list(content_ids)
        if not ids:
            return np.zeros(0, dtype=np.int64)
        pos = self.lookup(ids)
        return np.unique(pos[pos >= 0]).astype(np.int64)


def _id_rank(ids: np.ndarray) -> np.ndarray:
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
    return rank
