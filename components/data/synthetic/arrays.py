"""Small vectorised helpers: seeded streams, coded draws and Arrow arrays built without row loops."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def seeded_rng(seed: int, *key: int) -> np.random.Generator:
    """An independent, reproducible stream for one purpose (world, plan, batch i, part i)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def choose_codes(
    rng: np.random.Generator, n: int, size: int, p: Sequence[float] | np.ndarray
) -> np.ndarray:
    """``size`` codes in ``0 .. n - 1`` with probabilities ``p``."""
    return np.asarray(rng.choice(n, size=size, p=np.asarray(p, dtype=np.float64)))


def number_strings(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
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


def id_width(n: int, minimum: int) -> int:
    """Digits needed for ids ``0 .. n - 1``."""
    return max(minimum, len(str(max(n - 1, 0))))


def row_categorical(flat: np.ndarray, m: int, rows: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Draw one column per entry of ``rows`` from row-wise cumulative probabilities.

    ``flat`` is the (n_rows, m) cumulative matrix with row ``i`` shifted by ``i``, raveled, so one
    ``searchsorted`` serves every row at once.
    """
    idx = np.searchsorted(flat, rows + r, side="right") - rows * m
    return np.clip(idx, 0, m - 1)


def segment_starts(lengths: np.ndarray) -> np.ndarray:
    """Start offset of each segment of the given lengths."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def list_array(offsets: np.ndarray, values: pa.Array, mask: np.ndarray | None = None) -> pa.Array:
    """A ``list<…>`` array from offsets and flat values (``mask`` marks null rows)."""
    arr_mask = None if mask is None else pa.array(mask)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values, mask=arr_mask)


def take_codes(values: pa.Array, codes: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """``values[codes]`` as Arrow, null where ``valid`` is false."""
    idx = pa.array(codes.astype(np.int64), mask=None if valid is None else ~valid)
    return values.take(idx)
