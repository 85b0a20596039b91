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


def codes_of(s: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Integer codes and distinct values of a column (-1 for null), via Arrow's hash kernels."""
    arr = arrow_text(s)
    if arr is None:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        return np.asarray(codes, dtype="int64"), list(uniques)
    enc = pc.dictionary_encode(arr).combine_chunks() if arr.num_chunks != 1 else pc.dictionary_encode(arr.chunk(0))
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype("int64", copy=False)
    return codes, enc.dictionary.to_pylist()


def first_occurrence(ids: pd.Series) -> np.ndarray:
    """Boolean mask, True where an id appears for the first time (in frame order)."""
    codes, _ = codes_of(ids)
    mask = np.zeros(len(codes), dtype=bool)
    if len(codes):
        _, first = np.unique(codes, return_index=True)
        mask[first] = True
    return mask
