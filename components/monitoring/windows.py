"""The reference and current windows of a drift check, and the rows of a frame inside each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


def utc(ts: Any) -> pd.Timestamp:
    """A UTC timestamp from a string / datetime / Timestamp (naive values are read as UTC)."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


@dataclass(frozen=True)
class Windows:
    """The reference and current windows, each half-open ``[start, end)``."""

    reference_start: pd.Timestamp
    reference_end: pd.Timestamp
    current_start: pd.Timestamp
    current_end: pd.Timestamp
    reference_given: bool = False

    @classmethod
    def ending_at(
        cls,
        end: Any,
        current_days: float,
        reference_days: float,
        reference_start: Any | None = None,
        reference_end: Any | None = None,
    ) -> Windows:
        """Current = the ``current_days`` before ``end``; reference = the ``reference_days`` before
        that, unless an explicit reference window is given (both bounds or neither)."""
        if (reference_start is None) != (reference_end is None):
            raise ValueError("give both reference_start and reference_end, or neither")
        cur_end = utc(end)
        cur_start = cur_end - pd.Timedelta(days=current_days)
        if reference_start is not None:
            ref_start, ref_end = utc(reference_start), utc(reference_end)
            given = True
        else:
            ref_end = cur_start
            ref_start = ref_end - pd.Timedelta(days=reference_days)
            given = False
        if not ref_start < ref_end:
            raise ValueError(f"empty reference window [{ref_start}, {ref_end})")
        return cls(ref_start, ref_end, cur_start, cur_end, given)

    @property
    def span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The smallest ``[start, end]`` covering both windows (what the inputs must hold)."""
        return min(self.reference_start, self.current_start), max(
            self.reference_end, self.current_end
        )

    def overlap(self) -> bool:
        return self.reference_start < self.current_end and self.current_start < self.reference_end

    def to_dict(self) -> dict[str, Any]:
        return {
            "end": self.current_end.isoformat(),
            "current": {
                "start": self.current_start.isoformat(),
                "end": self.current_end.isoformat(),
            },
            "reference": {
                "start": self.reference_start.isoformat(),
                "end": self.reference_end.isoformat(),
            },
            "reference_given": self.reference_given,
        }


def default_end(newest: Any) -> pd.Timestamp:
    """The CLI's default ``end``: the end of the UTC day holding the newest event."""
    return utc(newest).floor("D") + pd.Timedelta(days=1)


def split_windows(
    frame: pd.DataFrame, ts_column: str, windows: Windows, snapshot: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference rows, current rows) of ``frame`` by ``ts_column``: ``[start, end)`` for events,
    ``(start, end]`` for snapshots (a snapshot stamped T describes the time before T)."""
    ts = pd.to_datetime(frame[ts_column], utc=True)

    def inside(start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        return (ts > start) & (ts <= end) if snapshot else (ts >= start) & (ts < end)

    ref = frame.loc[inside(windows.reference_start, windows.reference_end)]
    cur = frame.loc[inside(windows.current_start, windows.current_end)]
    return ref.reset_index(drop=True), cur.reset_index(drop=True)
