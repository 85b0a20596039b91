"""Promotion gates on a held-out set with known structure, with real (tiny) LightGBM rankers.

Engagement follows feature ``f_eng``; negative feedback (skip / hide / report) follows an
independent feature ``f_neg``. So:

* ``good`` (trained on both features) ranks well; ``weak`` sees only noise;
* ``inverted`` is ``good`` with its engaged head's sign flipped: clearly worse; ``negated`` flips
  both heads, so it orders every request exactly against ``good``;
* ``edgy`` is ``good`` with the negative head's weight turned positive: it still finds engaging
  items but also pushes the ones users hide and report (a guardrail regression).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from components.core.catalog import DataPaths
from components.core.verdict import Verdict
from components.deploy.gates.canary import arm_outcomes, canary_decision, canary_gate, in_canary
from components.deploy.gates.common import PromoteParams
from components.deploy.gates.offline import offline_gate
from components.deploy.gates.shadow import shadow_gate
from components.deploy.model_cache import ModelCache
from components.deploy.promote import run_all, run_gate
from components.deploy.registry import ModelRegistry
from components.ranking.artefact import save
from components.ranking.model import RankerModel
from components.ranking.params import RankerParams
from components.ranking.train import train_ranker
from tests.fixtures.drift_verdicts import drift_record, write_drift_record
from tests.fixtures.params import project_params, project_settings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
GOOD_QUALITY = {"reconciled": True, "quarantine_rate": 0.001}
NO_DRIFT = drift_record()
TRAINED = "2026-03-04T00:00:00+00:00"  # the candidates' training data ends before the drift window's end
# the latency budget is tested on its own (max_p99_ms=0): elsewhere a loaded shared machine
# must not turn a decision on model quality into a timing failure
SHADOW = {"max_p99_ms": 10_000.0}
P = PromoteParams.from_params(project_params(promote={"offline": {"min_groups": 20}, "canary": {"min_users": 40, "share": 0.3},
                                                      "shadow": SHADOW}))


def make_rows(n_users: int = 400, per_group: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_users * per_group
    user = np.repeat([f"u{i:04d}" for i in range(n_users)], per_group)
    f_eng, f_neg, noise = rng.normal(size=(3, n))
    engaged = (rng.random(n) < 1 / (1 + np.exp(-(2.5 * f_eng - 2.0)))).astype(int)
    negative = (rng.random(n) < 1 / (1 + np.exp(-(2.5 * f_neg - 2.5)))).astype(int)
    return pd.DataFrame(
        {
            "group_id": [f"{u}@2026-02-28" for u in user],
            "user_id": user,
            "content_id": [f"c{i:05d}" for i in range(n)],
            "event_timestamp": pd.Timestamp("2026-02-28", tz="UTC")
            + pd.to_timedelta(np.repeat(np.arange(n_users), per_group), unit="s"),
            "f_eng": f_eng,
            "f_neg": f_neg,
            "noise": noise,
            "label_engaged": engaged,
            "label_negative": negative,
            "relevance": engaged,
        }
    )


def _train(rows: pd.DataFrame, features: list[str], seed: int) -> RankerModel:
    params = project_settings(
        RankerParams,
        objective="binary",
        heads={"engaged": 1.0, "negative": -1.0},
        n_estimators=30,
        early_stopping_rounds=0,
        num_leaves=8,
        max_depth=3,
        min_child_samples=10,
        n_threads=1,
        seed=seed,
        base_feature="",
    )
    return train_ranker(rows, features, params, feature_service="ranker_v2", created_from="test")


@pytest.fixture(scope="module")
def models() -> dict[str, RankerModel]:
    train = make_rows(seed=1)
    good = _train(train, ["f_eng", "f_neg", "noise"], 1)
    weak = _train(train.assign(f_eng=0.0, f_neg=0.0), ["f_eng", "f_neg", "noise"], 2)
    return {
        "good": good,
        "weak": weak,
        "inverted": good.with_weights({"engaged": -1.0}),
        "negated": good.with_weights({"engaged": -1.0, "negative": 1.0}),
        "edgy": good.with_weights({"negative": 0.3}),
    }


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return make_rows(seed=7)


def test_offline_gate_passes_a_better_candidate_and_stops_a_worse_one(models, rows) -> None:
    better = offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY, drift=NO_DRIFT, trained_until=TRAINED)
    assert better.passed and better.decision == "pass"
    assert better.metrics["delta"]["auc"] > 0.2 and better.metrics["delta"]["ndcg@10"] > 0.1
    worse = offline_gate(rows, models["inverted"], models["good"], P, quality=GOOD_QUALITY, drift=NO_DRIFT, trained_until=TRAINED)
    assert not worse.passed and worse.decision == "fail"
    assert "NDCG@10" in worse.reason and "AUC" in worse.reason


def test_offline_gate_checks_data_quality_and_drift(models, rows) -> None:
    bad = offline_gate(rows, models["good"], models["weak"], P,
                       quality={"reconciled": True, "quarantine_rate": 0.2}, drift=NO_DRIFT, trained_until=TRAINED)
    assert not bad.passed and "quarantine rate 0.2" in bad.reason
    missing = offline_gate(rows, models["good"], models["weak"], P, quality={}, drift=NO_DRIFT, trained_until=TRAINED)
    assert not missing.passed and "reconcile" in missing.reason and "dvc repro ingest" in missing.reason
    drift = drift_record(drifted=("feature",), end="2026-03-05T00:00:00+00:00")
    stale = offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY,
                         drift=drift, trained_until="2026-03-01T00:00:00+00:00")
    assert not stale.passed and "newer than the candidate's training data" in stale.reason
    fresh = offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY,
                         drift=drift, trained_until="2026-03-06T00:00:00+00:00")
    assert fresh.passed


def test_first_model_needs_an_absolute_floor(models, rows) -> None:
    assert offline_gate(rows, models["good"], None, P, quality=GOOD_QUALITY, drift=NO_DRIFT, trained_until=TRAINED).passed
    weak = offline_gate(rows, models["weak"], None, P, quality=GOOD_QUALITY, drift=NO_DRIFT, trained_until=TRAINED)
    assert not weak.passed and "below the floor" in weak.reason


def test_shadow_gate_compares_agreement_and_logs_both_models(models, rows) -> None:
    ok, log = shadow_gate(rows, models["edgy"], models["good"], P)
    assert ok.passed and ok.metrics["mean_rank_corr"] > 0.3
    assert set(log["role"]) == {"shadow", "production"} and len(log) == 2 * len(rows)
    assert set(log["model_version"]) == {models["edgy"].version, models["good"].version}
    contradicts, _ = shadow_gate(rows, models["negated"], models["good"], P)
    assert not contradicts.passed and contradicts.metrics["mean_rank_corr"] < -0.99
    unrelated, _ = shadow_gate(rows, models["good"], models["weak"], P)  # production is noise
    assert unrelated.passed and abs(unrelated.metrics["mean_rank_corr"]) < 0.1
    slow, _ = shadow_gate(rows, models["good"], models["weak"], P.replace(shadow=P.shadow.replace(max_p99_ms=0.0)))
    assert not slow.passed and "p99 scoring latency" in slow.reason


def test_canary_assignment_is_deterministic_and_close_to_the_share() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    a = in_canary(users, 0.1, "salt")
    assert np.array_equal(a, in_canary(users, 0.1, "salt"))
    assert abs(a.mean() - 0.1) < 4 * np.sqrt(0.1 * 0.9 / len(users))
    assert not np.array_equal(a, in_canary(users, 0.1, "other-salt"))
    assert in_canary(users, 0.2, "salt")[a].all()  # growing the share keeps the canary users


def test_canary_promotes_a_better_model(models, rows) -> None:
    v = canary_gate(rows, models["good"], models["weak"], P)
    assert v.decision == "promote" and v.passed, v.reason
    assert v.metrics["canary_users"] >= P.canary.min_users and v.metrics["control_users"] >= P.canary.min_users
    assert v.metrics["canary_engagement_rate"] > v.metrics["control_engagement_rate"]
    assert "replay of held-out events" in v.details["evidence"]


def test_canary_rolls_back_a_worse_model_and_a_guardrail_regression(models, rows) -> None:
    worse = canary_gate(rows, models["inverted"], models["good"], P)
    assert worse.decision == "rollback" and "significantly worse" in worse.reason
    edgy = canary_gate(rows, models["edgy"], models["good"], P)
    assert edgy.decision == "rollback" and edgy.reason.startswith("guardrail"), edgy.reason
    assert edgy.metrics["canary_negative_rate"] > 2 * edgy.metrics["control_negative_rate"]


def test_canary_holds_without_enough_users(models, rows) -> None:
    few = rows[rows["user_id"] < "u0060"]
    v = canary_gate(few, models["good"], models["weak"], P)
    assert v.decision == "hold" and "not enough outcomes" in v.reason and not v.passed


def test_canary_decision_on_crafted_outcomes() -> None:
    rng = np.random.default_rng(3)
    n = 400

    def users(eng: float, neg: float, canary: bool) -> pd.DataFrame:
        return pd.DataFrame({
            "user_id": [f"{canary}-{i}" for i in range(n)],
            "canary": canary,
            "impressions": 10,
            "engaged": 0,
            "negative": 0,
            "engagement_rate": np.clip(rng.normal(eng, 0.05, n), 0, 1),
            "negative_rate": np.clip(rng.normal(neg, 0.02, n), 0, 1),
        })

    same = pd.concat([users(0.3, 0.05, True), users(0.3, 0.05, False)])
    assert canary_decision(same, P)[0] == "promote"
    guard = pd.concat([users(0.3, 0.10, True), users(0.3, 0.05, False)])
    assert canary_decision(guard, P)[0] == "rollback"
    small_guard = pd.concat([users(0.3, 0.055, True), users(0.3, 0.05, False)])  # within margin
    assert canary_decision(small_guard, P)[0] == "promote"
    assert canary_decision(pd.concat([users(0.2, 0.05, True), users(0.3, 0.05, False)]), P)[0] == "rollback"


def test_arm_outcomes_count_the_shown_items(models, rows) -> None:
    cand = models["good"].predict(rows)
    per_user = arm_outcomes(rows, cand, cand, P)
    assert (per_user["impressions"] == P.k).all() and len(per_user) == rows["user_id"].nunique()


# ------------------------------------------------------------------ the gates on the registry


@pytest.fixture
def project(tmp_path: Path, rows: pd.DataFrame, models) -> DataPaths:
    paths = DataPaths(tmp_path)
    paths.of("ranking_holdout").parent.mkdir(parents=True)
    rows.to_parquet(paths.of("ranking_holdout"), index=False)
    paths.metrics.mkdir()
    (paths.metrics / "ingest.json").write_text(json.dumps({"reconciled": True, "n_in": 1000, "quarantined": 1}))
    write_drift_record(paths.metrics)
    return paths


def _params(offline_margin: float = -0.005) -> dict:
    return project_params(
        base={"seed": 42},
        promote={
            "offline": {"min_delta_ndcg": offline_margin, "min_delta_auc": offline_margin},
            "canary": {"min_users": P.canary.min_users, "share": P.canary.share},
            "shadow": SHADOW,
        },
    )


def _register(paths: DataPaths, model: RankerModel, i: int, metrics: dict | None = None) -> str:
    folder = save(model, paths.data / "models" / "ranker")
    with ModelRegistry(paths) as reg:
        return reg.register(folder, metrics=metrics or {"trained_until": TRAINED}, data_version="d",
                            now=T0 + timedelta(minutes=i)).version


def _to_production(paths: DataPaths, version: str) -> None:
    with ModelRegistry(paths) as reg:
        for i, stage in enumerate(("shadow", "canary", "production")):
            reg.promote(version, stage, now=T0 + timedelta(hours=1, minutes=i), reason="setup")


def test_better_candidate_goes_all_the_way_to_production(project: DataPaths, models) -> None:
    prod = _register(project, models["weak"], 0)
    _to_production(project, prod)
    cand = _register(project, models["good"], 1)
    verdicts = run_all(_params(), project, version=cand, now=T0 + timedelta(days=1))
    assert [(v.gate, v.decision) for v in verdicts] == [("offline", "pass"), ("shadow", "pass"), ("canary", "promote")]
    with ModelRegistry(project) as reg:
        assert reg.deployment().production.version == cand
        assert reg.get(prod).stage == "archived"
        assert [h.to_stage for h in reg.history(cand)] == ["candidate", "shadow", "canary", "production"]
        assert reg.check() == []
    for gate in ("offline", "shadow", "canary"):
        on_disk = json.loads((project.metrics / f"gate_{gate}.json").read_text())
        assert on_disk["candidate"] == cand and on_disk["passed"] is True
    assert (project.data / "logs" / "scores" / f"shadow-{cand}.parquet").exists()
    # a gate re-run for a model already past it changes nothing
    again = run_gate("offline", _params(), project, version=cand, now=T0 + timedelta(days=2))
    assert again.decision == "nothing" and again.passed


def test_worse_candidate_stops_at_offline_and_production_is_untouched(project: DataPaths, models) -> None:
    prod = _register(project, models["good"], 0)
    _to_production(project, prod)
    with ModelRegistry(project) as reg:
        revision = reg.revision()
    cand = _register(project, models["inverted"], 1)
    verdicts = run_all(_params(), project, version=cand, now=T0 + timedelta(days=1))
    assert [(v.gate, v.decision) for v in verdicts] == [("offline", "fail")]
    with ModelRegistry(project) as reg:
        assert reg.deployment().production.version == prod
        assert reg.get(cand).stage == "archived"
        assert reg.revision() == revision + 2  # registered, then archived: nothing else moved


def test_guardrail_regression_is_rolled_back_at_canary(project: DataPaths, models) -> None:
    prod = _register(project, models["good"], 0)
    _to_production(project, prod)
    cand = _register(project, models["edgy"], 1)
    # offline metrics see engagement only: with a loose margin the regression reaches the canary
    verdicts = run_all(_params(offline_margin=-0.2), project, version=cand, now=T0 + timedelta(days=1))
    assert [(v.gate, v.decision) for v in verdicts] == [("offline", "pass"), ("shadow", "pass"), ("canary", "rollback")]
    assert verdicts[-1].reason.startswith("guardrail")
    with ModelRegistry(project) as reg:
        assert reg.deployment().production.version == prod
        assert reg.deployment().canary is None
        assert reg.get(cand).stage == "archived"


def test_rollback_restores_the_previous_production_and_serving_picks_it_up(project: DataPaths, models, rows) -> None:
    old = _register(project, models["weak"], 0)
    _to_production(project, old)
    new = _register(project, models["good"], 1)
    run_all(_params(), project, version=new, now=T0 + timedelta(days=1))
    reg = ModelRegistry(project)
    cache = ModelCache(reg)
    cache.refresh()
    assert cache.production().version == new
    reg.rollback(reason="test", now=T0 + timedelta(days=2))
    assert cache.refresh() is True
    assert cache.production().version == old
    assert np.allclose(cache.production().predict(rows), models["weak"].predict(rows))
    reg.close()


def test_nothing_to_check_fails_and_says_what_to_run(project: DataPaths) -> None:
    v = run_gate("canary", _params(), project, version=None, now=T0)
    assert isinstance(v, Verdict) and v.decision == "nothing" and not v.passed
    assert "no model in stage 'canary'" in v.reason and "components.deploy.registry register" in v.reason
    on_disk = json.loads((project.metrics / "gate_canary.json").read_text())
    assert on_disk["passed"] is False and on_disk["checks"][0]["name"] == "model"
    # with nothing pinned, each gate still judges the model of its own stage: none here
    assert [(v.gate, v.decision, v.passed) for v in run_all(_params(), project, version=None, now=T0)] == [
        ("offline", "nothing", False), ("shadow", "nothing", False), ("canary", "nothing", False)]


def test_missing_drift_verdict_fails_the_offline_gate(project: DataPaths, models, rows) -> None:
    unit = offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY, drift=None,
                        trained_until=TRAINED)
    assert not unit.passed and unit.decision == "insufficient_evidence" and unit.could_not_judge
    assert unit.reason == "no drift verdict (metrics/drift.json not found): run `dvc repro drift` (or the monitor_drift DAG)"
    assert [c.name for c in unit.failed_checks] == ["drift"]
    # through the registry: the file is gone, the candidate does not reach shadow, and it is
    # not archived either (nothing was judged): it waits as a candidate for the evidence
    (project.metrics / "drift.json").unlink()
    cand = _register(project, models["good"], 0)
    verdicts = run_all(_params(), project, version=cand, now=T0 + timedelta(days=1))
    assert [(v.gate, v.decision) for v in verdicts] == [("offline", "insufficient_evidence")]
    assert "metrics/drift.json not found" in verdicts[0].reason
    on_disk = json.loads((project.metrics / "gate_offline.json").read_text())
    assert on_disk["passed"] is False and on_disk["decision"] == "insufficient_evidence"
    assert {"name": "drift", "passed": False, "evidence_missing": True} .items() <= {
        k: v for c in on_disk["checks"] if c["name"] == "drift" for k, v in c.items()}.items()
    with ModelRegistry(project) as reg:
        assert reg.get(cand).stage == "candidate"


def test_drift_without_trained_until_or_window_end_fails_even_when_no_drift_was_found(models, rows) -> None:
    """A drift verdict that cannot be placed against the candidate's training data says nothing
    about it: "no drift" in an unknown window, or for a candidate of unknown training data, is
    no evidence (issue 16: these used to skip the drift check)."""
    no_trained_until = offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY,
                                    drift=NO_DRIFT, trained_until="")
    assert not no_trained_until.passed and no_trained_until.decision == "insufficient_evidence"
    assert "no trained_until" in no_trained_until.reason
    no_end = json.loads(json.dumps(NO_DRIFT))
    del no_end["windows"]["current"]["end"]
    endless = offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY,
                           drift=no_end, trained_until=TRAINED)
    assert not endless.passed and "no current window end" in endless.reason
    garbled = offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY,
                           drift=NO_DRIFT, trained_until="last tuesday")
    assert not garbled.passed and "cannot compare drift window end" in garbled.reason
    # with both, the same verdict passes: the failures above were the missing pieces
    assert offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY,
                        drift=NO_DRIFT, trained_until=TRAINED).passed


def test_a_judged_failure_is_not_reported_as_missing_evidence(models, rows) -> None:
    """A worse candidate with the drift verdict missing too is a ``fail`` (archived), not
    ``insufficient_evidence``: missing evidence does not hide a judged failure."""
    v = offline_gate(rows, models["inverted"], models["good"], P, quality=GOOD_QUALITY, drift=None,
                     trained_until=TRAINED)
    assert v.decision == "fail" and not v.could_not_judge and "drift.json not found" in v.reason


def _cli(project: DataPaths, *argv: str) -> int:
    from components.deploy.promote import main

    (project.root / "params.yaml").write_text(yaml.safe_dump(_params()))
    return main([*argv, "--root", str(project.root), "--params", str(project.root / "params.yaml")])


def test_promote_all_exits_non_zero_when_a_gate_could_not_judge(project: DataPaths, models, capsys) -> None:
    # nothing registered: no gate has anything to judge
    assert _cli(project, "all") == 4
    assert "could not judge (insufficient_evidence)" in capsys.readouterr().out
    # a candidate, but no drift verdict: the offline gate cannot judge it
    (project.metrics / "drift.json").unlink()
    cand = _register(project, models["good"], 0)
    assert _cli(project, "all") == 4
    assert "insufficient_evidence" in capsys.readouterr().out
    with ModelRegistry(project) as reg:
        assert reg.get(cand).stage == "candidate"
    # the evidence arrives: the same candidate goes through (first model: promoted)
    write_drift_record(project.metrics)
    assert _cli(project, "all") == 0
    with ModelRegistry(project) as reg:
        assert reg.deployment().production.version == cand


def test_promote_all_says_which_artefact_was_refused_and_exits_4(project: DataPaths, models, capsys) -> None:
    # a registered candidate whose files changed after registration (or whose hashes came from
    # older code): a clear "could not judge", not a traceback, and the registry is untouched
    cand = _register(project, models["good"], 0)
    with ModelRegistry(project) as reg:
        folder = reg.artefact_dir(cand)
        revision = reg.revision()
    victim = next(p for p in sorted(folder.iterdir()) if p.name not in ("manifest.json", "sha256sums.json"))
    victim.write_bytes(victim.read_bytes() + b" ")
    assert _cli(project, "all") == 4
    err = capsys.readouterr().err
    assert "artefact was refused" in err and cand in err
    with ModelRegistry(project) as reg:
        assert reg.get(cand).stage == "candidate" and reg.revision() == revision


def test_promote_all_exits_3_when_a_gate_judged_against(project: DataPaths, models) -> None:
    prod = _register(project, models["good"], 0)
    _to_production(project, prod)
    _register(project, models["inverted"], 1)
    assert _cli(project, "all") == 3


def test_incomplete_or_unreadable_drift_evidence_fails(models, rows) -> None:
    def gate(drift: dict) -> Verdict:
        return offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY, drift=drift,
                            trained_until=TRAINED)

    untested = gate(drift_record(skipped=("target", "prediction")))
    assert not untested.passed and "drift verdict incomplete: target drift not tested" in untested.reason
    nothing = gate(drift_record(skipped=("feature", "target", "prediction")))
    assert not nothing.passed and "no drift family could be tested" in nothing.reason
    old_format = gate({"drift_detected": False, "reason": "No drift"})  # no checks: not a verdict
    assert not old_format.passed and "not a drift verdict" in old_format.reason
    assert gate(drift_record(skipped=())).passed  # prediction tested too: fine
    # drift found, but the candidate's record cannot say what it was trained on
    unknown = offline_gate(rows, models["good"], models["weak"], P, quality=GOOD_QUALITY,
                           drift=drift_record(drifted=("target",)), trained_until="")
    assert not unknown.passed and "no trained_until" in unknown.reason


class NaNEveryTenth:
    """A real model whose every tenth score is NaN (as a broken feature transform would give):
    a ranker refuses NaN head weights, so the NaN is put into its output here."""

    def __init__(self, model: RankerModel) -> None:
        self.model, self.version, self.feature_cols = model, f"{model.version}-nan", model.feature_cols

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        scores = np.array(self.model.predict(rows), dtype=np.float64)
        scores[::10] = np.nan
        return scores


def test_nan_fails_every_gate_instead_of_passing_silently(models, rows) -> None:
    nan = NaNEveryTenth(models["good"])
    assert np.isnan(nan.predict(rows.head(50))).sum() == 5
    offline = offline_gate(rows, nan, models["weak"], P, quality=GOOD_QUALITY, drift=NO_DRIFT, trained_until=TRAINED)
    assert not offline.passed and "candidate produced non-finite scores" in offline.reason
    assert "NDCG@10 cannot be compared" in offline.reason and offline.metrics["delta"]["auc"] is None
    assert json.loads(offline.to_json())["metrics"]["candidate"]["auc"] is None  # JSON has no NaN
    first = offline_gate(rows, nan, None, P, quality=GOOD_QUALITY, drift=NO_DRIFT, trained_until=TRAINED)
    assert not first.passed and "below the floor" in first.reason
    nan_quality = offline_gate(rows, models["good"], models["weak"], P,
                               quality={"reconciled": True, "quarantine_rate": float("nan")}, drift=NO_DRIFT, trained_until=TRAINED)
    assert not nan_quality.passed and "quarantine rate is nan: not a finite number" in nan_quality.reason
    shadow, _ = shadow_gate(rows, nan, models["good"], P)
    assert not shadow.passed and "candidate produced non-finite scores (1200 of 12000)" in shadow.reason


def test_canary_holds_without_the_guardrail_label(models, rows) -> None:
    v = canary_gate(rows.drop(columns=["label_negative"]), models["good"], models["weak"], P)
    assert v.decision == "hold" and not v.passed and "no label_negative" in v.reason


def test_canary_with_no_variance_in_either_arm_is_exact_not_nan() -> None:
    def arm(canary: bool, eng: float) -> pd.DataFrame:
        return pd.DataFrame({"user_id": [f"{canary}-{i}" for i in range(100)], "canary": canary,
                             "impressions": 10, "engaged": 0, "negative": 0,
                             "engagement_rate": eng, "negative_rate": 0.0})

    # exactly representable rates: no variance at all, so Welch's t is undefined (NaN)
    worse, checks, metrics = canary_decision(pd.concat([arm(True, 0.25), arm(False, 0.5)]), P)
    assert metrics["engagement_test"]["t"] == 0.0 and metrics["engagement_test"]["p_less"] == 0.0
    assert worse == "rollback" and "significantly worse" in " ".join(c.reason for c in checks if not c.passed)



@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_canary_with_the_same_constant_outcome_in_both_arms_holds(rate: float) -> None:
    """All-zero outcomes in both arms (or any one rate for every user) are no evidence: the gate
    holds instead of reading a zero-width interval at 0 as non-inferior (issue 16)."""
    def arm(canary: bool) -> pd.DataFrame:
        return pd.DataFrame({"user_id": [f"{canary}-{i}" for i in range(100)], "canary": canary,
                             "impressions": 10, "engaged": 0, "negative": 0,
                             "engagement_rate": rate, "negative_rate": 0.0})

    decision, checks, _ = canary_decision(pd.concat([arm(True), arm(False)]), P)
    assert decision == "hold"
    failed = [c for c in checks if not c.passed]
    assert [c.name for c in failed] == ["outcome_evidence"] and "no evidence" in failed[0].reason


def test_drift_reference_is_the_production_models_training_window(project: DataPaths, models) -> None:
    from components.orchestration import production_reference

    (project.root / "params.yaml").write_text(yaml.safe_dump(project_params(base={"seed": 1}, drift={"reference_days": 3})))
    assert production_reference(project.root, T0) is None  # no registry yet
    prod = _register(project, models["good"], 0, {"trained_until": "2026-02-20T00:00:00+00:00"})
    _to_production(project, prod)
    assert production_reference(project.root, T0) == (datetime(2026, 2, 17, tzinfo=UTC), datetime(2026, 2, 20, tzinfo=UTC))
    # a model trained on data inside the current window: the default windows apply
    assert production_reference(project.root, datetime(2026, 2, 19, tzinfo=UTC)) is None
