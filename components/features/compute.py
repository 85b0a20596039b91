"""Feature computation: user, content and creator features as snapshots; request-time context.

Snapshot semantics (no look-ahead by construction)
    Every entity gets one feature row per snapshot period in which it had activity (default: one
    UTC day, ``features.snapshot_hours: 24``). The row is stamped ``event_timestamp = T``, the end
    of that period, and is computed from the entity's events with ``timestamp < T`` only. A
    point-in-time join (Feast: latest row with ``event_timestamp <= label time``) therefore never
    sees an event at or after the label. Sliding windows (1 h, 24 h, 7 d) end at ``T``; between two
    snapshots a value is as of the last snapshot. Fresher user values reach serving through the
    push source (see ``feature_repo/``); the request-time parts (hour of day, recency at request
    time) are on-demand features computed identically offline and online from
    :func:`components.features.context.context_frame` and ``recency_frame``.

The tables and their definitions: :mod:`components.features.user`, ``content``, ``profile``
(static content attributes and the category vocabulary), ``creator``; their schemas:
:mod:`components.features.columns`. This module is the stage: the pure
:func:`compute_features`, :func:`run` with the I/O, and the CLI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.catalog import DataPaths
from components.core.config import stage_context, stage_parser
from components.core.frames import arrow_string_mapper
from components.core.io import atomic_write_json, write_metrics
from components.features.columns import FILES, META_FILE, TABLE_SCHEMAS, UNKNOWN, WINDOWS
from components.features.content import content_features
from components.features.creator import creator_features
from components.features.params import FeatureParams
from components.features.profile import category_vocab, content_profile
from components.features.user import user_features

log = logging.getLogger(__name__)

#: The columns of the clean event log the features read.
EVENT_INPUT_COLUMNS = (
    "event_type",
    "user_id",
    "content_id",
    "timestamp",
    "creator_id",
    "device_type",
    "os",
    "network",
    "session_id",
    "watch_ratio",
    "category",
)


@dataclass(frozen=True)
class FeatureTables:
    user: pd.DataFrame
    content: pd.DataFrame
    content_profile: pd.DataFrame
    creator: pd.DataFrame
    categories: list[str]


def compute_features(
    events: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame, p: FeatureParams
) -> FeatureTables:
    """The pure core: clean events, content and users in; the four feature tables out."""
    categories = category_vocab(content, p.max_categories) if len(content) else [UNKNOWN]
    return FeatureTables(
        user=user_features(events, users, categories, p),
        content=content_features(events, content, p),
        content_profile=content_profile(events, content, categories, p),
        creator=creator_features(events, content, p),
        categories=categories,
    )


@dataclass(frozen=True)
class FeaturesResult:
    rows: dict[str, int]
    entities: dict[str, int]
    first_snapshot: str | None
    last_snapshot: str | None
    categories: int
    text_dim: int
    seconds: float


def _write(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table, path, row_group_size=1 << 20)


def write_tables(tables: FeatureTables, p: FeatureParams, out_dir: Path) -> None:
    """Write the four tables (fixed Arrow schemas) and ``feature_meta.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (schema, _) in TABLE_SCHEMAS.items():
        _write(getattr(tables, name), schema, out_dir / FILES[name])
    meta = {
        "categories": tables.categories,
        "text_dim": p.text_dim,
        "last_n_viewed": p.last_n_viewed,
        "snapshot_hours": p.snapshot_hours,
        "lambda_decay": p.lambda_decay,
        "decay_unit": p.decay_unit,
        "windows": [w for w, _ in WINDOWS],
        "files": FILES,
    }
    atomic_write_json(out_dir / META_FILE, meta, sort_keys=False)


def read_inputs(paths: DataPaths) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The clean events (the columns the features read), content and users."""
    events = pq.read_table(
        paths.of("interim_events"), columns=list(EVENT_INPUT_COLUMNS)
    ).to_pandas(types_mapper=arrow_string_mapper)
    content = pq.read_table(paths.of("interim_content")).to_pandas(
        types_mapper=arrow_string_mapper
    )
    users = pq.read_table(paths.of("interim_users")).to_pandas(
        types_mapper=arrow_string_mapper
    )
    return events, content, users


def summarise(tables: FeatureTables, p: FeatureParams, seconds: float) -> FeaturesResult:
    """Rows and entities per table and the snapshot range."""
    frames = {name: (getattr(tables, name), key) for name, (_, key) in TABLE_SCHEMAS.items()}
    snaps = pd.concat(
        [
            tables.user["event_timestamp"],
            tables.content["event_timestamp"],
            tables.creator["event_timestamp"],
        ]
    )
    return FeaturesResult(
        rows={k: len(v[0]) for k, v in frames.items()},
        entities={k: int(v[0][v[1]].nunique()) for k, v in frames.items()},
        first_snapshot=snaps.min().isoformat() if len(snaps) else None,
        last_snapshot=snaps.max().isoformat() if len(snaps) else None,
        categories=len(tables.categories),
        text_dim=p.text_dim,
        seconds=seconds,
    )


def run(params: Mapping[str, Any], paths: DataPaths) -> FeaturesResult:
    """Read the interim tables, compute and write the features and the stage's metrics."""
    p = FeatureParams.from_params(params)
    t0 = time.perf_counter()
    events, content, users = read_inputs(paths)
    tables = compute_features(events, content, users, p)
    write_tables(tables, p, paths.features)
    result = summarise(tables, p, round(time.perf_counter() - t0, 3))
    metrics = {k: v for k, v in result.__dict__.items() if k != "seconds"}
    metrics["events"] = len(events)
    write_metrics(paths.of("metrics_features"), metrics)
    timing = {
        "seconds": result.seconds,
        "events_per_second": round(len(events) / result.seconds, 1) if result.seconds else 0.0,
    }
    write_metrics(paths.of("metrics_features_throughput"), timing, sort_keys=False)
    log.info("features: %s rows in %.1f s", result.rows, result.seconds)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    r = run(params, paths)
    print(
        f"features: {r.rows['user']} user rows, {r.rows['content']} content rows, "
        f"{r.rows['content_profile']} profiles, {r.rows['creator']} creator rows "
        f"({r.first_snapshot} .. {r.last_snapshot}) in {r.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
