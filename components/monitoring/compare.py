"""Evidently's per-column drift tests on one table (``DataDriftPreset``), read back per column.

Every statistical test is Evidently's. A column whose drift score is not a finite number is
counted as drifted: a test that cannot say "no drift" does not pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from components.core.verdict import finite
from components.monitoring.drift_config import MISSING, DriftConfig
from components.monitoring.report import ColumnDrift, DriftTable, TableDrift

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

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


def _prepared(frame: pd.DataFrame, col: str, numerical: bool) -> pd.Series:
    if numerical:
        x = pd.to_numeric(frame[col], errors="coerce").astype(float)
        return x.replace([np.inf, -np.inf], np.nan)
    return frame[col].astype(object).where(frame[col].notna(), MISSING).astype(str)


def _testable(
    table: DriftTable, ref: pd.DataFrame, cur: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str], dict[str, str]]:
    """The columns Evidently can test (values in both windows, not constant), prepared, and the
    others with the reason they were left out."""
    skipped = dict(table.skipped_columns)
    ref_cols: dict[str, pd.Series] = {}
    cur_cols: dict[str, pd.Series] = {}
    numerical: list[str] = []
    categorical: list[str] = []
    typed = [(c, True) for c in table.numerical] + [(c, False) for c in table.categorical]
    for col, is_num in typed:
        r, c = _prepared(ref, col, is_num), _prepared(cur, col, is_num)
        if r.notna().sum() == 0 or c.notna().sum() == 0:
            skipped[col] = "no values in one window"
        elif pd.concat([r, c]).nunique(dropna=True) <= 1:
            skipped[col] = "constant in both windows"
        else:
            ref_cols[col], cur_cols[col] = r, c
            (numerical if is_num else categorical).append(col)
    cols = numerical + categorical
    return (
        pd.DataFrame(ref_cols)[cols],
        pd.DataFrame(cur_cols)[cols],
        numerical,
        categorical,
        skipped,
    )


def _run_preset(
    ref_df: pd.DataFrame,
    cur_df: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    cfg: DriftConfig,
    timestamp: pd.Timestamp,
    name: str,
) -> Snapshot:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=numerical + categorical,
        drift_share=cfg.drift_share,
        num_method=cfg.num_stattest,
        cat_method=cfg.cat_stattest,
        threshold=cfg.stattest_threshold,
    )
    return Report([preset], include_tests=True).run(
        Dataset.from_pandas(cur_df, data_definition=definition),
        Dataset.from_pandas(ref_df, data_definition=definition),
        timestamp=timestamp.tz_convert("UTC").tz_localize(None).to_pydatetime(),
        name=f"drift {name}",
    )


def _column_results(snapshot: Snapshot, table: str, numerical: list[str]) -> dict[str, ColumnDrift]:
    """Evidently's ``ValueDrift`` metric and test of each column, as :class:`ColumnDrift`."""
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
        score = finite(m.get("value"))
        # Evidently adds up a categorical column's shares in the order of a Python set of its
        # categories, which follows each process's string-hash seed: the same data gives scores
        # that differ in the 16th digit from run to run. 12 significant digits keep drift.json
        # byte-identical across runs (the pass / fail status is Evidently's, unrounded).
        score = None if score is None else float(f"{score:.12g}")
        by_column[col] = ColumnDrift(
            table=table,
            column=col,
            column_type="numerical" if col in numerical else "categorical",
            stattest=stattest,
            score_kind=_score_kind(stattest),
            score=score,
            threshold=float(config["threshold"]),
            drifted=status[m["id"]] == "FAIL" or score is None,
        )
    return by_column


def compare_table(
    table: DriftTable, cfg: DriftConfig, timestamp: pd.Timestamp
) -> tuple[TableDrift, Snapshot | None]:
    """Run Evidently's ``DataDriftPreset`` on one table; read its per-column verdicts back."""
    n_ref, n_cur = len(table.reference), len(table.current)
    if n_ref < cfg.min_rows or n_cur < cfg.min_rows:
        reason = f"too few rows ({n_ref} reference, {n_cur} current; drift.min_rows={cfg.min_rows})"
        return TableDrift(
            table.name, n_ref, n_cur, True, reason, (), dict(table.skipped_columns)
        ), None
    ref = _cap_rows(table.reference, cfg.max_rows, cfg.seed)
    cur = _cap_rows(table.current, cfg.max_rows, cfg.seed)
    ref_df, cur_df, numerical, categorical, skipped = _testable(table, ref, cur)
    if not numerical and not categorical:
        return TableDrift(table.name, n_ref, n_cur, True, "no testable column", (), skipped), None
    snapshot = _run_preset(ref_df, cur_df, numerical, categorical, cfg, timestamp, table.name)
    by_column = _column_results(snapshot, table.name, numerical)
    cols = numerical + categorical
    missing = [c for c in cols if c not in by_column]
    if missing:
        raise RuntimeError(f"Evidently returned no drift value for {missing}")
    columns = tuple(by_column[c] for c in cols)
    n_drift = sum(c.drifted for c in columns)
    reason = f"{n_drift}/{len(columns)} columns drifted"
    return TableDrift(table.name, n_ref, n_cur, False, reason, columns, skipped), snapshot
