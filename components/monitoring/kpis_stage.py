"""Stage ``kpis``: the KPIs of served traffic (:mod:`components.monitoring.kpis`) per day and
arm, from the impression log and the event stream.

Writes ``metrics/kpis.json`` (every day and arm, the last day's figures by arm, the mean over
days by arm), ``metrics/plots/kpis.csv`` (DVC plots) and ``metrics/kpis.prom`` (the last day's
``reco_kpi{kpi, arm}`` gauges for a node_exporter textfile collector; the serving app shows the
same gauges on ``/metrics`` from ``kpis.json``).

``python -m components.monitoring.kpis_stage [--params params.yaml] [--root .]``
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from components.core.catalog import DataPaths
from components.core.config import Params, stage_context
from components.core.io import atomic_write, write_metrics
from components.experiments.outcomes import read_impression_log, read_stream
from components.monitoring.kpis import KPI_NAMES, compute_kpis

log = logging.getLogger(__name__)

#: the columns of the printed table (``format_table``)
TABLE_COLUMNS = (
    "dau", "d1_retention", "sessions_per_user", "session_length_s", "time_spent_s", "ctr",
    "engagement_rate", "negative_rate", "coverage", "creator_gini",
)  # fmt: skip


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _content(paths: DataPaths, events: pd.DataFrame) -> tuple[pd.Series, int]:
    """content -> creator (the raw content table plus streamed uploads), and the catalogue size."""
    table = paths.of("raw_content")
    frame = pq.read_table(table, columns=["content_id", "creator_id"]).to_pandas() if table.exists() else pd.DataFrame(columns=["content_id", "creator_id"])
    if "creator_id" in events and len(events):
        ups = events.loc[events["event_type"] == "content_upload", ["content_id", "creator_id"]]
        frame = pd.concat([frame, ups], ignore_index=True).drop_duplicates("content_id", keep="first")
    creators = pd.Series(frame["creator_id"].astype(object).to_numpy(), index=frame["content_id"].astype(str).to_numpy())
    return creators, len(frame)


def kpi_frame(params: Mapping[str, Any], paths: DataPaths) -> pd.DataFrame:
    """The KPIs of the project's impression log and stream (one row per day and arm)."""
    cfg = Params.of(params)
    imp = read_impression_log(paths.of("impressions"), ["request_id", "user_id", "content_id", "arm", "degraded", "timestamp"])
    events = read_stream(paths.of("stream_events"))
    creators, size = _content(paths, events)
    return compute_kpis(
        imp,
        events,
        creators=creators,
        catalogue_size=size,
        window_s=cfg.experiments.label_window_s,
        gap_minutes=cfg.preprocess.session_gap_minutes,
    )


def summary(frame: pd.DataFrame) -> dict[str, Any]:
    """The metrics JSON: rows, the last day by arm, the mean over days by arm."""
    rows = [{k: _clean(v) for k, v in r.items()} for r in frame.to_dict("records")]
    out: dict[str, Any] = {"days": rows, "last_day": {}, "mean_by_arm": {}}
    if frame.empty:
        return out
    last = frame["day"].max()
    out["last_day"] = {
        "day": last,
        "arms": {r["arm"]: {k: _clean(r[k]) for k in KPI_NAMES} for r in frame[frame["day"] == last].to_dict("records")},
    }
    means = frame.groupby("arm")[list(KPI_NAMES)].mean()
    out["mean_by_arm"] = {arm: {k: _clean(float(v)) for k, v in row.items()} for arm, row in means.iterrows()}
    return out


def prom_text(last_day: Mapping[str, Any]) -> str:
    """Prometheus text exposition of the last day's ``reco_kpi{kpi, arm}`` gauges."""
    lines = ["# HELP reco_kpi KPIs of the last logged day (kpis stage)", "# TYPE reco_kpi gauge"]
    for arm, kpis in (last_day.get("arms") or {}).items():
        for name, value in kpis.items():
            if value is not None:
                lines.append(f'reco_kpi{{kpi="{name}",arm="{arm}"}} {float(value):.6g}')
    return "\n".join(lines) + "\n"


def format_table(frame: pd.DataFrame) -> str:
    """The KPI table per day and arm, as fixed-width text."""
    if frame.empty:
        return "(no served traffic)"
    cols = [c for c in TABLE_COLUMNS if c in frame]
    shown = frame[["day", "arm", *cols]].copy()
    for c in cols:
        whole = c == "dau" or c.endswith("_s")
        shown[c] = shown[c].map(lambda v, w=whole: "-" if pd.isna(v) else (f"{v:.0f}" if w else f"{v:.3f}"))
    return str(shown.to_string(index=False))


def run(params: Mapping[str, Any], paths: DataPaths) -> pd.DataFrame:
    frame = kpi_frame(params, paths)
    out = summary(frame)
    write_metrics(paths.of("metrics_kpis"), out)
    plots = paths.of("plots_kpis")
    plots.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(plots, lambda tmp: frame.to_csv(tmp, index=False))
    atomic_write(paths.of("kpis_prom"), lambda tmp: tmp.write_text(prom_text(out["last_day"]), encoding="utf-8"))
    log.info("kpis: %d days x arms", len(frame))
    return frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="KPIs of served traffic per day and arm.")
    parser.add_argument("--params", default=None)
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    print(format_table(run(params, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
