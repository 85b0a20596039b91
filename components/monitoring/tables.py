"""The tables a drift family compares: feature snapshots, engagement, scores."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from components.monitoring.drift_config import EVENT_TS, FEATURE_TS, SCORE_COLUMNS, DriftConfig
from components.monitoring.report import DriftTable
from components.monitoring.windows import Windows, split_windows


def _excluded(column: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(column, p) for p in patterns)


def numeric_feature_columns(
    frame: pd.DataFrame, exclude: Sequence[str], max_columns: int, seed: int
) -> tuple[list[str], dict[str, str]]:
    """Numeric feature columns to test (in table order) and the numeric ones left out, with why.

    Non-numeric columns (ids, timestamps, lists, embeddings) are never candidates; at most
    ``max_columns`` (0 = all), a sample drawn with ``seed`` when there are more."""
    skipped: dict[str, str] = {}
    eligible: list[str] = []
    for col in frame.columns:
        if col == FEATURE_TS or not pd.api.types.is_numeric_dtype(frame[col].dtype):
            continue
        if _excluded(col, exclude):
            skipped[col] = "excluded by drift.exclude_columns"
        else:
            eligible.append(col)
    if max_columns and len(eligible) > max_columns:
        rng = np.random.default_rng(seed)
        keep = set(rng.choice(len(eligible), size=max_columns, replace=False).tolist())
        for i, col in enumerate(eligible):
            if i not in keep:
                skipped[col] = f"not sampled (drift.max_columns={max_columns})"
        eligible = [c for i, c in enumerate(eligible) if i in keep]
    return eligible, skipped


def feature_table(name: str, frame: pd.DataFrame, windows: Windows, cfg: DriftConfig) -> DriftTable:
    """A feature snapshot table split into the two windows, with its numeric columns."""
    if FEATURE_TS not in frame.columns:
        raise ValueError(f"feature table {name!r} has no {FEATURE_TS!r} column")
    columns, skipped = numeric_feature_columns(
        frame, cfg.exclude_columns, cfg.max_columns, cfg.seed
    )
    ref, cur = split_windows(frame, FEATURE_TS, windows, snapshot=True)
    return DriftTable(name, ref, cur, numerical=tuple(columns), skipped_columns=skipped)


def engagement_tables(events: pd.DataFrame, windows: Windows, cfg: DriftConfig) -> list[DriftTable]:
    """The target family's tables: the event-type mix (one row per event), the watch ratio (one
    row per event that has one: the views) and the engagement rate of each active user.

    The rate is counted per user and per ``current_days`` period (the reference window is cut
    into such periods from its start), so both windows hold rates over spans of the same length:
    a rate over 7 days is smoother than one over 1 day, which alone would read as drift."""
    missing = {"user_id", "event_type", EVENT_TS} - set(events.columns)
    if missing:
        raise ValueError(f"events lack columns {sorted(missing)}")
    ev = events.loc[~events["event_type"].isin(cfg.ignore_event_types)]
    ref, cur = split_windows(ev, EVENT_TS, windows)
    tables = [
        DriftTable(
            "event_types",
            ref[["event_type"]].astype({"event_type": str}),
            cur[["event_type"]].astype({"event_type": str}),
            categorical=("event_type",),
        )
    ]
    if "watch_ratio" in ev.columns:

        def views(w: pd.DataFrame) -> pd.DataFrame:
            v = pd.to_numeric(w["watch_ratio"], errors="coerce").astype(float)
            return pd.DataFrame({"watch_ratio": v[np.isfinite(v)].to_numpy()})

        tables.append(DriftTable("views", views(ref), views(cur), numerical=("watch_ratio",)))

    period = pd.Timedelta(days=cfg.current_days)

    def users(w: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
        bucket = (pd.to_datetime(w[EVENT_TS], utc=True) - start) // period
        engaged = w["event_type"].isin(cfg.engagement_types)
        rate = engaged.groupby([w["user_id"], bucket], sort=True).mean()
        return pd.DataFrame({"engagement_rate": rate.to_numpy(dtype=float)})

    tables.append(
        DriftTable(
            "users",
            users(ref, windows.reference_start),
            users(cur, windows.current_start),
            numerical=("engagement_rate",),
        )
    )
    return tables


def score_table(scores: pd.DataFrame, windows: Windows) -> tuple[DriftTable, dict[str, Any]]:
    """The prediction family's table (the ``score`` column) and the model versions seen."""
    missing = set(SCORE_COLUMNS) - set(scores.columns)
    if missing:
        raise ValueError(f"score log lacks columns {sorted(missing)}")
    s = scores.loc[np.isfinite(pd.to_numeric(scores["score"], errors="coerce"))]
    ref, cur = split_windows(s, EVENT_TS, windows)
    info = {
        "model_versions": {
            "reference": sorted(map(str, ref["model_version"].dropna().unique())),
            "current": sorted(map(str, cur["model_version"].dropna().unique())),
        }
    }
    table = DriftTable(
        "scores",
        ref[["score"]].astype(float),
        cur[["score"]].astype(float),
        numerical=("score",),
    )
    return table, info
