"""Ground truth over the simulator, through the real gates: the simulated users (driven by the
synthetic world's latent truth) play against a real server, and the live canary gate and the
post-promotion monitor decide from what serving logged.

The two models are related by construction: the "inverted" model is the trained ranker with
every head weight negated and no blend, so it ranks each request's candidates in exactly the
reverse order of the trained one. The trained ranker is therefore better by construction than
its inversion, whichever of the two is in production:

* a worse candidate (production: trained, canary: inverted) is rolled back by the live canary,
  production is kept; the same inverted model promoted past the gates (a bad promotion) is
  rolled back by the monitor and the previous production is restored;
* a better candidate (production: inverted, canary: trained) is promoted by the live canary,
  and its arm shows more time spent, a higher CTR and a higher D1 retention.

The offline and shadow gates are skipped on purpose (registry transitions): the offline gate
would already stop the inverted model, and the shadow gate stops any model whose ranking
contradicts production's (Spearman -1 here), so only the canary and the monitor are under test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from components.core.catalog import DataPaths
from components.deploy.gates.live import LIVE_CANARY_EVIDENCE
from components.deploy.monitor import run as monitor
from components.deploy.promote import run_gate
from components.deploy.registry import ModelRegistry
from components.deploy.registry import run as register
from components.monitoring.kpis_stage import run as kpis
from components.ranking.artefact import load, save
from components.ranking.model import RankerModel
from components.simulate.loop import Loop
from tests.fixtures.tiny_project import HMAC_KEY, copy_project, promote_to_production

pytestmark = pytest.mark.slow

#: the loop's settings for a tiny world of 150 users: a session a day or so per user, half of
#: them in the canary arm, decisions from 20 users per arm
OVERRIDES = {
    "simulate": {"users": 0, "return_gap_hours": 24, "uploads_per_day": 2, "batch_events": 500, "max_wall_s": 300},
    "promote": {"canary": {"share": 0.5, "min_users": 20}},
    "experiments": {"monitor_min_users": 20},
}


def _project(template: Path, root: Path) -> Path:
    copy_project(template, root)
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    for section, values in OVERRIDES.items():
        for key, value in values.items():
            current = params[section].get(key)
            params[section][key] = {**current, **value} if isinstance(current, dict) else value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root


def inverted(model: RankerModel) -> RankerModel:
    """The same boosters with every head weight negated and no blend: the reverse ranking."""
    flipped = model.with_weights({h: -s.weight for h, s in model.heads.items()})
    return RankerModel(
        backend=flipped.backend, objective=flipped.objective, heads=flipped.heads, files=flipped._files,
        feature_cols=flipped.feature_cols, feature_service=flipped.feature_service,
        created_from="test: inverted " + model.version, training_metrics=flipped.training_metrics,
        params=flipped.params, library_version=flipped.library_version, blend=None,
    )  # fmt: skip


def _register(paths: DataPaths, model: RankerModel, stages: tuple[str, ...], reason: str) -> str:
    """Register ``model`` and move it through ``stages`` by registry transitions (no gate)."""
    now = datetime.now(UTC)
    version = register(paths, model_dir=save(model, paths.root / "models-under-test"), now=now, reason=reason).version
    with ModelRegistry(paths) as reg:
        for stage in stages:
            reg.promote(version, stage, reason=reason, now=now)
    return version


def _production(paths: DataPaths) -> str | None:
    with ModelRegistry(paths) as reg:
        dep = reg.deployment()
    return dep.production.version if dep.production is not None else None


def _arms(frame: pd.DataFrame) -> pd.DataFrame:
    """KPIs per arm summed over the days (users weighted by their daily presence)."""
    f = frame[frame["arm"].isin(["canary", "production"])].copy()
    for col in ("time_spent_s", "ctr", "d1_retention"):
        f[col + "_w"] = f[col] * f["dau"]
    g = f.groupby("arm")[["dau", "time_spent_s_w", "ctr_w"]].sum()
    d1 = f.dropna(subset=["d1_retention"]).groupby("arm")[["dau", "d1_retention_w"]].sum()
    return pd.DataFrame({
        "time_spent_s": g["time_spent_s_w"] / g["dau"],
        "ctr": g["ctr_w"] / g["dau"],
        "d1_retention": d1["d1_retention_w"] / d1["dau"],
    })  # fmt: skip


@pytest.fixture
def loop_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECO_HMAC_KEY", HMAC_KEY)


@pytest.mark.usefixtures("loop_env")
def test_an_inverted_model_is_stopped_by_the_canary_and_rolled_back_by_the_monitor(
    tmp_path: Path, tiny_pipeline: Path
) -> None:
    root = _project(tiny_pipeline, tmp_path / "worse")
    paths = DataPaths(root)
    good = promote_to_production(root)
    bad = inverted(load(paths.of("ranker") / good))
    loop = Loop(root)
    loop.traffic(1)  # production alone: the monitor's "before" period

    worse = _register(paths, bad, ("shadow", "canary"), "test: inverted model straight to the canary")
    loop.traffic(1)
    verdict = run_gate("canary", loop.params, paths, now=datetime.now(UTC))
    assert verdict.decision == "rollback", verdict.reason
    assert verdict.details["evidence"] == LIVE_CANARY_EVIDENCE  # not the replay fallback
    assert _production(paths) == good
    with ModelRegistry(paths) as reg:
        assert reg.get(worse).stage == "archived"
    arms = _arms(kpis(loop.params, paths))
    print(f"inverted candidate, canary vs production:\n{arms.round(3).to_string()}")
    assert arms.loc["canary", "ctr"] < arms.loc["production", "ctr"]
    assert arms.loc["canary", "time_spent_s"] < arms.loc["production", "time_spent_s"]

    # the same reversal promoted past the gates (a new version: head weights doubled)
    twice = bad.with_weights({h: 2 * s.weight for h, s in bad.heads.items()})
    promoted = _register(paths, twice, ("shadow", "canary", "production"), "test: a bad promotion")
    assert _production(paths) == promoted
    loop.traffic(1)
    after = monitor(loop.params, paths, now=datetime.now(UTC))
    assert after.decision == "rollback", after.reason
    assert after.details["restored"] == good and _production(paths) == good


@pytest.mark.usefixtures("loop_env")
def test_a_better_model_wins_the_canary_and_raises_time_spent(tmp_path: Path, tiny_pipeline: Path) -> None:
    root = _project(tiny_pipeline, tmp_path / "better")
    paths = DataPaths(root)
    trained = load(paths.of("ranker") / paths.of("ranker_latest").read_text(encoding="utf-8").strip())
    worse = _register(paths, inverted(trained), ("shadow", "canary", "production"), "test: inverted production")
    better = _register(paths, trained, ("shadow", "canary"), "test: trained model straight to the canary")
    loop = Loop(root)
    loop.traffic(2)
    verdict = run_gate("canary", loop.params, paths, now=datetime.now(UTC))
    assert verdict.decision == "promote", verdict.reason
    assert verdict.details["evidence"] == LIVE_CANARY_EVIDENCE
    assert _production(paths) == better != worse
    arms = _arms(kpis(loop.params, paths))
    print(f"trained candidate against an inverted production:\n{arms.round(3).to_string()}")
    assert arms.loc["canary", "ctr"] > arms.loc["production", "ctr"]
    assert arms.loc["canary", "time_spent_s"] > arms.loc["production", "time_spent_s"]
    # raised, by far (0.71 vs 0.47 D1 retention, 666 vs 112 s a day, CTR 0.39 vs 0.05 here)
    assert arms.loc["canary", "d1_retention"] > arms.loc["production", "d1_retention"]
