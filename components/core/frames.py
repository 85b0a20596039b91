"""Small column helpers over Arrow-backed pandas columns (hash kernels, zero-copy access)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def arrow_string_mapper(t: pa.DataType) -> Any:
    """``types_mapper`` for ``Table.to_pandas``: keep text Arrow-backed (less memory, fast kernels)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pd.StringDtype("pyarrow")
    return None


def arrow_text(s: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow array behind an Arrow-backed text column (zero copy), else None."""
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
        arr = pa.array(s.array)
        return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])
    return None


def arrow_codes(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Dictionary codes (-1 for null, in order of first appearance) and the distinct values."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    enc = pc.dictionary_encode(arr)
    codes = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), dtype="int64")
    return codes, enc.dictionary


def codes_of(s: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Integer codes and distinct values of a column (-1 for null), via Arrow's hash kernels."""
    arr = arrow_text(s)
    if arr is None:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        return np.asarray(codes, dtype="int64"), list(uniques)
    codes, dictionary = arrow_codes(arr)
    return codes, dictionary.to_pylist()


def first_occurrence_arrow(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean mask, True where an id appears for the first time (in array order).

    Arrow assigns dictionary codes in order of first appearance, so a row is a first
    occurrence exactly when its code exceeds every code before it (one O(n) pass).
    Nulls are never treated as repeats.
    """
    codes, _ = arrow_codes(ids)
    if len(codes) == 0:
        return np.zeros(0, dtype=bool)
    first = codes > np.maximum.accumulate(np.r_[-1, codes[:-1]])
    first[codes < 0] = True
    return first


def repeated_rows(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Row numbers whose (non-null) value occurs more than once, via one Arrow hash pass."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    enc = pc.dictionary_encode(arr)
    codes = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    counts = np.bincount(codes[codes >= 0], minlength=len(enc.dictionary))
    return np.flatnonzero((codes >= 0) & (counts[np.maximum(codes, 0)] > 1))
