"""Searching a FAISS content index: one rule for the batch index and serving's mapped copy.

Imports FAISS only (no fitting code), so serving may use it on the exported index file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def _faiss() -> Any:
    import faiss

    return faiss


def walk(index: Any) -> Iterable[Any]:
    """The index and its wrapped sub-indexes (ID maps, refinement), downcast."""
    faiss = _faiss()
    idx = faiss.downcast_index(index)
    yield idx
    if hasattr(idx, "id_map"):
        yield from walk(idx.index)
    elif hasattr(idx, "base_index"):
        yield from walk(idx.base_index)


def set_search_params(index: Any, ef_search: int | None = None, nprobe: int | None = None, k_factor: float | None = None) -> None:
    """Set efSearch (HNSW), nprobe (IVF) and k_factor (refinement) wherever they apply."""
    for idx in walk(index):
        if ef_search is not None and hasattr(idx, "hnsw"):
            idx.hnsw.efSearch = int(ef_search)
        if nprobe is not None and hasattr(idx, "nprobe"):
            idx.nprobe = int(nprobe)
        if k_factor is not None and hasattr(idx, "k_factor"):
            idx.k_factor = float(k_factor)


def search(index: Any, queries: np.ndarray, k: int, *, hnsw_ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the ``k`` best contents per query; id -1 where fewer were found. For an
    HNSW index (``hnsw_ef_search`` its configured efSearch) a ``k`` above efSearch raises efSearch
    to ``k`` for this search (HNSW returns at most efSearch results)."""
    k = int(min(k, index.ntotal))
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if k <= 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    if hnsw_ef_search is not None and k > hnsw_ef_search:
        set_search_params(index, ef_search=k)
        try:
            return index.search(q, k)  # type: ignore[no-any-return]
        finally:
            set_search_params(index, ef_search=hnsw_ef_search)
    return index.search(q, k)  # type: ignore[no-any-return]


__all__ = ["search", "set_search_params", "walk"]
