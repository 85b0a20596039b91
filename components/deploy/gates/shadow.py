"""The shadow gate: both models score every replayed request; the candidate's are never shown.

The candidate's scores must be finite and not constant, every feature it reads present in the
served rows, its per-request latency within budget, and its ordering must not contradict
production's (mean Spearman correlation per request above a floor below zero: a better model
may disagree with a weak production, but a model that orders requests against it is broken,
e.g. by train/serve skew). Top-k overlap and a two-sample KS statistic of the standardised
scores are reported. Both models' scores go to the score log (``data/logs/scores``) that drift
monitoring reads. No replayed request, or no request on which the orderings can be compared,
fails the gate.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.verdict import Check, Verdict, at_least, at_most, finite, missing
from components.deploy.gates.common import (
    REPLAY_EVIDENCE,
    PromoteParams,
    finite_scores,
    id_tiebreak,
    promotion_verdict,
    request_groups,
    score_log,
    scores_of,
    top_k,
)
from components.deploy.gates.live import LIVE_SHADOW_EVIDENCE, NO_LIVE, live_shadow_checks

if TYPE_CHECKING:
    from components.ranking.model import RankerModel

EVIDENCE = REPLAY_EVIDENCE + "; shadow scores are logged, never shown"


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = float(np.std(x))
    return (x - float(np.mean(x))) / sd if sd > 0 else x - float(np.mean(x))


def _score_one_request_at_a_time(
    model: RankerModel, rows: pd.DataFrame, groups: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scores, per-request latencies (ms) and the features the rows lack, as serving would."""
    scores = np.empty(len(rows))
    latencies = np.empty(len(groups))
    missing: list[str] = []
    for i, idx in enumerate(groups):
        t0 = time.perf_counter()
        scores[idx], missing = scores_of(model, rows.iloc[idx])
        latencies[i] = (time.perf_counter() - t0) * 1000.0
    return scores, latencies, missing


def agreement(
    rows: pd.DataFrame, groups: list[np.ndarray], cand: np.ndarray, prod: np.ndarray, k: int
) -> dict[str, Any]:
    """Mean per-request rank correlation, top-k Jaccard overlap and the KS test of the
    standardised scores of the two models (None where no request allows it)."""
    from scipy.stats import ks_2samp, spearmanr

    tiebreak = id_tiebreak(rows)
    corr, overlap = [], []
    for idx in groups:
        if len(idx) >= 3 and np.std(cand[idx]) > 0 and np.std(prod[idx]) > 0:
            corr.append(float(spearmanr(cand[idx], prod[idx]).statistic))
        a = set(top_k(cand, idx, k, tiebreak).tolist())
        b = set(top_k(prod, idx, k, tiebreak).tolist())
        overlap.append(len(a & b) / len(a | b) if a | b else 1.0)
    ks = ks_2samp(_standardise(cand), _standardise(prod))
    return {
        "mean_rank_corr": finite(np.mean(corr)) if corr else None,
        f"mean_top{k}_jaccard": finite(np.mean(overlap)) if overlap else None,
        "score_ks_statistic": finite(ks.statistic),
        "score_ks_pvalue": finite(ks.pvalue),
        "production_score_mean": finite(np.mean(prod)),
        "production_score_std": finite(np.std(prod)),
    }


def candidate_checks(
    cand: np.ndarray, missing: list[str], p99_ms: float, p: PromoteParams
) -> list[Check]:
    """The candidate on its own: finite, varying scores, every feature served, latency budget."""
    std = finite(np.std(cand))
    return [
        finite_scores("candidate_scores", cand, "candidate"),
        Check(
            "candidate_scores_vary",
            std is not None and std > 0,
            "candidate scores vary" if std else "candidate scores are constant (or not finite)",
        ),
        Check(
            "served_features",
            not missing,
            f"{len(missing)} feature(s) the candidate reads are not served: {missing[:5]}"
            if missing
            else "every feature the candidate reads is served",
        ),
        at_most("latency_p99", p99_ms, p.shadow.max_p99_ms, "p99 scoring latency (ms)"),
    ]


def shadow_gate(
    rows: pd.DataFrame,
    candidate: RankerModel,
    production: RankerModel | None,
    p: PromoteParams,
    live: dict[str, Any] | None = None,
) -> tuple[Verdict, pd.DataFrame]:
    """Both models score every replayed request; with ``live`` shadow metrics
    (:func:`components.deploy.gates.live.live_shadow_metrics`) the live checks are added.
    Returns the verdict and the score log rows."""
    prod_version = production.version if production is not None else None
    thresholds = {"min_rank_corr": p.shadow.min_rank_corr, "max_p99_ms": p.shadow.max_p99_ms}
    if rows.empty:
        none = missing(
            "requests",
            "no replayed request (data/ranking/holdout.parquet is empty)",
            "run `dvc repro ranking`",
        )
        verdict = promotion_verdict(
            "shadow", candidate.version, prod_version, [none], passed_reason="",
            thresholds=thresholds, evidence=EVIDENCE,
        )  # fmt: skip
        return verdict, score_log(rows, np.empty(0), candidate.version, "shadow")
    groups = request_groups(rows)
    cand, latencies, unserved = _score_one_request_at_a_time(candidate, rows, groups)
    metrics: dict[str, Any] = {
        "requests": len(groups),
        "rows": len(rows),
        "candidate_p50_ms": float(np.percentile(latencies, 50)),
        "candidate_p99_ms": float(np.percentile(latencies, 99)),
        "candidate_score_mean": finite(np.mean(cand)),
        "candidate_score_std": finite(np.std(cand)),
    }
    if unserved:
        metrics["missing_features"] = unserved
    checks = candidate_checks(cand, unserved, metrics["candidate_p99_ms"], p)
    log_parts = [score_log(rows, cand, candidate.version, "shadow")]
    p99 = f"p99 {metrics['candidate_p99_ms']:.1f} ms"
    passed_reason = f"first model: finite, non-constant scores, {p99}"
    if production is not None:
        prod = scores_of(production, rows)[0]
        metrics.update(agreement(rows, groups, cand, prod, p.k))
        corr, overlap = metrics["mean_rank_corr"], metrics[f"mean_top{p.k}_jaccard"]
        label = "mean rank correlation with production"
        checks.append(at_least("rank_corr", corr, p.shadow.min_rank_corr, label))
        log_parts.append(score_log(rows, prod, production.version, "production"))
        passed_reason = (
            f"agrees with production (rank corr {corr:.3f}, top-{p.k} overlap {overlap:.3f}), {p99}"
            if finite(corr) is not None and finite(overlap) is not None
            else ""
        )
    evidence = EVIDENCE + NO_LIVE
    if live is not None:
        metrics.update(live)
        checks += live_shadow_checks(live, p.shadow.min_rank_corr)
        evidence = f"{EVIDENCE}; {LIVE_SHADOW_EVIDENCE}"
        corr = live.get("live_mean_rank_corr")
        passed_reason += f"; live: {live['live_requests']} requests" + (
            f", rank corr {corr:.3f}" if corr is not None else ""
        )
    verdict = promotion_verdict(
        "shadow", candidate.version, prod_version, checks, passed_reason=passed_reason,
        metrics=metrics, thresholds=thresholds, evidence=evidence,
    )  # fmt: skip
    return verdict, pd.concat(log_parts, ignore_index=True)
