"""Live shadow and canary evidence from a synthetic impression log and event stream with
known truth: a better canary arm is promoted, a worse one rolled back, an equal one held;
live shadow scores that agree pass, inverted or failing ones fail; without live traffic the
verdict says the replay decided."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from components.core.catalog import DataPaths
from components.deploy.gates.canary import canary_gate
from components.deploy.gates.common import PromoteParams
from components.deploy.gates.live import (
    NO_LIVE,
    live_canary_users,
    live_shadow_checks,
    live_shadow_metrics,
)
from components.deploy.gates.shadow import shadow_gate
from components.deploy.promote import live_canary, live_shadow
from tests.fixtures.live_traffic import T0, traffic
from tests.fixtures.params import project_config, project_params

SEED = project_config().base.seed
P = PromoteParams.from_params(project_params())
NOW = (T0 + pd.Timedelta(days=1)).to_pydatetime()


def model(version: str) -> Any:
    return cast(Any, SimpleNamespace(version=version))


def canary_traffic(
    p_canary: float, n: int = 1500, seed: int = SEED, neg: float = 0.1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from components.experiments.assign import unit_interval

    users = [f"u{i}" for i in range(n)]
    arm = dict(
        zip(
            users,
            np.where(unit_interval(users, P.canary.salt) < 0.3, "canary", "production"),
            strict=True,
        )
    )
    return traffic(
        np.random.default_rng(seed),
        users,
        arm.__getitem__,
        {"canary": p_canary, "production": 0.10},
        {"canary": neg, "production": 0.1},
        model_version={"canary": "cand", "production": "prod"},
    )


@pytest.mark.parametrize(
    ("p_canary", "neg", "n", "decision"),
    [
        (0.14, 0.1, 1500, "promote"),  # better
        (0.06, 0.1, 1500, "rollback"),  # significantly worse
        (
            0.12,
            0.3,
            1500,
            "rollback",
        ),  # more engaging, but the guardrail (negative feedback) breaks
        (0.10, 0.1, 300, "hold"),  # equal, too few users to show non-inferiority
    ],
)
def test_live_canary_decides_by_the_arms_outcomes(
    p_canary: float, neg: float, n: int, decision: str
) -> None:
    imp, ev = canary_traffic(p_canary, n=n, neg=neg)
    users = live_canary_users(imp, ev, "cand", "prod", 600, NOW)
    assert users is not None and users["canary"].any() and (~users["canary"]).any()
    v = canary_gate(pd.DataFrame(), model("cand"), model("prod"), P, live=users)
    assert v.decision == decision, v.reason
    assert v.details["evidence"].startswith("live traffic")
    assert v.metrics["canary_users"] + v.metrics["control_users"] == n


def test_live_canary_reads_only_closed_windows_and_the_right_versions() -> None:
    imp, ev = canary_traffic(0.14)
    # the label windows of impressions at T0 + 2 h... are not closed at T0 + 1 h
    assert (
        live_canary_users(
            imp, ev, "cand", "prod", 600, (T0 + pd.Timedelta(minutes=5)).to_pydatetime()
        )
        is None
    )
    assert live_canary_users(imp, ev, "other", "prod", 600, NOW) is None  # another candidate's log
    assert live_canary_users(imp.iloc[:0], ev, "cand", "prod", 600, NOW) is None


def test_live_canary_compares_the_arms_over_the_canary_period_only() -> None:
    """Production served alone, and better, the day before the canary started (engagement
    drifts over days): the arms are equal during the canary, so it is not rolled back."""
    imp, ev = canary_traffic(0.10)
    users = sorted(imp["user_id"].unique())
    before_imp, before_ev = traffic(
        np.random.default_rng(SEED + 1), users, lambda u: "production", {"production": 0.25},
        start=T0 - pd.Timedelta(days=1), model_version={"production": "prod"},
    )  # fmt: skip
    before_imp["request_id"] = "before-" + before_imp["request_id"]
    before_ev["event_id"] = "before-" + before_ev["event_id"]
    both = live_canary_users(pd.concat([before_imp, imp]), pd.concat([before_ev, ev]), "cand", "prod", 600, NOW)
    alone = live_canary_users(imp, ev, "cand", "prod", 600, NOW)
    assert both is not None and alone is not None
    pd.testing.assert_frame_equal(both.reset_index(drop=True), alone.reset_index(drop=True))
    assert canary_gate(pd.DataFrame(), model("cand"), model("prod"), P, live=both).decision != "rollback"


def test_stage_reads_the_log_and_stream_and_falls_back_labelled(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    assert live_canary(paths, model("cand"), model("prod"), 600, NOW) is None
    imp, ev = canary_traffic(0.14)
    folder = paths.of("impressions")
    folder.mkdir(parents=True)
    imp.assign(shadow_version=None, shadow_score=np.nan, model_score=np.nan).to_parquet(
        folder / "impressions-a.parquet"
    )
    stream = paths.of("stream_events") / "event_date=2026-03-01"
    stream.mkdir(parents=True)
    ev.to_parquet(stream / "part-0.parquet")
    users = live_canary(paths, model("cand"), model("prod"), 600, NOW)
    assert users is not None and len(users) == 1500
    assert live_shadow(paths, model("cand")) is None  # no shadow scores logged


def shadow_log(transform: str, n_req: int = 200, k: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(SEED)
    served = rng.normal(size=n_req * k)
    shadow = {"agree": served + 0.3 * rng.normal(size=served.size), "inverted": -served}[
        transform.split("+")[0]
    ]
    if transform.endswith("+fail"):
        shadow = shadow.copy()
        shadow[:k] = np.nan
    return pd.DataFrame(
        {
            "request_id": np.repeat([f"r{i}" for i in range(n_req)], k),
            "model_score": served,
            "shadow_score": shadow,
            "shadow_version": "cand",
        }
    )


def test_live_shadow_agreement_inversion_and_failures() -> None:
    good = live_shadow_metrics(shadow_log("agree"), "cand")
    assert good is not None and good["live_mean_rank_corr"] > 0.8 and good["live_requests"] == 200
    assert all(c.passed for c in live_shadow_checks(good, P.shadow.min_rank_corr))
    bad = live_shadow_metrics(shadow_log("inverted"), "cand")
    assert bad is not None and bad["live_mean_rank_corr"] < -0.9
    assert [c.name for c in live_shadow_checks(bad, P.shadow.min_rank_corr) if not c.passed] == [
        "live_rank_corr"
    ]
    failing = live_shadow_metrics(shadow_log("agree+fail"), "cand")
    assert failing is not None and failing["live_shadow_failure_rate"] == pytest.approx(1 / 200)
    assert [
        c.name for c in live_shadow_checks(failing, P.shadow.min_rank_corr) if not c.passed
    ] == ["live_shadow_errors"]
    assert live_shadow_metrics(shadow_log("agree"), "someone-else") is None


def test_replay_verdicts_say_no_live_traffic() -> None:
    """The fallback's evidence is labelled (first-model canary and replay shadow)."""
    from tests.unit.deploy.test_promote import _train, make_rows  # the replay's known structure

    rows = make_rows(seed=7)
    good = _train(make_rows(seed=1), ["f_eng", "f_neg", "noise"], 1)
    v, _ = shadow_gate(rows, good, good, P)
    assert v.details["evidence"].endswith(NO_LIVE)
    live = live_shadow_metrics(
        shadow_log("inverted").assign(shadow_version=good.version), good.version
    )
    v2, _ = shadow_gate(rows, good, good, P, live=live)
    assert "live shadow scores" in v2.details["evidence"] and not v2.passed
    assert any(c.name == "live_rank_corr" and not c.passed for c in v2.checks)
    weak = good.with_weights({"engaged": 0.5})
    c = canary_gate(rows, weak, good, P)
    assert c.details["evidence"].endswith(NO_LIVE)
