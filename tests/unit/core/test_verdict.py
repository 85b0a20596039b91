"""The verdict type fails closed by construction and round-trips through its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.core.verdict import (
    Check,
    Verdict,
    at_least,
    at_most,
    missing,
    read_verdict,
    write_verdict,
)


def test_a_verdict_cannot_pass_without_checks_or_with_a_failed_one() -> None:
    with pytest.raises(ValueError, match="without checks"):
        Verdict("g", True, "ok", ())
    with pytest.raises(ValueError, match="failed check"):
        Verdict("g", True, "ok", (Check("a", True, ""), Check("b", False, "no")))
    empty = Verdict.from_checks("g", [], passed_reason="fine")
    assert not empty.passed and empty.reason == "nothing to check" and empty.decision == "fail"
    gap = missing("drift", "metrics/drift.json not found", "run `dvc repro drift`")
    v = Verdict.from_checks("g", [Check("a", True, "a ok"), gap], passed_reason="fine")
    assert not v.passed and v.reason == "metrics/drift.json not found: run `dvc repro drift`"
    ok = Verdict.from_checks("g", [Check("a", True, "a ok")], passed_reason="fine")
    assert ok.passed and ok.reason == "fine" and ok.decision == "pass"


def test_nan_and_missing_values_fail_the_threshold_checks() -> None:
    for value in (float("nan"), np.float64("inf"), None, "0.1"):
        assert not at_least("x", value, 0.0, "x").passed
        assert not at_most("x", value, 1.0, "x").passed
    assert at_least("x", np.float32(0.5), 0.5, "x").passed
    assert not at_most("x", 2, 1.0, "x").passed


def test_json_has_no_nan_and_reads_back(tmp_path: Path) -> None:
    v = Verdict.from_checks(
        "offline",
        [Check("a", True, "a ok")],
        passed_reason="fine",
        metrics={"auc": np.float64("nan"), "n": np.int64(3), "list": (1.0, float("inf"))},
        details={"candidate": "v1"},
    )
    path = write_verdict(tmp_path / "m" / "gate_offline.json", v)
    record = json.loads(path.read_text())
    assert record["metrics"] == {"auc": None, "n": 3, "list": [1.0, None]}
    assert record["candidate"] == "v1" and record["checks"] == [
        {"name": "a", "passed": True, "reason": "a ok"}
    ]
    back = read_verdict(path)
    assert back.passed and back.details == {"candidate": "v1"} and back.checks == v.checks
    tampered = {**record, "checks": [{"name": "a", "passed": False, "reason": "no"}]}
    with pytest.raises(ValueError, match="failed check"):
        Verdict.from_dict(tampered)
    with pytest.raises(ValueError, match="not a verdict record"):
        Verdict.from_dict({"passed": True})
    with pytest.raises(ValueError, match="may not redefine"):
        Verdict("g", False, "", (), details={"passed": True})
