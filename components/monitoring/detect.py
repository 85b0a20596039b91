"""Drift families from the compared tables, and the whole check: frames in, report out.

Hand-written here: only the tally of Evidently's per-column verdicts into families (its own
``DriftedColumnsCount`` share rule, over all the family's tables) and the overall reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from components.monitoring.compare import compare_table
from components.monitoring.drift_config import DriftConfig, EmptyWindowError
from components.monitoring.report import (
    DriftReport,
    DriftResult,
    DriftTable,
    FamilyDrift,
    TableDrift,
)
from components.monitoring.tables import engagement_tables, feature_table, score_table
from components.monitoring.windows import Windows

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

log = logging.getLogger(__name__)


def family_drift(
    family: str,
    tables: Sequence[TableDrift],
    cfg: DriftConfig,
    info: Mapping[str, Any] | None = None,
    skip_reason: str | None = None,
) -> FamilyDrift:
    """Evidently's share rule over the family's tested columns: drift when the share of drifted
    columns reaches ``drift_share``. Skipped (with the reasons) when no table could be tested."""
    info = dict(info or {})
    tested = [t for t in tables if not t.skipped]
    if skip_reason is not None or not tested:
        reason = skip_reason or "; ".join(f"{t.table}: {t.reason}" for t in tables) or "no table"
        return FamilyDrift(family, True, reason, cfg.drift_share, None, False, tuple(tables), info)
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
    return FamilyDrift(family, False, reason, cfg.drift_share, share, drifted, tuple(tables), info)


def _overall_reason(
    families: Sequence[FamilyDrift], cfg: DriftConfig
) -> tuple[bool, bool, bool, str]:
    drifted = [f.family for f in families if f.drifted]
    retrain = [f for f in drifted if f in cfg.retrain_on]
    inconclusive = all(f.skipped for f in families)
    untested = [f.family for f in families if f.skipped and f.family in cfg.retrain_on]
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
    elif untested:
        head = f"Incomplete, no drift found but {', '.join(untested)} could not be tested"
    else:
        head = "No drift"
    return bool(drifted), bool(retrain), inconclusive, f"{head} — {parts}."


def _tables(
    features: Mapping[str, pd.DataFrame],
    events: pd.DataFrame | None,
    scores: pd.DataFrame | None,
    windows: Windows,
    cfg: DriftConfig,
    feature_note: str,
) -> tuple[dict[str, list[DriftTable]], list[TableDrift], dict[str, Any]]:
    """Each family's tables to compare, the feature tables that are absent (as skipped
    results, with ``feature_note`` saying where they were looked for) and the score log's info."""
    tables: dict[str, list[DriftTable]] = {"feature": [], "target": [], "prediction": []}
    absent: list[TableDrift] = []
    for name in cfg.feature_tables:
        if name in features:
            tables["feature"].append(feature_table(name, features[name], windows, cfg))
        else:
            absent.append(TableDrift(name, 0, 0, True, feature_note.format(name=name)))
    if events is not None:
        tables["target"] = engagement_tables(events, windows, cfg)
    score_info: dict[str, Any] = {}
    if scores is not None:
        table, score_info = score_table(scores, windows)
        tables["prediction"].append(table)
    return tables, absent, score_info


def _compare_all(
    family: str,
    tables: Sequence[DriftTable],
    cfg: DriftConfig,
    stamp: pd.Timestamp,
    snapshots: list[tuple[str, str, Snapshot]],
) -> list[TableDrift]:
    """Compare each table of a family; Evidently's snapshots are appended to ``snapshots``."""
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


def detect_drift(
    features: Mapping[str, pd.DataFrame] | None,
    events: pd.DataFrame | None,
    scores: pd.DataFrame | None,
    windows: Windows,
    cfg: DriftConfig,
    score_log_note: str = "no score log",
    events_note: str = "no events",
    feature_note: str = "feature table not found",
) -> DriftResult:
    """Compare the current window with the reference window for every family (pure: frames in,
    report and Evidently snapshots out).

    ``features`` maps a feature table's name to its snapshot rows; ``None`` or a missing name
    skips that table (``feature_note``, formatted with ``name``, is its reason). ``events`` /
    ``scores`` ``None`` skip the target / prediction family (``events_note`` / ``score_log_note``
    the reason). Raises :class:`EmptyWindowError` when the current window holds no row of any
    input."""
    import evidently

    if windows.overlap():
        log.warning("reference window overlaps the current window: %s", windows.to_dict())
    tables, absent, score_info = _tables(
        dict(features or {}), events, scores, windows, cfg, feature_note
    )
    if sum(len(t.current) for ts in tables.values() for t in ts) == 0:
        raise EmptyWindowError(
            f"no feature row, event or score in the current window "
            f"[{windows.current_start.isoformat()}, {windows.current_end.isoformat()})"
        )
    snapshots: list[tuple[str, str, Snapshot]] = []
    stamp = windows.current_end
    families = [
        family_drift(
            "feature",
            _compare_all("feature", tables["feature"], cfg, stamp, snapshots) + absent,
            cfg,
        ),
        family_drift(
            "target",
            _compare_all("target", tables["target"], cfg, stamp, snapshots),
            cfg,
            skip_reason=None if events is not None else events_note,
        ),
        family_drift(
            "prediction",
            _compare_all("prediction", tables["prediction"], cfg, stamp, snapshots),
            cfg,
            info=score_info,
            skip_reason=None if scores is not None else score_log_note,
        ),
    ]
    drift_detected, retrain, inconclusive, reason = _overall_reason(families, cfg)
    report = DriftReport(
        drift_detected=drift_detected,
        retrain_requested=retrain,
        inconclusive=inconclusive,
        reason=reason,
        windows=windows,
        families=tuple(families),
        settings=cfg.settings(),
        evidently_version=str(evidently.__version__),
    )
    return DriftResult(report, tuple(snapshots))
