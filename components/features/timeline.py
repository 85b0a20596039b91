"""Vectorised point-in-time primitives: sorted timelines, snapshots, decayed sums, coded events.

Each event kind is a sorted ``entity * span + time`` key and every count "before T" is one
``np.searchsorted``; sums use prefix sums. The decayed sum is a recurrence between an entity's
consecutive snapshots, ``S_k = S_{k-1} exp(-lambda dt) + D_k``, run as one vectorised step per
snapshot period (tens to a few thousand steps), which stays exact for any span (a prefix sum of
``exp(lambda t)`` overflows after ~700 / lambda days). No library computes point-in-time
snapshot aggregates, hence this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from components.core.frames import codes_of
from components.core.schema import EVENT_TYPES


def epoch_ms(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 milliseconds since the epoch."""
    return ts.to_numpy(dtype="datetime64[ms]").astype("int64")


class Clock:
    """Maps (entity code, time) to one sortable int64 key: ``code * span + (t - t0)``."""

    def __init__(self, t_min: int, t_max: int, n_codes: int) -> None:
        self.t0 = int(t_min)
        self.span = int(t_max) - int(t_min) + 1
        if n_codes * self.span >= 2**62:
            raise ValueError("time span x entities too large for int64 keys")

    def key(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        return codes.astype("int64") * self.span + np.clip(t - self.t0, 0, self.span)


class Timeline:
    """Events of one kind sorted by (entity, time); counts and sums "before t" by binary search."""

    def __init__(self, clock: Clock, codes: np.ndarray, ts: np.ndarray) -> None:
        self.clock = clock
        key = clock.key(codes, ts)
        self.order = np.argsort(key, kind="stable")
        self.keys = key[self.order]

    def pos(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Index (in sorted order) one past the entity's last event with time < t."""
        return np.searchsorted(self.keys, self.clock.key(codes, t), side="left")

    def start(self, codes: np.ndarray) -> np.ndarray:
        """Index (in sorted order) of the entity's first event."""
        return np.searchsorted(self.keys, codes.astype("int64") * self.clock.span, side="left")

    def count(
        self, codes: np.ndarray, t_hi: np.ndarray, t_lo: np.ndarray | None = None
    ) -> np.ndarray:
        """Events with ``t_lo <= time < t_hi`` (all before ``t_hi`` without ``t_lo``)."""
        lo = self.start(codes) if t_lo is None else self.pos(codes, t_lo)
        return (self.pos(codes, t_hi) - lo).astype("int64")

    def prefix(self, values: np.ndarray) -> np.ndarray:
        """Prefix sums of per-event values in sorted order (length n + 1)."""
        return np.concatenate([[0.0], np.cumsum(values[self.order], dtype="float64")])

    def total(self, prefix: np.ndarray, codes: np.ndarray, t_hi: np.ndarray) -> np.ndarray:
        """Sum of the per-event values (as :meth:`prefix` sums) before ``t_hi``."""
        return prefix[self.pos(codes, t_hi)] - prefix[self.start(codes)]


@dataclass(frozen=True)
class Snapshots:
    """Unique (entity, period end) pairs sorted by entity then time, and each event's row."""

    codes: np.ndarray  # entity code per snapshot
    t: np.ndarray  # snapshot time (ms), end of the period
    event_row: np.ndarray  # snapshot row of each input event


def snapshots(codes: np.ndarray, ts: np.ndarray, period_ms: int) -> Snapshots:
    """One snapshot per (entity, period with an event), stamped at the end of the period."""
    period = np.floor_divide(ts, period_ms)
    p0 = int(period.min()) if len(period) else 0
    n_periods = int(period.max()) - p0 + 1 if len(period) else 1
    comp = codes.astype("int64") * n_periods + (period - p0)
    uniq, inverse = np.unique(comp, return_inverse=True)
    snap_codes = uniq // n_periods
    snap_t = (uniq % n_periods + p0 + 1) * period_ms
    return Snapshots(codes=snap_codes, t=snap_t, event_row=inverse.reshape(-1))


@dataclass(frozen=True)
class EntityTimelines:
    """One entity kind's events (codes, times) on a shared clock, and their snapshots."""

    clock: Clock
    codes: np.ndarray
    ts: np.ndarray
    snap: Snapshots

    @classmethod
    def of(cls, codes: np.ndarray, ts: np.ndarray, n_codes: int, period_ms: int) -> EntityTimelines:
        clock = Clock(int(ts.min()), int(ts.max()), n_codes)
        return cls(clock, codes, ts, snapshots(codes, ts, period_ms))

    def timeline(self, mask: np.ndarray) -> Timeline:
        """The events selected by ``mask`` as a :class:`Timeline`."""
        return Timeline(self.clock, self.codes[mask], self.ts[mask])

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Per snapshot, the selected events before the snapshot time."""
        return self.timeline(mask).count(self.snap.codes, self.snap.t)


def decayed(snap: Snapshots, ts: np.ndarray, value: np.ndarray, lam_per_ms: float) -> np.ndarray:
    """``sum(value * exp(-lam * (T - t)))`` over an entity's events before each snapshot ``T``.

    Within a period every event belongs to that period's snapshot, so the value is the previous
    snapshot's decayed by the gap plus this period's own (at most one period old) contributions.
    """
    n = len(snap.t)
    own = np.bincount(
        snap.event_row,
        weights=value * np.exp(-lam_per_ms * (snap.t[snap.event_row] - ts)),
        minlength=n,
    )
    out = np.zeros(n, dtype="float64")
    if n == 0:
        return out
    state = np.zeros(int(snap.codes.max()) + 1, dtype="float64")
    last = np.zeros_like(state)
    by_time = np.argsort(snap.t, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(snap.t[by_time]) != 0, True])
    for a, b in itertools.pairwise(bounds):
        rows = by_time[a:b]
        c, t = snap.codes[rows], snap.t[rows[0]]
        state[c] = state[c] * np.exp(-lam_per_ms * (t - last[c])) + own[rows]
        last[c] = t
        out[rows] = state[c]
    return out


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as float64, NaN where ``den`` is not positive."""
    num = np.asarray(num, dtype="float64")
    den = np.asarray(den, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def list_array(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    """An Arrow list column from offsets and flat values."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype("int32")), values)


def last_n(
    tl: Timeline, codes: np.ndarray, t: np.ndarray, items: np.ndarray, names: pa.Array, n: int
) -> pa.Array:
    """Per snapshot, the ``n`` most recent event items before ``t`` (most recent first)."""
    hi = tl.pos(codes, t)
    k = np.minimum(hi - tl.start(codes), n)
    offsets = np.concatenate([[0], np.cumsum(k)])
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], k)
    idx = np.repeat(hi - 1, k) - within
    values = names.take(pa.array(items[tl.order][idx]))
    return list_array(offsets, values)


def codes_in(
    values: pd.Series, vocab: Sequence[str], other: int | None = None, null: int = -1
) -> np.ndarray:
    """Index of each value in ``vocab``: ``other`` (default -1) when absent, ``null`` when null."""
    codes, uniques = codes_of(values)
    lookup = {v: i for i, v in enumerate(vocab)}
    fallback = -1 if other is None else other
    mapped = np.array([lookup.get(str(u), fallback) for u in uniques] + [null], dtype="int64")
    return mapped[codes]


def type_codes(types: Sequence[str]) -> list[int]:
    """Indices of event types in :data:`EVENT_TYPES`."""
    return [EVENT_TYPES.index(t) for t in types]


@dataclass(frozen=True)
class Events:
    """Integer-coded view of the event log (no per-row Python objects)."""

    ts: np.ndarray  # ms since epoch
    etype: np.ndarray  # index into EVENT_TYPES, -1 for anything else
    user: np.ndarray
    user_ids: list[Any]
    content: np.ndarray  # -1 where null
    content_ids: list[Any]

    @classmethod
    def of(cls, events: pd.DataFrame) -> Events:
        user, user_ids = codes_of(events["user_id"])
        content, content_ids = codes_of(events["content_id"])
        return cls(
            ts=epoch_ms(events["timestamp"]),
            etype=codes_in(events["event_type"], EVENT_TYPES),
            user=user,
            user_ids=user_ids,
            content=content,
            content_ids=content_ids,
        )

    def type_in(self, types: Sequence[str]) -> np.ndarray:
        """Mask of the events whose type is one of ``types``."""
        return np.isin(self.etype, type_codes(types))


def str_or_none(s: pd.Series) -> np.ndarray:
    """Text column as an object array of ``str`` / ``None``."""
    return np.array(
        [
            None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in s
        ],
        dtype=object,
    )


def string_array(uniques: Sequence[Any]) -> pa.Array:
    """Values as an Arrow string array (``None`` stays null)."""
    return pa.array([None if u is None else str(u) for u in uniques], type=pa.string())
