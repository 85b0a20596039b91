"""Experiments on synthetic traffic with known truth: assignment, A/A false-positive rate,
sample-ratio mismatch, power to detect a real effect, guardrails, and the stage end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core.catalog import DataPaths
from components.core.config import Experiments, Params
from components.deploy.gates.canary import in_canary
from components.experiments.assign import assign_arms, serving_overrides, unit_interval
from components.experiments.outcomes import labelled_impressions, per_user
from components.experiments.report import analyse
from components.experiments.stats import min_sample_size, srm_check, welch_effect
from tests.fixtures.live_traffic import traffic
from tests.fixtures.params import project_config, project_params

SEED = project_config().base.seed
EXP = {
    "name": "trend",
    "salt": "exp-trend",
    "control": "base",
    "arms": {
        "base": {"share": 0.5, "serving": {}},
        "strong": {"share": 0.5, "serving": {"trend_beta": 0.5}},
    },
}


def cfg(**changes: object) -> Experiments:
    return project_config(experiments=changes).experiments


def users_frame(
    rng: np.random.Generator, n: int, arm: np.ndarray, p: dict[str, float], imps: int = 20
) -> pd.DataFrame:
    """Per-user rates: ``imps`` impressions each, engaged with the arm's probability."""
    engaged = rng.binomial(imps, [p[a] for a in arm])
    neg = rng.binomial(imps, 0.05, size=n)
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "arm": arm,
            "engagement_rate": engaged / imps,
            "negative_rate": neg / imps,
        }
    )


def test_assignment_is_deterministic_balanced_and_matches_the_canary_hash() -> None:
    users = [f"u{i}" for i in range(20000)]
    arms = assign_arms(users, "s", [("a", 0.5), ("b", 0.3), ("c", 0.2)])
    assert (arms == assign_arms(users, "s", [("a", 0.5), ("b", 0.3), ("c", 0.2)])).all()
    shares = pd.Series(arms).value_counts(normalize=True)
    assert (
        abs(shares["a"] - 0.5) < 0.02
        and abs(shares["b"] - 0.3) < 0.02
        and abs(shares["c"] - 0.2) < 0.02
    )
    # another salt is an independent split
    other = assign_arms(users, "t", [("a", 0.5), ("b", 0.5)])
    assert (
        abs(pd.crosstab(arms, other).div(pd.Series(arms).value_counts(), axis=0)["a"] - 0.5).max()
        < 0.03
    )
    # the canary split is the same map
    assert (
        in_canary(users[:500], 0.2, "canary") == (unit_interval(users[:500], "canary") < 0.2)
    ).all()


def test_serving_overrides_follow_the_users_arm() -> None:
    c = cfg(running=[EXP])
    seen = {str(serving_overrides(c, f"u{i}").get("trend_beta")) for i in range(200)}
    assert seen == {"None", "0.5"}
    clash = dict(EXP, name="clash", salt="other")
    with pytest.raises(ValueError, match="more than one"):
        for i in range(200):
            serving_overrides(cfg(running=[EXP, clash]), f"u{i}")


def test_aa_false_positive_rate_is_about_alpha() -> None:
    """200 A/A experiments (new salt each): significant at alpha in about alpha of them."""
    rng = np.random.default_rng(SEED)
    users = [f"u{i}" for i in range(1000)]
    hits = 0
    runs = 200
    for r in range(runs):
        arm = assign_arms(users, f"aa-{r}", [("a", 0.5), ("b", 0.5)])
        f = users_frame(rng, len(users), arm, {"a": 0.1, "b": 0.1})
        e = welch_effect(
            f.loc[f.arm == "b", "engagement_rate"].to_numpy(),
            f.loc[f.arm == "a", "engagement_rate"].to_numpy(),
            0.05,
        )
        hits += e.p_value < 0.05
    rate = hits / runs
    # binomial(200, 0.05): 99.9 % of runs fall in [2, 20]
    assert 0.01 <= rate <= 0.10, rate


def test_srm_flags_a_corrupted_assignment_and_not_a_clean_one() -> None:
    users = [f"u{i}" for i in range(20000)]
    arm = assign_arms(users, "srm", [("a", 0.5), ("b", 0.5)])
    clean = srm_check(pd.Series(arm).value_counts().to_dict(), {"a": 0.5, "b": 0.5}, 0.001)
    assert not clean.mismatch and clean.p_value > 0.001
    # corruption: 10 % of arm b's users lost (e.g. b's feed crashes before logging)
    rng = np.random.default_rng(SEED)
    keep = (arm == "a") | (rng.random(len(arm)) > 0.10)
    bad = srm_check(pd.Series(arm[keep]).value_counts().to_dict(), {"a": 0.5, "b": 0.5}, 0.001)
    assert bad.mismatch and bad.p_value < 1e-4
    report = analyse(
        users_frame(rng, int(keep.sum()), arm[keep], {"a": 0.1, "b": 0.1}),
        "arm",
        "a",
        {"a": 0.5, "b": 0.5},
        cfg(),
    )
    assert report["arms"]["b"]["decision"] == "invalid"


def test_power_analysis_and_a_real_effect_is_detected() -> None:
    c = cfg(mde=0.02)
    sd = float(np.sqrt(0.1 * 0.9 / 20))
    n = min_sample_size(sd, 0.02, 0.05, 0.8)
    assert n is not None and 150 < n < 250  # 2 (1.96 + 0.84)^2 sd^2 / mde^2 ~ 177
    assert min_sample_size(0.0, 0.02, 0.05, 0.8) is None
    rng = np.random.default_rng(SEED)
    users = [f"u{i}" for i in range(3 * n)]
    arm = assign_arms(users, "power", [("a", 0.5), ("b", 0.5)])
    detected = 0
    for _ in range(50):
        f = users_frame(rng, len(users), arm, {"a": 0.10, "b": 0.12})
        rep = analyse(f, "arm", "a", {"a": 0.5, "b": 0.5}, c)
        detected += rep["arms"]["b"]["decision"] == "ship"
    assert detected >= 40  # 1.5 n per arm: power > 0.9
    small = analyse(
        users_frame(rng, 60, arm[:60], {"a": 0.10, "b": 0.12}), "arm", "a", {"a": 0.5, "b": 0.5}, c
    )
    assert small["arms"]["b"]["decision"] == "continue"


def test_guardrail_stops_an_arm_that_raises_negative_feedback() -> None:
    rng = np.random.default_rng(SEED)
    users = [f"u{i}" for i in range(2000)]
    arm = assign_arms(users, "g", [("a", 0.5), ("b", 0.5)])
    f = users_frame(rng, len(users), arm, {"a": 0.1, "b": 0.15})
    f.loc[f.arm == "b", "negative_rate"] += 0.05
    rep = analyse(f, "arm", "a", {"a": 0.5, "b": 0.5}, cfg())
    assert rep["arms"]["b"]["decision"] == "stop"
    assert rep["arms"]["b"]["guardrails_breached"] == ["negative_rate"]


def test_ab_n_with_holm_ships_only_the_better_arm() -> None:
    rng = np.random.default_rng(SEED)
    users = [f"u{i}" for i in range(3000)]
    shares = {"a": 0.4, "b": 0.3, "c": 0.3}
    arm = assign_arms(users, "abn", list(shares.items()))
    rep = analyse(
        users_frame(rng, len(users), arm, {"a": 0.1, "b": 0.1, "c": 0.14}),
        "arm",
        "a",
        shares,
        cfg(),
    )
    assert rep["arms"]["c"]["decision"] == "ship"
    assert rep["arms"]["b"]["decision"] == "no_effect"
    assert rep["arms"]["c"]["p_holm"] >= rep["arms"]["c"]["effects"]["engagement_rate"]["p_value"]


def test_outcomes_join_and_stage_end_to_end(tmp_path: Path) -> None:
    """Impressions + events written where serving writes them; the stage reports the effect."""
    from components.experiments import stage
    from components.experiments.assign import experiment_arms

    params = project_params(experiments={"running": [EXP], "mde": 0.03})
    exp = Params.of(params).experiments.running[0]
    rng = np.random.default_rng(SEED)
    users = [f"u{i}" for i in range(1200)]
    arms = dict(zip(users, experiment_arms(exp, users), strict=True))
    imp, ev = traffic(
        rng, users, arms.__getitem__, {"base": 0.10, "strong": 0.16}, {"base": 0.1, "strong": 0.1}
    )
    lab = labelled_impressions(imp, ev, 600)
    truth = ev.merge(imp[["user_id", "content_id"]].drop_duplicates())
    assert lab["label_engaged"].sum() == (truth["event_type"] == "like").sum()
    pu = per_user(lab)
    assert len(pu) == 1200 and (pu["impressions"] == 15).all()
    paths = DataPaths(tmp_path)
    folder = paths.of("impressions")
    folder.mkdir(parents=True)
    imp.to_parquet(folder / "impressions-1.parquet")
    stream = paths.of("stream_events") / "event_date=2026-03-01"
    stream.mkdir(parents=True)
    ev.to_parquet(stream / "part-0.parquet")
    result = stage.run(params, paths)
    rep = json.loads(paths.of("metrics_experiments").read_text())["experiments"][0]
    assert result.impressions == len(imp)
    assert not rep["sample_ratio"]["mismatch"]
    assert rep["arms"]["strong"]["decision"] == "ship", rep["arms"]["strong"]["reason"]
    eff = rep["arms"]["strong"]["effects"]["engagement_rate"]
    assert eff["ci_low"] < 0.06 < eff["ci_high"]


def test_stage_without_traffic_writes_an_empty_report(tmp_path: Path) -> None:
    from components.experiments import stage

    paths = DataPaths(tmp_path)
    result = stage.run(project_params(experiments={"running": [EXP]}), paths)
    assert (result.impressions, result.users, result.reports) == (0, 0, [])
    assert json.loads(paths.of("metrics_experiments").read_text())["experiments"] == []
