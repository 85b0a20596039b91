"""What a drift check found: per column, per table, per family, and the whole report, which
gives the gate's :class:`~components.core.verdict.Verdict`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from components.core.verdict import NO_DRIFT, TESTED, Check, Verdict
from components.monitoring.windows import Windows

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

_HINTS = {
    "feature": "run `dvc repro features`, or check drift.min_rows and the windows",
    "target": "run `dvc repro preprocess`, or check drift.min_rows and the windows",
    "prediction": "run the shadow gate (`python -m components.deploy.promote shadow`) to log scores",
}


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
class FamilyDrift:
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
class DriftReport:
    """Per-family findings, the overall outcome and its one-sentence reason.

    :attr:`verdict` is the gate's :class:`Verdict`, written to ``metrics/drift.json``. Its checks,
    per family: ``<family>_tested`` (the evidence: failed when a family of ``drift.retrain_on`` was
    skipped, e.g. a missing table or too few rows) and, for a tested family, ``<family>_no_drift``
    (the finding). A family outside ``retrain_on`` that was skipped (the prediction family
    before any score log exists) is named in the reason but is not a check. Nothing tested at
    all is a failed ``any_family_tested`` check: an inconclusive report never passes.
    """

    drift_detected: bool
    retrain_requested: bool
    inconclusive: bool
    reason: str
    windows: Windows
    families: tuple[FamilyDrift, ...]
    settings: Mapping[str, Any]
    evidently_version: str

    def family(self, name: str) -> FamilyDrift:
        for f in self.families:
            if f.family == name:
                return f
        raise KeyError(name)

    @property
    def required(self) -> tuple[str, ...]:
        """The families that must be tested: ``drift.retrain_on``."""
        return tuple(self.settings.get("retrain_on") or ())

    def checks(self) -> tuple[Check, ...]:
        out: list[Check] = []
        for f in self.families:
            if f.skipped:
                if f.family in self.required:
                    out.append(
                        Check(
                            f"{f.family}{TESTED}",
                            False,
                            f"{f.family} drift not tested ({f.reason}): {_HINTS[f.family]}",
                        )
                    )
                continue
            out.append(
                Check(f"{f.family}{TESTED}", True, f"{len(f.columns_tested)} columns tested")
            )
            out.append(Check(f"{f.family}{NO_DRIFT}", not f.drifted, f"{f.family}: {f.reason}"))
        if self.inconclusive:
            out.append(
                Check(
                    "any_family_tested",
                    False,
                    "no drift family could be tested: see reports/drift.html",
                )
            )
        return tuple(out)

    @property
    def verdict(self) -> Verdict:
        checks = self.checks()
        return Verdict(
            gate="drift",
            passed=bool(checks) and all(c.passed for c in checks),
            reason=self.reason,
            checks=checks,
            metrics={
                f.family: {
                    "skipped": f.skipped,
                    "share_drifted": f.share_drifted,
                    "n_columns": len(f.columns_tested),
                    "n_drifted": len(f.drifted_columns),
                }
                for f in self.families
            },
            thresholds={
                "drift_share": self.settings.get("drift_share"),
                "retrain_on": list(self.required),
                "min_rows": self.settings.get("min_rows"),
            },
            details={
                "drift_detected": self.drift_detected,
                "retrain_requested": self.retrain_requested,
                "inconclusive": self.inconclusive,
                "windows": self.windows.to_dict(),
                "families": {f.family: f.to_dict() for f in self.families},
                "settings": dict(self.settings),
                "evidently_version": self.evidently_version,
            },
        )

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def to_dict(self) -> dict[str, Any]:
        return self.verdict.to_dict()

    def to_json(self) -> str:
        return self.verdict.to_json()


@dataclass(frozen=True)
class DriftResult:
    """The report and the Evidently snapshots it was read from, as ``(family, table, snapshot)``."""

    report: DriftReport
    snapshots: tuple[tuple[str, str, Snapshot], ...]


@dataclass(frozen=True)
class DriftTable:
    """One table to compare: its windows' rows and the columns to test, by Evidently type."""

    name: str
    reference: pd.DataFrame
    current: pd.DataFrame
    numerical: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    skipped_columns: Mapping[str, str] = field(default_factory=dict)
