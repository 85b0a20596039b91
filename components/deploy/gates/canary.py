"""The canary gate: a share of users sees the candidate's top-k, the others production's.

Users whose hashed id falls under ``promote.canary.share`` are the canary arm. Per-user
engagement rate and negative-feedback (skip / hide / report) rate of the shown items are
compared with Welch's t-test (users are the randomisation unit). The checks, in order:

* ``sample_size``: at least ``min_users`` per arm, else the gate holds;
* ``guardrail``: the negative-feedback rate not significantly higher by more than its margin
  (``label_negative`` must be in the replayed rows: without it the gate holds);
* ``engagement_not_worse``: engagement not significantly worse;
* ``noninferiority``: the lower confidence bound of the engagement difference above
  ``-noninferiority_margin``.

A failed guardrail or a significantly worse engagement rolls back; any other failed check
holds; all passed promotes. With no production model (the first model) there is no arm to
compare with: the gate promotes, by that stated rule (``first_model``), a model the offline
floor and the shadow checks have passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.verdict import Check, Verdict
from components.deploy.gates.common import (
    REPLAY_EVIDENCE,
    PromoteParams,
    id_tiebreak,
    promotion_verdict,
    request_groups,
    scores_of,
    top_k,
)
from components.deploy.gates.live import LIVE_CANARY_EVIDENCE, NO_LIVE

if TYPE_CHECKING:
    from components.ranking.model import RankerModel

ROLLBACK_CHECKS = ("guardrail", "engagement_not_worse")


def in_canary(user_ids: Sequence[str] | pd.Series, share: float, salt: str) -> np.ndarray:
    """Deterministic canary assignment: SHA-256 of ``salt:user_id`` mapped to [0, 1) < share."""
    from components.experiments.assign import unit_interval

    return np.asarray(unit_interval([str(u) for u in user_ids], salt) < share, dtype=bool)


def arm_outcomes(
    rows: pd.DataFrame, cand: np.ndarray, prod: np.ndarray, p: PromoteParams
) -> pd.DataFrame:
    """Per user: arm, impressions, engagement and negative-feedback rates of the shown top-k
    (negative feedback is 0 when the rows have no ``label_negative``: the gate checks that)."""
    canary_user = in_canary(rows["user_id"].astype(str).tolist(), p.canary.share, p.canary.salt)
    tiebreak = id_tiebreak(rows)
    engaged = rows["label_engaged"].to_numpy(dtype=np.float64)
    negative = (
        rows["label_negative"].to_numpy(dtype=np.float64)
        if "label_negative" in rows
        else np.zeros(len(rows))
    )
    users = rows["user_id"].astype(str).to_numpy()
    recs = []
    for idx in request_groups(rows):
        arm = bool(canary_user[idx[0]])
        shown = top_k(cand if arm else prod, idx, p.k, tiebreak)
        recs.append((users[idx[0]], arm, len(shown), engaged[shown].sum(), negative[shown].sum()))
    per_request = pd.DataFrame(
        recs, columns=["user_id", "canary", "impressions", "engaged", "negative"]
    )
    per_user = per_request.groupby(["user_id", "canary"], as_index=False)[
        ["impressions", "engaged", "negative"]
    ].sum()
    per_user["engagement_rate"] = per_user["engaged"] / per_user["impressions"]
    per_user["negative_rate"] = per_user["negative"] / per_user["impressions"]
    return per_user


def welch(a: np.ndarray, b: np.ndarray, alpha: float) -> dict[str, float]:
    """Welch's t-test of mean(a) - mean(b), with one-sided p-values and a two-sided CI.

    With no variance in either arm the t statistic is undefined (NaN) and the difference is
    exact: its p-values are then 0 or 1 by its sign and the interval is the point, rather than
    NaN p-values that no comparison would ever call significant."""
    from scipy import stats

    diff = float(np.mean(a) - np.mean(b))
    t = None if np.ptp(a) == 0 and np.ptp(b) == 0 else stats.ttest_ind(a, b, equal_var=False)
    if t is None or not np.isfinite(t.statistic):
        return {
            "diff": diff,
            "t": 0.0,
            "p_two_sided": 0.0 if diff else 1.0,
            "p_greater": 0.0 if diff > 0 else 1.0,
            "p_less": 0.0 if diff < 0 else 1.0,
            "ci_low": diff,
            "ci_high": diff,
        }
    ci = t.confidence_interval(confidence_level=1 - alpha)
    return {
        "diff": diff,
        "t": float(t.statistic),
        "p_two_sided": float(t.pvalue),
        "p_greater": float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue),
        "p_less": float(stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue),
        "ci_low": float(ci.low) if np.isfinite(ci.low) else diff,
        "ci_high": float(ci.high) if np.isfinite(ci.high) else diff,
    }


def _arm_metrics(c: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    def mean(f: pd.DataFrame, col: str) -> float | None:
        return float(f[col].mean()) if len(f) else None

    return {
        "canary_users": len(c),
        "control_users": len(b),
        "canary_impressions": int(c["impressions"].sum()),
        "control_impressions": int(b["impressions"].sum()),
        "canary_engagement_rate": mean(c, "engagement_rate"),
        "control_engagement_rate": mean(b, "engagement_rate"),
        "canary_negative_rate": mean(c, "negative_rate"),
        "control_negative_rate": mean(b, "negative_rate"),
    }


def _test_checks(
    m: dict[str, Any], eng: dict[str, float], neg: dict[str, float], p: PromoteParams
) -> list[Check]:
    guard_ok = not (neg["p_greater"] < p.canary.alpha and neg["diff"] > p.canary.guardrail_margin)
    worse = eng["p_less"] < p.canary.alpha
    noninf = eng["ci_low"] > -p.canary.noninferiority_margin
    ce, be = m["canary_engagement_rate"], m["control_engagement_rate"]
    return [
        Check(
            "guardrail",
            guard_ok,
            (
                f"guardrail: negative-feedback rate {m['canary_negative_rate']:.4f} vs "
                f"{m['control_negative_rate']:.4f} ({neg['diff']:+.4f}, margin {p.canary.guardrail_margin}, "
                f"p = {neg['p_greater']:.2g})"
            ),
        ),
        Check(
            "engagement_not_worse",
            not worse,
            (
                f"engagement rate {ce:.4f} vs {be:.4f}: "
                + (
                    f"significantly worse (p = {eng['p_less']:.2g})"
                    if worse
                    else f"not significantly worse (p = {eng['p_less']:.2g})"
                )
            ),
        ),
        Check(
            "noninferiority",
            noninf,
            (
                f"engagement {ce:.4f} vs {be:.4f} (Δ {eng['diff']:+.4f}, {100 * (1 - p.canary.alpha):.0f} % CI "
                f"[{eng['ci_low']:+.4f}, {eng['ci_high']:+.4f}] above -{p.canary.noninferiority_margin}); guardrail held"
                if noninf
                else f"inconclusive: engagement Δ {eng['diff']:+.4f}, CI low {eng['ci_low']:+.4f} ≤ "
                f"-{p.canary.noninferiority_margin}; waiting for more outcomes"
            ),
        ),
    ]


def canary_decision(
    per_user: pd.DataFrame, p: PromoteParams
) -> tuple[str, list[Check], dict[str, Any]]:
    """promote / hold / rollback from per-user outcomes of the two arms (module docstring),
    with the checks it was decided on and the arms' metrics."""
    c = per_user[per_user["canary"]]
    b = per_user[~per_user["canary"]]
    metrics = _arm_metrics(c, b)
    if min(len(c), len(b)) < p.canary.min_users:
        few = Check(
            "sample_size",
            False,
            f"not enough outcomes yet: {len(c)} canary / {len(b)} control users (< {p.canary.min_users} per arm)",
            evidence_missing=True,
        )
        return "hold", [few], metrics
    checks = [Check("sample_size", True, f"{len(c)} canary / {len(b)} control users")]
    rates = per_user[["engagement_rate", "negative_rate"]].to_numpy(dtype=np.float64)
    if not np.isfinite(rates).all():
        checks.append(
            Check(
                "outcome_rates",
                False,
                "non-finite per-user outcome rates: the arms cannot be compared",
                evidence_missing=True,
            )
        )
        return "hold", checks, metrics
    engagement = per_user["engagement_rate"].to_numpy(dtype=np.float64)
    if np.ptp(engagement) == 0:
        checks.append(
            Check(
                "outcome_evidence",
                False,
                f"every user of both arms has the same engagement rate ({engagement[0]:.4f}): "
                "no evidence either way; waiting for outcomes that vary",
                evidence_missing=True,
            )
        )
        return "hold", checks, metrics
    eng = welch(c["engagement_rate"].to_numpy(), b["engagement_rate"].to_numpy(), p.canary.alpha)
    neg = welch(c["negative_rate"].to_numpy(), b["negative_rate"].to_numpy(), p.canary.alpha)
    metrics["engagement_test"] = eng
    metrics["guardrail_test"] = neg
    checks += _test_checks(metrics, eng, neg, p)
    failed = {ch.name for ch in checks if not ch.passed}
    return (
        ("rollback" if failed & set(ROLLBACK_CHECKS) else "hold" if failed else "promote"),
        checks,
        metrics,
    )


def canary_gate(
    rows: pd.DataFrame,
    candidate: RankerModel,
    production: RankerModel | None,
    p: PromoteParams,
    live: pd.DataFrame | None = None,
) -> Verdict:
    """The canary arms on live traffic: ``live`` per-user outcomes of the two arms
    (:func:`components.deploy.gates.live.live_canary_users`); on the replayed requests only
    when there is none (module docstring), labelled as such in the evidence."""
    thresholds = {
        "share": p.canary.share,
        "min_users_per_arm": p.canary.min_users,
        "alpha": p.canary.alpha,
        "noninferiority_margin": p.canary.noninferiority_margin,
        "guardrail_margin": p.canary.guardrail_margin,
        "k": p.k,
    }
    if production is None:
        first = Check("first_model", True, "first model: no production model to compare with")
        return promotion_verdict(
            "canary",
            candidate.version,
            None,
            [first],
            passed_reason=first.reason,
            thresholds=thresholds,
            evidence=REPLAY_EVIDENCE,
            decision="promote",
        )
    if live is not None:
        decision, checks, metrics = canary_decision(live, p)
        return promotion_verdict(
            "canary", candidate.version, production.version, checks,
            passed_reason=next((c.reason for c in checks if c.name == "noninferiority"), ""),
            metrics=metrics, thresholds=thresholds, evidence=LIVE_CANARY_EVIDENCE, decision=decision,
        )  # fmt: skip
    cand = scores_of(candidate, rows)[0]
    prod = scores_of(production, rows)[0]
    decision, checks, metrics = canary_decision(arm_outcomes(rows, cand, prod, p), p)
    if "label_negative" not in rows:
        checks.insert(
            1,
            Check(
                "guardrail_evidence",
                False,
                "the replayed rows have no label_negative: the guardrail cannot be checked; run `dvc repro ranking`",
                evidence_missing=True,
            ),
        )
        decision = "rollback" if decision == "rollback" else "hold"
    passed_reason = next((c.reason for c in checks if c.name == "noninferiority"), "")
    verdict = promotion_verdict(
        "canary",
        candidate.version,
        production.version,
        checks,
        passed_reason=passed_reason,
        metrics=metrics,
        thresholds=thresholds,
        evidence=REPLAY_EVIDENCE + NO_LIVE,
        decision=decision,
    )
    if verdict.passed != (decision == "promote"):
        raise RuntimeError(f"canary decision {decision} disagrees with its checks")
    return verdict
