"""Feast glue, the stages: register the definitions (apply) and load the online store
(materialise); ``python -m components.features.store apply|materialize|write-config``.

Materialisation
    Incremental per feature view: from the registry's last materialised end minus
    ``feast.materialize_overlap_hours`` (late data: snapshots rewritten for recent periods are
    written again), or from the first row on the first run, to ``end`` (default: the newest row).
    The result records the range, the rows in it and the entities written.

The store's configuration: :mod:`components.features.feast_repo`; point-in-time training data:
:mod:`components.features.point_in_time`; the serving side: :mod:`components.features.online`
and :mod:`components.features.item_cache`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from feast import Entity, FeatureService, FeatureStore, FeatureView
from feast.data_source import DataSource
from feast.on_demand_feature_view import OnDemandFeatureView

from components.core.catalog import DataPaths
from components.core.config import stage_context
from components.core.io import write_metrics
from components.features.feast_repo import (
    StoreSettings,
    load_definitions,
    open_store,
    source_path,
    ttl_s,
    utc,
    write_feature_store_yaml,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Apply


@dataclass(frozen=True)
class ApplyResult:
    project: str
    online_store: str
    entities: list[str]
    data_sources: list[str]
    feature_views: dict[str, dict[str, Any]]
    on_demand_feature_views: list[str]
    feature_services: dict[str, int]
    removed: list[str]


def _stale(store: FeatureStore, objects: Sequence[Any]) -> list[Any]:
    """Registered services and views that the definitions no longer hold."""
    names = {(type(o).__name__, o.name) for o in objects}
    stale: list[Any] = []
    existing: Any
    for existing in (
        *store.list_feature_services(),
        *store.list_on_demand_feature_views(),
        *store.list_feature_views(),
    ):
        if (type(existing).__name__, existing.name) not in names:
            stale.append(existing)
    return stale


def apply(store: FeatureStore, objects: Sequence[Any] | None = None) -> ApplyResult:
    """Register the definitions (and remove registered objects no longer defined)."""
    objects = list(objects) if objects is not None else load_definitions()
    stale = _stale(store, objects)
    store.apply(objects, objects_to_delete=stale, partial=not stale)
    fvs = sorted((o for o in objects if type(o) is FeatureView), key=lambda o: o.name)
    return ApplyResult(
        project=store.project,
        online_store=str(store.config.online_store.type),
        entities=sorted(o.name for o in objects if isinstance(o, Entity)),
        data_sources=sorted(o.name for o in objects if isinstance(o, DataSource)),
        feature_views={fv.name: {"ttl_s": ttl_s(fv), "features": len(fv.features)} for fv in fvs},
        on_demand_feature_views=sorted(
            o.name for o in objects if isinstance(o, OnDemandFeatureView)
        ),
        feature_services={
            o.name: sum(len(p.features) for p in o.feature_view_projections)
            for o in sorted(
                (o for o in objects if isinstance(o, FeatureService)), key=lambda o: o.name
            )
        },
        removed=sorted(f"{type(o).__name__}:{o.name}" for o in stale),
    )


# ---------------------------------------------------------------------------------------------
# Materialisation


@dataclass(frozen=True)
class ViewMaterialization:
    view: str
    start: str
    end: str
    rows: int
    entities: int
    incremental: bool


@dataclass(frozen=True)
class MaterializeResult:
    project: str
    online_store: str
    overlap_hours: float
    views: list[ViewMaterialization]
    skipped: list[str]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(v.rows for v in self.views)


def _materialize_view(
    store: FeatureStore, fv: FeatureView, end: datetime | None, overlap: timedelta
) -> ViewMaterialization | None:
    """Materialise one view incrementally; None when it has nothing to write."""
    key = fv.join_keys[0]
    assert fv.batch_source is not None
    table = pq.read_table(source_path(store, fv), columns=[key, fv.batch_source.timestamp_field])
    if table.num_rows == 0:
        return None
    ts = table.column(1).to_pandas()
    data_end = utc(ts.max())
    stop = utc(end) if end is not None else data_end
    prev = fv.most_recent_end_time
    start = utc(prev) - overlap if prev is not None else utc(ts.min())
    if start > stop:
        return None
    window = ((ts >= start) & (ts <= stop)).to_numpy()
    keys = table.column(0).to_numpy(zero_copy_only=False)[window]
    store.materialize(start_date=start, end_date=stop, feature_views=[fv.name])
    log.info("materialised %s: %s .. %s, %d rows", fv.name, start, stop, int(window.sum()))
    return ViewMaterialization(
        view=fv.name,
        start=start.isoformat(),
        end=stop.isoformat(),
        rows=int(window.sum()),
        entities=int(pd.unique(keys).size),
        incremental=prev is not None,
    )


def materialize(
    store: FeatureStore,
    *,
    end: datetime | None = None,
    overlap: timedelta = timedelta(hours=48),
    views: Sequence[str] | None = None,
) -> MaterializeResult:
    """Incrementally load the newest row per entity of each batch view into the online store."""
    t0 = time.perf_counter()
    done: list[ViewMaterialization] = []
    skipped: list[str] = []
    registered = store.list_feature_views()
    if not registered:
        raise RuntimeError(
            f"no feature views registered in Feast project {store.project!r}: run `feast apply` "
            "first (python -m components.features.store apply)"
        )
    for fv in sorted(registered, key=lambda v: v.name):
        if views is not None and fv.name not in views:
            continue
        result = _materialize_view(store, fv, end, overlap)
        if result is None:
            skipped.append(fv.name)
        else:
            done.append(result)
    return MaterializeResult(
        project=store.project,
        online_store=str(store.config.online_store.type),
        overlap_hours=overlap.total_seconds() / 3600.0,
        views=done,
        skipped=skipped,
        seconds=round(time.perf_counter() - t0, 3),
    )


# ---------------------------------------------------------------------------------------------
# CLI (DVC stages feast_apply and materialize)


def run_apply(
    params: Mapping[str, Any], paths: DataPaths, config_file: Path | None = None
) -> ApplyResult:
    """Apply the repository's definitions to the root's store and write the stage's metrics."""
    settings = StoreSettings.from_params(params)
    store = open_store(paths, settings, config_file)
    result = apply(store)
    write_metrics(paths.of("metrics_feast_apply"), asdict(result))
    log.info(
        "applied %d feature views, %d services to %s",
        len(result.feature_views),
        len(result.feature_services),
        result.online_store,
    )
    return result


def run_materialize(
    params: Mapping[str, Any],
    paths: DataPaths,
    *,
    end: datetime | None = None,
    config_file: Path | None = None,
) -> MaterializeResult:
    """Materialise the root's store; write the metrics and append to the materialisation log."""
    settings = StoreSettings.from_params(params)
    store = open_store(paths, settings, config_file)
    result = materialize(
        store, end=end, overlap=timedelta(hours=settings.materialize_overlap_hours)
    )
    record = asdict(result)
    seconds = record.pop("seconds")
    record["rows"] = result.rows
    write_metrics(paths.of("metrics_materialize"), record)
    write_metrics(
        paths.of("metrics_materialize_throughput"),
        {
            "seconds": seconds,
            "rows_per_second": round(result.rows / seconds, 1) if seconds else 0.0,
        },
    )
    log_path = paths.of("feature_repo_state") / f"materialize_log.{result.online_store}.jsonl"
    with log_path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({**record, "seconds": seconds}, default=str) + "\n")
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Feast repository: apply definitions, materialise."
    )
    parser.add_argument("command", choices=("apply", "materialize", "write-config"))
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument(
        "--root", default=None, help="project root (state under <root>/feature_repo/data)"
    )
    parser.add_argument(
        "--config", default=None, help="a feature_store.yaml to use instead (e.g. the Redis one)"
    )
    parser.add_argument(
        "--end", default=None, help="materialise up to this time (ISO-8601; default: newest row)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params, paths = stage_context(args)
    logging.getLogger("feast").setLevel(logging.WARNING)  # per-call registry refresh notices
    config_file = Path(args.config) if args.config else None
    if args.command == "apply":
        a = run_apply(params, paths, config_file)
        print(
            f"feast apply: {len(a.feature_views)} feature views, {len(a.feature_services)} services ({a.online_store})"
        )
    elif args.command == "materialize":
        end = utc(pd.Timestamp(args.end)) if args.end else None
        m = run_materialize(params, paths, end=end, config_file=config_file)
        print(
            f"materialize: {m.rows} rows over {len(m.views)} views into {m.online_store} in {m.seconds:.1f} s"
        )
    else:
        print(write_feature_store_yaml(paths, StoreSettings.from_params(params)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
