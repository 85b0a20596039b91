"""Drift monitoring: a current window against a reference window, with Evidently.

Three families, each a set of per-column drift tests run by Evidently's ``DataDriftPreset``
(the stattest per column is Evidently's default for the column's type and size, or
``drift.num_stattest`` / ``drift.cat_stattest`` with ``drift.stattest_threshold``; Evidently's
defaults are p-value tests (K-S, chi-square, Z) up to 1000 reference rows and distances above
(normed Wasserstein, Jensen-Shannon, threshold 0.1), so each tested column records its test,
score kind, score and threshold):

``feature``
    The numeric columns of the daily feature snapshots (``drift.feature_tables``, default the
    user and content tables of ``data/features``). Ids, timestamps, list / embedding columns and
    the names matched by ``drift.exclude_columns`` are left out; at most ``drift.max_columns``
    columns per table (a sample drawn with ``base.seed`` when there are more).
``target``
    Engagement, from the clean events (``data/interim/events.parquet``) of each window: the
    event-type mix (one row per event, categorical), the watch ratio (one row per view) and the
    per-user engagement rate (one row per active user: events of ``drift.engagement_types``
    over all of the user's events).
``prediction``
    The ranking scores of the optional score log (``drift.score_log``: a Parquet file or a folder
    of them, columns ``timestamp`` (UTC), ``model_version``, ``score``). Absent or too small a
    log makes this family *skipped*, with the reason, never a silent pass.

Every table (a feature table, the events, the views, the users, the scores) keeps at most
``drift.max_rows`` rows per window (a sample drawn with ``base.seed``); a table with fewer than
``drift.min_rows`` rows in either window is skipped with a reason, and a family whose tables are
all skipped is skipped. A family drifts when the share of its tested columns that Evidently
flags reaches ``drift.drift_share`` (Evidently's own ``DriftedColumnsCount`` rule, counted over
all the family's tables).

Windows (``end`` is a parameter; the CLI's default is derived from the data, never the clock)
    current = [end - current_days, end), reference = [end - current_days - reference_days,
    end - current_days), or an explicit reference window (the production model's training
    window). Events and scores are selected by ``start <= timestamp < end``. Feature snapshots
    are selected by ``start < event_timestamp <= end``: a snapshot stamped T summarises the
    events strictly before T, so it describes the window that ends at T. The CLI's default
    ``end`` is the end of the UTC day of the newest event, so both windows are whole days and
    the feature snapshots line up with the events they summarise.

The verdict (a :class:`~components.core.verdict.Verdict`, gate ``drift``, built by
:class:`~components.monitoring.report.DriftReport`) is written to ``metrics/drift.json``. It
fails closed: it passes only when every family of ``drift.retrain_on`` was tested and no tested
family drifted; ``retrain_requested`` is drift in a family of ``drift.retrain_on``. When every
family is skipped the verdict is ``inconclusive`` (and fails, saying so in ``reason``).
A current window without any data at all (no feature row, event or score) is an error
(:class:`EmptyWindowError`, exit code 2 in the CLI), not a verdict: there is nothing to
judge, and a pass would be silent.

One HTML page (``reports/drift.html``) holds Evidently's reports of every tested table, rendered
with Evidently's own widgets and page template, after a summary of the verdict.

This module is the stage: it reads the windows' rows and writes the outputs. The parts:
``drift_config`` (settings), ``windows``, ``tables`` (what each family compares), ``compare``
(Evidently on one table), ``detect`` (families and the report), ``report`` (the result types
and the verdict), ``html``.

Hand-written here: only the window selection, the per-user engagement rate and the tally of
Evidently's per-column verdicts into the family verdicts; every statistical test is Evidently's.
"""

from __future__ import annotations

import argparse
import logging
import sys
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
from components.core.io import atomic_write_text
from components.core.verdict import Verdict, write_verdict
from components.monitoring.detect import detect_drift
from components.monitoring.drift_config import (
    EVENT_TS,
    FEATURE_TS,
    SCORE_COLUMNS,
    DriftConfig,
    EmptyWindowError,
)
from components.monitoring.html import render_html
from components.monitoring.report import DriftReport
from components.monitoring.windows import Windows, default_end, utc

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class DriftOutputs:
    """What :func:`run` wrote: the verdict (``metrics_path``), the report it summarises and the
    HTML page (``report_path``)."""

    verdict: Verdict
    report: DriftReport
    metrics_path: Path
    report_path: Path
    seconds: float


# --------------------------------------------------------------------------- I/O


def _read_between(
    path: Path,
    ts_column: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Rows of a Parquet file with ``start <= ts <= end`` (the windows then cut precisely).

    The filter is pushed down to Parquet when the column is a UTC timestamp; other encodings
    (naive, strings) are read whole and filtered as UTC."""
    cols = list(columns) if columns else None
    try:
        return pd.read_parquet(
            path, columns=cols, filters=[(ts_column, ">=", start), (ts_column, "<=", end)]
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        frame = pd.read_parquet(path, columns=cols)
        ts = pd.to_datetime(frame[ts_column], utc=True)
        return frame.loc[(ts >= start) & (ts <= end)].reset_index(drop=True)


def newest_event_time(paths: DataPaths) -> pd.Timestamp:
    """The newest event timestamp of ``data/interim/events.parquet`` (for the default ``end``)."""
    ts = pd.read_parquet(paths.of("interim_events"), columns=[EVENT_TS])[EVENT_TS]
    if ts.empty:
        raise EmptyWindowError("no events: cannot derive a default end")
    return utc(ts.max())


def read_score_log(path: Path, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame | None:
    """Scores between ``start`` and ``end`` from a Parquet file or every Parquet file below a
    folder; ``None`` when there is no log. Naive timestamps are read as UTC."""
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    else:
        return None
    if not files:
        return None
    frames = []
    for f in files:
        df = pd.read_parquet(f, columns=list(SCORE_COLUMNS))
        df[EVENT_TS] = pd.to_datetime(df[EVENT_TS], utc=True)
        frames.append(df.loc[(df[EVENT_TS] >= start) & (df[EVENT_TS] <= end)])
    return pd.concat(frames, ignore_index=True)


def _numeric_arrow(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _feature_frames(
    paths: DataPaths, cfg: DriftConfig, windows: Windows
) -> dict[str, pd.DataFrame]:
    """The windows' rows of each feature table, numeric columns only (and the timestamp)."""
    start, end = windows.span
    out: dict[str, pd.DataFrame] = {}
    for name in cfg.feature_tables:
        path = paths.features / f"{name}.parquet"
        if not path.is_file():
            log.warning("feature table %s not found", path)
            continue
        keep = [
            f.name for f in pq.read_schema(path) if f.name == FEATURE_TS or _numeric_arrow(f.type)
        ]
        out[name] = _read_between(path, FEATURE_TS, start, end, keep)
    return out


def run(
    params: Mapping[str, Any],
    paths: DataPaths | None = None,
    end: Any | None = None,
    reference_start: Any | None = None,
    reference_end: Any | None = None,
) -> DriftOutputs:
    """Read the windows' feature snapshots, events and scores, run :func:`detect_drift`, write
    ``metrics/drift.json`` and ``reports/drift.html`` (each atomically).

    ``end`` defaults to the end of the UTC day of the newest event (from the data, not the clock).
    """
    t0 = time.perf_counter()
    paths = paths or DataPaths()
    cfg = DriftConfig.from_params(params)
    events_path = paths.of("interim_events")
    if end is None:
        if not events_path.is_file():
            raise FileNotFoundError(
                f"{events_path} not found: give --end or run `dvc repro preprocess`"
            )
        end = default_end(newest_event_time(paths))
    windows = Windows.ending_at(
        end, cfg.current_days, cfg.reference_days, reference_start, reference_end
    )
    start, stop = windows.span

    features = _feature_frames(paths, cfg, windows)
    events: pd.DataFrame | None = None
    if events_path.is_file():
        cols = [
            c
            for c in ("user_id", "event_type", EVENT_TS, "watch_ratio")
            if c in pq.read_schema(events_path).names
        ]
        events = _read_between(events_path, EVENT_TS, start, stop, cols)
    else:
        log.warning("%s not found: target family skipped", events_path)
    score_path = Path(cfg.score_log)
    score_path = score_path if score_path.is_absolute() else paths.root / score_path
    scores = read_score_log(score_path, start, stop)
    result = detect_drift(
        features,
        events,
        scores,
        windows,
        cfg,
        score_log_note=f"no score log at {cfg.score_log}" if scores is None else "",
        events_note=f"{events_path} not found",
        feature_note=f"feature table not found ({paths.features}/{{name}}.parquet)",
    )
    metrics_path = paths.of("metrics_drift")
    report_path = paths.of("report_drift")
    atomic_write_text(report_path, render_html(result))
    verdict = result.report.verdict
    write_verdict(metrics_path, verdict)
    seconds = time.perf_counter() - t0
    log.info("drift verdict: %s (%.1f s)", verdict.reason, seconds)
    return DriftOutputs(verdict, result.report, metrics_path, report_path, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument(
        "--end",
        default=None,
        help="end of the current window, ISO 8601 (default: end of the newest event's UTC day)",
    )
    parser.add_argument(
        "--reference-start", default=None, help="explicit reference window start, ISO 8601"
    )
    parser.add_argument(
        "--reference-end", default=None, help="explicit reference window end, ISO 8601"
    )
    args: argparse.Namespace = parser.parse_args(argv)
    if (args.reference_start is None) != (args.reference_end is None):
        parser.error("give both --reference-start and --reference-end, or neither")
    params, paths = stage_context(args)
    try:
        out = run(
            params,
            paths,
            end=args.end,
            reference_start=args.reference_start,
            reference_end=args.reference_end,
        )
    except EmptyWindowError as exc:
        print(f"drift: error: {exc}", file=sys.stderr)
        return 2
    v = out.report
    flag = (
        "DRIFT"
        if v.drift_detected
        else "INCONCLUSIVE"
        if v.inconclusive
        else "no drift"
        if out.verdict.passed
        else "INCOMPLETE"
    )
    print(
        f"drift: {flag} (retrain_requested={v.retrain_requested}) {v.reason} "
        f"-> {out.metrics_path}, {out.report_path} in {out.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
