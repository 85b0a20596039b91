"""The post-promotion monitor on a real registry and a synthetic impression log + event stream:
a new production that degrades a guardrail is rolled back (the previous one restored), one that
does not is kept, too little traffic holds."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core.catalog import DataPaths
from components.deploy.monitor import monitor_decision, period, previous_production, run
from components.deploy.registry import ModelRegistry
from components.ranking.artefact import save
from tests.fixtures.live_traffic import T0, traffic
from tests.fixtures.params import project_config, project_params

SEED = project_config().base.seed
NOW = T0.to_pydatetime() + timedelta(days=3)


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    from tests.unit.deploy.test_promote import _train, make_rows

    return _train(make_rows(n_users=100, seed=1), ["f_eng", "f_neg", "noise"], 1)


def registry_with_two_productions(root: Path, model) -> tuple[DataPaths, str, str]:  # type: ignore[no-untyped-def]
    paths = DataPaths(root)
    versions = []
    with ModelRegistry(paths) as reg:
        for i in range(2):
            m = model if i == 0 else model.with_weights({"engaged": 0.9})  # another version
            folder = save(m, paths.data / "models" / f"ranker{i}")
            v = reg.register(
                folder, metrics={}, data_version="d", now=NOW + timedelta(minutes=i)
            ).version
            for j, stage in enumerate(("shadow", "canary", "production")):
                reg.promote(v, stage, now=NOW + timedelta(minutes=10 * i + j + 1), reason="setup")
            versions.append(v)
    return paths, versions[0], versions[1]


def write_periods(
    paths: DataPaths, old: str, new: str, p_new: float, neg_new: float, n: int
) -> None:
    rng = np.random.default_rng(SEED)
    users = [f"u{i}" for i in range(n)]
    before, ev1 = traffic(rng, users, lambda u: "production", {"production": 0.10}, {"production": 0.1},
                          model_version={"production": old})  # fmt: skip
    after, ev2 = traffic(rng, users, lambda u: "production", {"production": p_new}, {"production": neg_new},
                         model_version={"production": new}, start=T0 + pd.Timedelta(days=1))  # fmt: skip
    folder = paths.of("impressions")
    folder.mkdir(parents=True)
    before.to_parquet(folder / "impressions-1.parquet")
    after.to_parquet(folder / "impressions-2.parquet")
    stream = paths.of("stream_events") / "event_date=2026-03-01"
    stream.mkdir(parents=True)
    pd.concat([ev1, ev2.assign(event_id=lambda f: "x" + f["event_id"])]).to_parquet(
        stream / "part-0.parquet"
    )


@pytest.mark.parametrize(
    ("p_new", "neg_new", "n", "decision"),
    [
        (0.05, 0.1, 800, "rollback"),  # engagement collapsed
        (0.10, 0.3, 800, "rollback"),  # negative feedback up
        (0.11, 0.1, 800, "keep"),
        (0.05, 0.1, 20, "hold"),  # too few users to judge
    ],
)
def test_monitor_rolls_back_a_degraded_production(
    tmp_path: Path, model, p_new: float, neg_new: float, n: int, decision: str
) -> None:  # type: ignore[no-untyped-def]
    paths, old, new = registry_with_two_productions(tmp_path, model)
    write_periods(paths, old, new, p_new, neg_new, n)
    v = run(project_params(), paths, now=NOW + timedelta(days=1))
    assert v.decision == decision, v.reason
    record = json.loads(paths.of("metrics_monitor").read_text())
    assert (
        record["decision"] == decision
        and record["candidate"] == new
        and record["production"] == old
    )
    with ModelRegistry(paths) as reg:
        prod = reg.deployment().production
        assert prod is not None
        assert prod.version == (old if decision == "rollback" else new)
        if decision == "rollback":
            assert record["restored"] == old and reg.get(new).stage == "archived"


def test_dry_run_and_no_baseline_change_nothing(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    paths, old, new = registry_with_two_productions(tmp_path, model)
    write_periods(paths, old, new, 0.05, 0.1, 800)
    assert run(project_params(), paths, now=NOW, dry_run=True).decision == "rollback"
    with ModelRegistry(paths) as reg:
        assert reg.deployment().production.version == new  # type: ignore[union-attr]
        assert previous_production(reg.history(), old) is None  # the first production
    empty = DataPaths(tmp_path / "empty")
    v = run(project_params(), empty, now=NOW)
    assert v.decision == "hold" and not v.passed


def test_period_takes_the_versions_window() -> None:
    imp = pd.DataFrame(
        {
            "arm": ["production"] * 4 + ["canary"],
            "model_version": ["a", "a", "a", "b", "a"],
            "degraded": [False, False, True, False, False],
            "timestamp": pd.to_datetime(
                [
                    "2026-03-01T00:00Z",
                    "2026-03-03T00:00Z",
                    "2026-03-03T00:00Z",
                    "2026-03-01T00:00Z",
                    "2026-03-03T00:00Z",
                ]
            ),
        }
    )
    assert (
        len(period(imp, "a", 24, first=True)) == 1 and len(period(imp, "a", 24, first=False)) == 1
    )
    assert period(imp, "c", 24, first=True).empty


def test_monitor_decision_needs_a_significant_breach_beyond_the_margin() -> None:
    cfg = project_config().experiments
    rng = np.random.default_rng(SEED)
    before = pd.DataFrame(
        {"engagement_rate": rng.binomial(20, 0.10, 500) / 20, "negative_rate": 0.1}
    )
    slightly = pd.DataFrame(
        {"engagement_rate": rng.binomial(20, 0.095, 500) / 20, "negative_rate": 0.1}
    )
    decision, checks, _ = monitor_decision(before, slightly, cfg)
    assert decision == "keep", [c.reason for c in checks]  # within the 0.02 margin
