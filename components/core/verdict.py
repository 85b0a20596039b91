"""One verdict type for every gate (drift, offline, shadow, canary).

A :class:`Verdict` says what was judged (``gate``), whether it passed, why, on which
``metrics`` against which ``thresholds``, and the list of :class:`Check` s it was decided on.
It fails closed by construction: a verdict can only pass with at least one check and every
check passed, so "nothing to check" is never a pass, and missing evidence is written as a
failed check whose reason names what is missing and what to run (:func:`missing`). Such a check
is flagged ``evidence_missing``: a verdict that failed only on those could not judge
(:attr:`Verdict.could_not_judge`), which the promotion CLI reports apart from a refusal.

``details`` holds the gate's own record (the model versions of a promotion gate, the windows
and families of the drift gate); it is written at the top level of the JSON so the readers of
``metrics/*.json`` keep their field names. JSON has no NaN: non-finite numbers are written as
``null``, and a gate must test them (:func:`finite`) before it compares, since every comparison
with NaN is false and would otherwise read as "not above the threshold".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from components.core.io import atomic_write_text


@dataclass(frozen=True)
class Check:
    """One condition of a gate: its name, whether it held and why (or what is missing)."""

    name: str
    passed: bool
    reason: str
    evidence_missing: bool = False  # failed because the evidence to judge it is absent

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "passed": self.passed, "reason": self.reason}
        if self.evidence_missing:
            out["evidence_missing"] = True
        return out


def missing(name: str, what: str, fix: str) -> Check:
    """The failed check of a missing piece of evidence: ``what`` is absent, ``fix`` produces it."""
    return Check(name, False, f"{what}: {fix}", evidence_missing=True)


def finite(x: Any) -> float | None:
    """``x`` as a float when it is a finite number, else None (NaN, inf, None, not a number)."""
    if x is None or isinstance(x, bool | str | bytes):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def at_least(name: str, value: Any, floor: float, label: str) -> Check:
    """``value >= floor``, failing when the value is missing or not finite."""
    v = finite(value)
    if v is None:
        return Check(name, False, f"{label} is {value!r}: not a finite number")
    ok = v >= floor
    return Check(name, ok, f"{label} {v:.4g} {'>=' if ok else '<'} {floor:.4g}")


def at_most(name: str, value: Any, ceiling: float, label: str) -> Check:
    """``value <= ceiling``, failing when the value is missing or not finite."""
    v = finite(value)
    if v is None:
        return Check(name, False, f"{label} is {value!r}: not a finite number")
    ok = v <= ceiling
    return Check(name, ok, f"{label} {v:.4g} {'<=' if ok else '>'} {ceiling:.4g}")


#: The drift verdict's check names, shared by its writer (``components.monitoring``) and its
#: reader (the offline gate): per family, f"{family}{TESTED}" is the evidence (the family could
#: be tested) and f"{family}{NO_DRIFT}" the finding.
TESTED = "_tested"
NO_DRIFT = "_no_drift"

#: The decision of a promotion gate that could not judge (every failed check lacked evidence):
#: the model neither moves on nor is archived.
INSUFFICIENT_EVIDENCE = "insufficient_evidence"

_OWN_FIELDS = ("gate", "passed", "decision", "reason", "checks", "metrics", "thresholds")


@dataclass(frozen=True)
class Verdict:
    """A gate's decision. ``passed`` requires checks, all passed (checked on construction)."""

    gate: str
    passed: bool
    reason: str
    checks: tuple[Check, ...]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    decision: str = ""  # pass | fail, or the gate's own (promote, hold, rollback, nothing)
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.passed and not self.checks:
            raise ValueError(f"{self.gate}: a verdict without checks cannot pass")
        if self.passed and not all(c.passed for c in self.checks):
            raise ValueError(f"{self.gate}: a verdict with a failed check cannot pass")
        clash = set(self.details) & set(_OWN_FIELDS)
        if clash:
            raise ValueError(f"{self.gate}: details may not redefine {sorted(clash)}")
        if not self.decision:
            object.__setattr__(self, "decision", "pass" if self.passed else "fail")

    @classmethod
    def from_checks(
        cls,
        gate: str,
        checks: Iterable[Check],
        *,
        passed_reason: str,
        metrics: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Verdict:
        """Pass when there are checks and all passed (reason ``passed_reason``); otherwise fail
        with the failed checks' reasons. No checks at all fails: there was nothing to judge."""
        checks = tuple(checks)
        if not checks:
            checks = (Check("evidence", False, "nothing to check", evidence_missing=True),)
        failed = [c.reason for c in checks if not c.passed]
        return cls(
            gate=gate,
            passed=not failed,
            reason="; ".join(failed) if failed else passed_reason,
            checks=checks,
            metrics=dict(metrics or {}),
            thresholds=dict(thresholds or {}),
            details=dict(details or {}),
        )

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def could_not_judge(self) -> bool:
        """Not passed, and every failed check lacked its evidence: no judgement was made."""
        failed = self.failed_checks
        return bool(failed) and all(c.evidence_missing for c in failed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: numpy scalars as Python numbers, non-finite numbers as None."""
        out: dict[str, Any] = {
            "gate": self.gate,
            "passed": self.passed,
            "decision": self.decision,
            "reason": self.reason,
            "checks": [c.to_dict() for c in self.checks],
            "metrics": self.metrics,
            "thresholds": self.thresholds,
            **self.details,
        }
        return dict(jsonable(out))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """Read a verdict back from its JSON form; a malformed record raises ``ValueError``."""
        try:
            checks = tuple(
                Check(
                    str(c["name"]),
                    bool(c["passed"]),
                    str(c["reason"]),
                    bool(c.get("evidence_missing", False)),
                )
                for c in d["checks"]
            )
            own = {f.name for f in fields(cls)}
            return cls(
                gate=str(d["gate"]),
                passed=bool(d["passed"]),
                reason=str(d["reason"]),
                checks=checks,
                metrics=dict(d.get("metrics") or {}),
                thresholds=dict(d.get("thresholds") or {}),
                decision=str(d.get("decision") or ""),
                details={k: v for k, v in d.items() if k not in own},
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a verdict record: missing or malformed {exc}") from exc


def jsonable(obj: Any) -> Any:
    """``obj`` with mappings as dicts, sequences as lists, numpy scalars and arrays as Python
    values and non-finite floats as None (what ``json.dumps(allow_nan=False)`` accepts)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    return str(obj)


def write_verdict(path: Path, verdict: Verdict) -> Path:
    """Write the verdict's JSON atomically: a reader never sees half a verdict."""
    return atomic_write_text(path, verdict.to_json())


def read_verdict(path: Path) -> Verdict:
    """A verdict written by :func:`write_verdict`; ``ValueError`` when it is not one."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(record, Mapping):
        raise ValueError(f"{path}: not a verdict record")
    return Verdict.from_dict(record)
