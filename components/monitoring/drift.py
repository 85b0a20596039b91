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

The verdict (:class:`DriftVerdict`) is written to ``metrics/drift.json``; ``passed`` is
``not drift_detected``, ``retrain_requested`` is drift in a family of ``drift.retrain_on``.
When every family is skipped the verdict is ``inconclusive`` (and says so in ``reason``).
A current window without any data at all (no feature row, event or score) is an error
(:class:`EmptyWindowError`, exit code 2 in the CLI), not a verdict: there is nothing to
judge, and a pass would be silent.

One HTML page (``reports/drift.html``) holds Evidently's reports of every tested table, rendered
with Evidently's own widgets and page template, after a summary of the verdict.

Hand-written here: only the window selection, the per-user engagement rate and the tally of
Evidently's per-column verdicts into the family verdicts; every statistical test is Evidently's.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.config import stage_context, stage_parser
from components.core.io import atomic_write_text
from components.core.paths import DataPaths
from components.core.schema import POSITIVE_TYPES, SUPPLY_TYPES

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

log = logging.getLogger(__name__)

FAMILIES = ("feature", "target", "prediction")
FEATURE_TS = "event_timestamp"
EVENT_TS = "timestamp"
SCORE_COLUMNS = ("timestamp", "model_version", "score")
EVENTS_FILE = "events.parquet"
MISSING = "<missing>"  # categorical value standing for a missing one
METRICS_FILE = "drift.json"
REPORT_FILE = "drift.html"

# Evidently stattests whose score is a p-value (drift when below the threshold); the others
# registered by Evidently are distances / divergences (drift when at or above it).
P_VALUE_STATTESTS = frozenset(
    {
        "K-S p_value",
        "chi-square p_value",
        "Z-test p_value",
        "Anderson-Darling",
        "Cramer-von Mises",
        "Epps-Singleton",
        "Fisher's Exact test",
        "g_test",
        "Mann-Whitney U-rank test",
        "empirical_mmd",
        "t_test",
        "Total-Variation-Distance",
    }
)
DISTANCE_STATTESTS = frozenset(
    {
        "Wasserstein distance (normed)",
        "Jensen-Shannon distance",
        "Hellinger distance",
        "Kullback-Leibler divergence",
        "PSI",
        "Energy-distance",
    }
)


class EmptyWindowError(ValueError):
    """The current window holds no data at all: no verdict can be given."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DriftConfig:
    """The ``drift`` section of params.yaml (plus ``base.seed``)."""

    current_days: float = 1.0
    reference_days: float = 7.0
    drift_share: float = 0.3
    num_stattest: str | None = None
    cat_stattest: str | None = None
    stattest_threshold: float | None = None
    min_rows: int = 200
    max_rows: int = 20000
    max_columns: int = 100
    feature_tables: tuple[str, ...] = ("user_features", "content_features")
    exclude_columns: tuple[str, ...] = ("*_id", "*_idx", "*_ts_s", "*timestamp*")
    engagement_types: tuple[str, ...] = POSITIVE_TYPES
    ignore_event_types: tuple[str, ...] = SUPPLY_TYPES
    score_log: str = "data/logs/scores"
    retrain_on: tuple[str, ...] = ("feature", "target")
    seed: int = 42

    def __post_init__(self) -> None:
        if self.current_days <= 0 or self.reference_days <= 0:
            raise ValueError("drift.current_days and drift.reference_days must be > 0")
        if not 0.0 < self.drift_share <= 1.0:
            raise ValueError(f"drift.drift_share must be in (0, 1], got {self.drift_share}")
        if self.min_rows < 1 or self.max_rows < self.min_rows:
            raise ValueError("drift: need 1 <= min_rows <= max_rows")
        if self.max_columns < 0:
            raise ValueError("drift.max_columns must be >= 0 (0 = every column)")
        unknown = set(self.retrain_on) - set(FAMILIES)
        if unknown:
            raise ValueError(
                f"drift.retrain_on: unknown families {sorted(unknown)}; expected {FAMILIES}"
            )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DriftConfig:
        """Build from the whole params mapping (``drift`` section, ``base.seed``)."""
        section = dict(params.get("drift") or {})
        known = {f for f in cls.__dataclass_fields__ if f != "seed"}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"drift: unknown keys {sorted(unknown)}")
        for key in (
            "feature_tables",
            "exclude_columns",
            "engagement_types",
            "ignore_event_types",
            "retrain_on",
        ):
            if key in section:
                section[key] = tuple(section[key] or ())
        return cls(seed=int(params["base"]["seed"]), **section)

    def settings(self) -> dict[str, Any]:
        """The configuration as a JSON-friendly mapping (recorded in the verdict)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --------------------------------------------------------------------------- windows


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


# --------------------------------------------------------------------------- verdict types


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's test of one column: its stattest, score and whether it flagged drift."""

    table: str
    column: str
    column_type: str  # numerical | categorical
    stattest: (
        str  # Evidently's name of the test, e.g. "K-S p_value", "Wasserstein distance (normed)"
    )
    score_kind: str  # p_value (drift when below threshold) | distance (at or above) | unknown
    score: float | None
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class TableDrift:
    """One table of a family (one Evidently report), or why it was skipped."""

    table: str
    reference_rows: int
    current_rows: int
    skipped: bool
    reason: str
    columns: tuple[ColumnDrift, ...] = ()
    skipped_columns: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilyVerdict:
    """A drift family: its tested columns, the drifted ones and the share rule's outcome."""

    family: str
    skipped: bool
    reason: str
    threshold: float
    share_drifted: float | None
    drifted: bool
    tables: tuple[TableDrift, ...]
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def columns_tested(self) -> list[str]:
        return [f"{c.table}.{c.column}" for t in self.tables for c in t.columns]

    @property
    def drifted_columns(self) -> list[ColumnDrift]:
        return [c for t in self.tables for c in t.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "skipped": self.skipped,
            "reason": self.reason,
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "threshold": self.threshold,
            "n_columns": len(self.columns_tested),
            "n_drifted": len(self.drifted_columns),
            "columns_tested": self.columns_tested,
            "drifted_columns": [asdict(c) for c in self.drifted_columns],
            "tables": [
                {
                    "table": t.table,
                    "reference_rows": t.reference_rows,
                    "current_rows": t.current_rows,
                    "skipped": t.skipped,
                    "reason": t.reason,
                    "columns": [asdict(c) for c in t.columns],
                    "skipped_columns": dict(t.skipped_columns),
                }
                for t in self.tables
            ],
            "info": dict(self.info),
        }


@dataclass(frozen=True)
class DriftVerdict:
    """The gate's output: per-family verdicts, the overall decision and one-sentence reason."""

    passed: bool
    drift_detected: bool
    retrain_requested: bool
    inconclusive: bool
    reason: str
    windows: Windows
    families: tuple[FamilyVerdict, ...]
    settings: Mapping[str, Any]
    evidently_version: str

    def family(self, name: str) -> FamilyVerdict:
        for f in self.families:
            if f.family == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "drift_detected": self.drift_detected,
            "retrain_requested": self.retrain_requested,
            "inconclusive": self.inconclusive,
            "reason": self.reason,
            "windows": self.windows.to_dict(),
            "families": {f.family: f.to_dict() for f in self.families},
            "settings": dict(self.settings),
            "evidently_version": self.evidently_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"


@dataclass(frozen=True)
class DriftResult:
    """The verdict and the Evidently snapshots it was read from, as ``(family, table, snapshot)``."""

    verdict: DriftVerdict
    snapshots: tuple[tuple[str, str, Snapshot], ...]


@dataclass(frozen=True)
class DriftOutputs:
    verdict: DriftVerdict
    metrics_path: Path
    report_path: Path
    seconds: float


@dataclass(frozen=True)
class DriftTable:
    """One table to compare: its windows' rows and the columns to test, by Evidently type."""

    name: str
    reference: pd.DataFrame
    current: pd.DataFrame
    numerical: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    skipped_columns: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- table building


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


# --------------------------------------------------------------------------- Evidently


def _cap_rows(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)


def _score_kind(stattest: str) -> str:
    if stattest in P_VALUE_STATTESTS:
        return "p_value"
    if stattest in DISTANCE_STATTESTS:
        return "distance"
    return "unknown"


def _stattest_display_name(method: str, numerical: bool) -> str:
    """Evidently's display name of a stattest given by its registered name (``ks`` -> ``K-S
    p_value``), so a verdict names tests alike whether Evidently chose them or params did."""
    from evidently import ColumnType
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest

    try:
        kind = ColumnType.Numerical if numerical else ColumnType.Categorical
        return str(get_registered_stattest(method, kind).display_name)
    except (ValueError, KeyError):
        return method


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def compare_table(
    table: DriftTable, cfg: DriftConfig, timestamp: pd.Timestamp
) -> tuple[TableDrift, Snapshot | None]:
    """Run Evidently's ``DataDriftPreset`` on one table; read its per-column verdicts back."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    n_ref, n_cur = len(table.reference), len(table.current)
    if n_ref < cfg.min_rows or n_cur < cfg.min_rows:
        reason = f"too few rows ({n_ref} reference, {n_cur} current; drift.min_rows={cfg.min_rows})"
        return TableDrift(
            table.name, n_ref, n_cur, True, reason, (), dict(table.skipped_columns)
        ), None
    ref = _cap_rows(table.reference, cfg.max_rows, cfg.seed)
    cur = _cap_rows(table.current, cfg.max_rows, cfg.seed)

    def prepared(frame: pd.DataFrame, col: str, numerical: bool) -> pd.Series:
        if numerical:
            x = pd.to_numeric(frame[col], errors="coerce").astype(float)
            return x.replace([np.inf, -np.inf], np.nan)
        return frame[col].astype(object).where(frame[col].notna(), MISSING).astype(str)

    skipped = dict(table.skipped_columns)
    ref_cols: dict[str, pd.Series] = {}
    cur_cols: dict[str, pd.Series] = {}
    numerical: list[str] = []
    categorical: list[str] = []
    typed = [(c, True) for c in table.numerical] + [(c, False) for c in table.categorical]
    for col, is_num in typed:
        r, c = prepared(ref, col, is_num), prepared(cur, col, is_num)
        if r.notna().sum() == 0 or c.notna().sum() == 0:
            skipped[col] = "no values in one window"
        elif pd.concat([r, c]).nunique(dropna=True) <= 1:
            skipped[col] = "constant in both windows"
        else:
            ref_cols[col], cur_cols[col] = r, c
            (numerical if is_num else categorical).append(col)
    if not numerical and not categorical:
        return TableDrift(table.name, n_ref, n_cur, True, "no testable column", (), skipped), None

    cols = numerical + categorical
    ref_df, cur_df = pd.DataFrame(ref_cols)[cols], pd.DataFrame(cur_cols)[cols]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=cols,
        drift_share=cfg.drift_share,
        num_method=cfg.num_stattest,
        cat_method=cfg.cat_stattest,
        threshold=cfg.stattest_threshold,
    )
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(cur_df, data_definition=definition),
        Dataset.from_pandas(ref_df, data_definition=definition),
        timestamp=timestamp.tz_convert("UTC").tz_localize(None).to_pydatetime(),
        name=f"drift {table.name}",
    )
    results = snapshot.dict()
    status = {
        t["metric_config"]["metric_id"]: t["status"]
        for t in results["tests"]
        if t.get("metric_config", {}).get("params", {}).get("type", "").endswith(":ValueDrift")
    }
    by_column: dict[str, ColumnDrift] = {}
    for m in results["metrics"]:
        config = m.get("config", {})
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        col = config["column"]
        if m["id"] not in status:
            raise RuntimeError(f"Evidently returned no drift test for column {col!r}")
        if status[m["id"]] not in ("FAIL", "SUCCESS"):
            raise RuntimeError(f"Evidently's drift test of {col!r} ended with {status[m['id']]}")
        stattest = _stattest_display_name(str(config.get("method")), col in numerical)
        by_column[col] = ColumnDrift(
            table=table.name,
            column=col,
            column_type="numerical" if col in numerical else "categorical",
            stattest=stattest,
            score_kind=_score_kind(stattest),
            score=_finite(m.get("value")),
            threshold=float(config["threshold"]),
            drifted=status[m["id"]] == "FAIL",
        )
    missing = [c for c in cols if c not in by_column]
    if missing:
        raise RuntimeError(f"Evidently returned no drift value for {missing}")
    columns = tuple(by_column[c] for c in cols)
    n_drift = sum(c.drifted for c in columns)
    reason = f"{n_drift}/{len(columns)} columns drifted"
    return TableDrift(table.name, n_ref, n_cur, False, reason, columns, skipped), snapshot


def family_verdict(
    family: str,
    tables: Sequence[TableDrift],
    cfg: DriftConfig,
    info: Mapping[str, Any] | None = None,
    skip_reason: str | None = None,
) -> FamilyVerdict:
    """Evidently's share rule over the family's tested columns: drift when the share of drifted
    columns reaches ``drift_share``. Skipped (with the reasons) when no table could be tested."""
    info = dict(info or {})
    tested = [t for t in tables if not t.skipped]
    if skip_reason is not None or not tested:
        reason = skip_reason or "; ".join(f"{t.table}: {t.reason}" for t in tables) or "no table"
        return FamilyVerdict(
            family, True, reason, cfg.drift_share, None, False, tuple(tables), info
        )
    n_cols = sum(len(t.columns) for t in tested)
    n_drift = sum(c.drifted for t in tested for c in t.columns)
    share = n_drift / n_cols
    drifted = share >= cfg.drift_share
    names = [f"{c.table}.{c.column}" for t in tested for c in t.columns if c.drifted]
    reason = (
        f"{n_drift}/{n_cols} columns drifted (share {share:.2f} {'>=' if drifted else '<'} "
        f"{cfg.drift_share:.2f})"
    )
    if names:
        shown = ", ".join(names[:5]) + (f", +{len(names) - 5} more" if len(names) > 5 else "")
        reason += f": {shown}"
    not_tested = [f"{t.table} skipped ({t.reason})" for t in tables if t.skipped]
    if not_tested:
        reason += "; " + "; ".join(not_tested)
    return FamilyVerdict(
        family, False, reason, cfg.drift_share, share, drifted, tuple(tables), info
    )


def _overall_reason(
    families: Sequence[FamilyVerdict], cfg: DriftConfig
) -> tuple[bool, bool, bool, str]:
    drifted = [f.family for f in families if f.drifted]
    retrain = [f for f in drifted if f in cfg.retrain_on]
    inconclusive = all(f.skipped for f in families)
    parts = "; ".join(
        f"{f.family} skipped ({f.reason})" if f.skipped else f"{f.family}: {f.reason}"
        for f in families
    )
    if inconclusive:
        head = "Inconclusive, no drift family could be tested"
    elif retrain:
        head = f"Drift detected in {', '.join(drifted)}; retraining requested"
    elif drifted:
        head = (
            f"Drift detected in {', '.join(drifted)} only; no retraining "
            f"(drift.retrain_on = {', '.join(cfg.retrain_on) or 'none'})"
        )
    else:
        head = "No drift"
    return bool(drifted), bool(retrain), inconclusive, f"{head} — {parts}."


def detect_drift(
    features: Mapping[str, pd.DataFrame] | None,
    events: pd.DataFrame | None,
    scores: pd.DataFrame | None,
    windows: Windows,
    cfg: DriftConfig,
    score_log_note: str = "no score log",
) -> DriftResult:
    """Compare the current window with the reference window for every family (pure: frames in,
    verdict and Evidently snapshots out).

    ``features`` maps a feature table's name to its snapshot rows; ``None`` or a missing name
    skips that table. ``events`` / ``scores`` ``None`` skip the target / prediction family (with
    ``score_log_note`` as the reason for the latter). Raises :class:`EmptyWindowError` when the
    current window holds no row of any input."""
    import evidently

    features = dict(features or {})
    if windows.overlap():
        log.warning("reference window overlaps the current window: %s", windows.to_dict())
    stamp = windows.current_end
    snapshots: list[tuple[str, str, Snapshot]] = []

    feature_tables: list[DriftTable] = []
    absent: list[TableDrift] = []
    for name in cfg.feature_tables:
        if name in features:
            feature_tables.append(feature_table(name, features[name], windows, cfg))
        else:
            absent.append(TableDrift(name, 0, 0, True, "feature table not found"))
    target_tables = engagement_tables(events, windows, cfg) if events is not None else []
    score_info: dict[str, Any] = {}
    prediction_tables: list[DriftTable] = []
    if scores is not None:
        table, score_info = score_table(scores, windows)
        prediction_tables.append(table)

    current_rows = sum(len(t.current) for t in feature_tables + target_tables + prediction_tables)
    if current_rows == 0:
        raise EmptyWindowError(
            f"no feature row, event or score in the current window "
            f"[{windows.current_start.isoformat()}, {windows.current_end.isoformat()})"
        )

    def run_family(family: str, tables: Sequence[DriftTable]) -> list[TableDrift]:
        out = []
        for t in tables:
            t0 = time.perf_counter()
            result, snapshot = compare_table(t, cfg, stamp)
            log.info(
                "drift %s/%s: %s (%d reference, %d current rows) in %.1f s",
                family,
                t.name,
                result.reason,
                result.reference_rows,
                result.current_rows,
                time.perf_counter() - t0,
            )
            out.append(result)
            if snapshot is not None:
                snapshots.append((family, t.name, snapshot))
        return out

    families = [
        family_verdict("feature", run_family("feature", feature_tables) + absent, cfg),
        family_verdict(
            "target",
            run_family("target", target_tables),
            cfg,
            skip_reason=None if events is not None else "no events",
        ),
        family_verdict(
            "prediction",
            run_family("prediction", prediction_tables),
            cfg,
            info=score_info,
            skip_reason=None if scores is not None else score_log_note,
        ),
    ]
    drift_detected, retrain, inconclusive, reason = _overall_reason(families, cfg)
    verdict = DriftVerdict(
        passed=not drift_detected,
        drift_detected=drift_detected,
        retrain_requested=retrain,
        inconclusive=inconclusive,
        reason=reason,
        windows=windows,
        families=tuple(families),
        settings=cfg.settings(),
        evidently_version=str(evidently.__version__),
    )
    return DriftResult(verdict, tuple(snapshots))


# --------------------------------------------------------------------------- HTML


def render_html(result: DriftResult) -> str:
    """One standalone page: a summary of the verdict, then Evidently's report of every tested
    table (its widgets and test results), rendered with Evidently's page template."""
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import (
        CounterData,
        counter,
        group_widget,
        text_widget,
    )

    v = result.verdict
    w = v.windows
    lines = [
        f"**{v.reason}**",
        "",
        f"Current window: {w.current_start.isoformat()} to {w.current_end.isoformat()}; "
        f"reference window: {w.reference_start.isoformat()} to {w.reference_end.isoformat()}"
        + (" (given)" if w.reference_given else "")
        + ".",
        "",
        "| family | status | columns drifted | share | threshold |",
        "|---|---|---|---|---|",
    ]
    for f in v.families:
        status = "skipped" if f.skipped else ("DRIFT" if f.drifted else "no drift")
        share = "" if f.share_drifted is None else f"{f.share_drifted:.2f}"
        lines.append(
            f"| {f.family} | {status} | {len(f.drifted_columns)}/{len(f.columns_tested)} | "
            f"{share} | {f.threshold:.2f} |"
        )
    widgets = [
        counter(
            title="Drift verdict",
            counters=[
                CounterData("drift detected", str(v.drift_detected)),
                CounterData("retrain requested", str(v.retrain_requested)),
                CounterData("passed", str(v.passed)),
            ],
        ),
        text_widget(title="Summary", text="\n".join(lines)),
    ]
    for f in v.families:
        if f.skipped:
            widgets.append(text_widget(title=f"{f.family} drift: skipped", text=f.reason))
    for family, table, snapshot in result.snapshots:
        model = snapshot.to_snapshot_model()
        fv = v.family(family)
        td = next(t for t in fv.tables if t.table == table)
        title = (
            f"{family} drift: {table} ({td.reference_rows} reference rows, "
            f"{td.current_rows} current rows; {td.reason})"
        )
        # laid out as Evidently's own page: the metrics' group, then its tests at the top level
        widgets.append(group_widget(title=title, widgets=list(model.widgets)))
        widgets.extend(model.tests_widgets)
    return str(render_widgets(widgets, as_iframe=False))


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
    ts = pd.read_parquet(paths.interim / EVENTS_FILE, columns=[EVENT_TS])[EVENT_TS]
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
    events_path = paths.interim / EVENTS_FILE
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
    note = f"no score log at {cfg.score_log}" if scores is None else ""

    result = detect_drift(features, events, scores, windows, cfg, score_log_note=note)
    metrics_path = paths.metrics / METRICS_FILE
    report_path = paths.reports / REPORT_FILE
    atomic_write_text(report_path, render_html(result))
    atomic_write_text(metrics_path, result.verdict.to_json())
    seconds = time.perf_counter() - t0
    log.info("drift verdict: %s (%.1f s)", result.verdict.reason, seconds)
    return DriftOutputs(result.verdict, metrics_path, report_path, seconds)


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
    v = out.verdict
    flag = "DRIFT" if v.drift_detected else ("INCONCLUSIVE" if v.inconclusive else "no drift")
    print(
        f"drift: {flag} (retrain_requested={v.retrain_requested}) {v.reason} "
        f"-> {out.metrics_path}, {out.report_path} in {out.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
