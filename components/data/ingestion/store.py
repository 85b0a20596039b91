"""The raw event store: Parquet partitioned by ``event_date`` (Hive style), written and read back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from components.core.frames import arrow_string_mapper

#: Low-cardinality columns worth dictionary-encoding in Parquet (ids like event_id are not).
_DICTIONARY_COLUMNS = [
    "event_type", "user_id", "content_id", "platform", "creator_id", "reason", "device_type", "os", "network",
]


def write_events(events: pa_arrow.Table, out_dir: Path, basename: str = "part") -> int:
    """Write events as Parquet partitioned by ``event_date`` (Hive style); returns files written.

    Rows are grouped by day with one stable sort on the (integer) date, then each day's
    contiguous slice is written as ``event_date=YYYY-MM-DD/<basename>.parquet``.
    """
    if len(events) == 0:
        return 0
    days = pc.cast(events["timestamp"], pa_arrow.date32()).to_numpy(zero_copy_only=False).astype("datetime64[D]")
    day_int = days.astype("int64")
    if np.any(day_int[1:] < day_int[:-1]):
        order = np.argsort(day_int, kind="stable")
        events, days, day_int = events.take(pa_arrow.array(order)), days[order], day_int[order]
    starts = np.flatnonzero(np.r_[True, day_int[1:] != day_int[:-1]])
    ends = np.r_[starts[1:], len(day_int)]
    for a, b in zip(starts, ends, strict=True):
        folder = out_dir / f"event_date={days[a]}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            events.slice(int(a), int(b - a)),
            folder / f"{basename}.parquet",
            row_group_size=1 << 20,
            use_dictionary=_DICTIONARY_COLUMNS,
        )
    return len(starts)


def read_event_table(events_dir: Path, columns: Sequence[str] | None = None) -> pa_arrow.Table:
    """Read the partitioned raw event store as one Arrow table (partitions in date order)."""
    dataset = ds.dataset(
        events_dir,
        format="parquet",
        partitioning=ds.partitioning(pa_arrow.schema([pa_arrow.field("event_date", pa_arrow.date32())]), flavor="hive"),
    )
    return dataset.to_table(columns=list(columns) if columns else None)


def read_events(events_dir: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read the partitioned raw event store back as pandas (strings Arrow-backed)."""
    return read_event_table(events_dir, columns).to_pandas(types_mapper=arrow_string_mapper)
