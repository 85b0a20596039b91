"""Promotion gates: offline, shadow and canary, and the registry transitions they drive.

Each gate returns a typed :class:`GateVerdict` (metrics, thresholds, ``passed``, ``decision``,
``reason``) that is written to ``metrics/gate_<gate>.json`` and logged by the ``promote_model``
DAG. A gate that cannot decide never passes silently.

Traffic. The gates replay recent traffic: the ranker's held-out request groups
(``data/ranking/holdout.parquet``, written by the ``train`` stage: the latest requests, each
with its candidates, their features and the user's real events in the following 24 h). Both
models score the same requests. There is no live traffic on a laptop, so the canary gate's
outcomes are the users' recorded events on the items each arm would have shown: a replay of
held-out events, labelled as such in every verdict (``evidence``). With a serving layer, the
same gate reads logged impressions joined with outcomes instead.

* **offline**: NDCG@k (engaged) and AUC of the candidate vs production on the held-out rows,
  with the margins of ``promote.offline``; the data-quality record of ingestion (reconciled,
  quarantine rate); and the latest drift verdict, which must not report drift in data newer than
  the candidate's training data. Pass → shadow, fail → archived.
* **shadow**: both models score every replayed request; the candidate's scores must be finite,
  every feature it reads present in the served rows, its per-request latency within budget, and
  its ordering must not contradict production's (mean Spearman correlation per request above a
  floor below zero: a better model may disagree with a weak production, but a model that orders
  requests against it is broken, e.g. by train/serve skew). Top-k overlap and a two-sample KS statistic of
  the standardised scores are reported. Both models' scores go to the score log
  (``data/logs/scores``) that drift monitoring reads. Pass → canary, fail → archived.
* **canary**: users whose hashed id falls under ``promote.canary.share`` see the candidate's
  top-k, the others production's. Per-user engagement rate and negative-feedback (skip / hide /
  report) rate of the shown items are compared with Welch's t-test (users are the randomisation
  unit). Below ``min_users`` per arm the gate holds. Rollback when engagement is significantly
  worse or the guardrail rate significantly higher by more than its margin; promote when the
  candidate is non-inferior (the lower confidence bound of the engagement difference above
  ``-noninferiority_margin``); hold otherwise.

With no production model (the first model), the comparisons have no baseline: the offline gate
requires an absolute AUC floor, the shadow gate checks the candidate alone, and the canary gate
promotes with that reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.config import load_params
from components.core.io import atomic_write_parquet, atomic_write_text
from components.core.paths import DataPaths

if TYPE_CHECKING:
    from components.deploy.registry import ModelRegistry
    from components.ranking.ranker import RankerModel

log = logging.getLogger(__name__)

GATES: tuple[str, ...] = ("offline", "shadow", "canary")
#: the registry stage a gate applies to, and where its verdicts move the model
GATE_STAGE = {"offline": "candidate", "shadow": "shadow", "canary": "canary"}
NEXT_STAGE = {"offline": "shadow", "shadow": "canary", "canary": "production"}
STAGE_ORDER = ("candidate", "shadow", "canary", "production")
REPLAY_EVIDENCE = (
    "replay of held-out events: the latest request groups of the training data, outcomes from "
    "the users' recorded events in the following window (data/ranking/holdout.parquet); "
    "not live traffic"
)


# --------------------------------------------------------------------------------------- params


@dataclass(frozen=True)
class PromoteParams:
    k: int = 10
    # offline
    min_delta_ndcg: float = -0.005
    min_delta_auc: float = -0.005
    min_auc: float = 0.55  # first model: no production to compare with
    max_quarantine_rate: float = 0.02
    min_groups: int = 20
    # shadow
    min_rank_corr: float = -0.2
    max_p99_ms: float = 50.0
    # canary
    share: float = 0.2
    salt: str = "canary"
    min_users: int = 50
    alpha: float = 0.05
    noninferiority_margin: float = 0.01
    guardrail_margin: float = 0.01
    seed: int = 42

    def __post_init__(self) -> None:
        for ok, msg in (
            (self.k >= 1, "promote.k must be >= 1"),
            (0 < self.share < 1, "promote.canary.share must be in (0, 1)"),
            (0 < self.alpha < 1, "promote.canary.alpha must be in (0, 1)"),
            (self.min_users >= 2, "promote.canary.min_users must be >= 2"),
        ):
            if not ok:
                raise ValueError(msg)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PromoteParams:
        p = params.get("promote", {}) or {}
        off, sh, ca = p.get("offline", {}) or {}, p.get("shadow", {}) or {}, p.get("canary", {}) or {}
        d = cls()
        return cls(
            k=int(p.get("k", d.k)),
            min_delta_ndcg=float(off.get("min_delta_ndcg", d.min_delta_ndcg)),
            min_delta_auc=float(off.get("min_delta_auc", d.min_delta_auc)),
            min_auc=float(off.get("min_auc", d.min_auc)),
            max_quarantine_rate=float(off.get("max_quarantine_rate", d.max_quarantine_rate)),
            min_groups=int(off.get("min_groups", d.min_groups)),
            min_rank_corr=float(sh.get("min_rank_corr", d.min_rank_corr)),
            max_p99_ms=float(sh.get("max_p99_ms", d.max_p99_ms)),
            share=float(ca.get("share", d.share)),
            salt=str(ca.get("salt", d.salt)),
            min_users=int(ca.get("min_users", d.min_users)),
            alpha=float(ca.get("alpha", d.alpha)),
            noninferiority_margin=float(ca.get("noninferiority_margin", d.noninferiority_margin)),
            guardrail_margin=float(ca.get("guardrail_margin", d.guardrail_margin)),
            seed=int((params.get("base", {}) or {}).get("seed", d.seed)),
        )


@dataclass(frozen=True)
class GateVerdict:
    gate: str
    candidate: str
    production: str | None
    passed: bool
    decision: str  # pass | fail | promote | hold | rollback | nothing
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    evidence: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


# ----------------------------------------------------------------------------------- pure core


def scores_of(model: RankerModel, rows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The model's final scores on ``rows``; feature columns the rows lack are NaN (returned)."""
    missing = [c for c in model.feature_cols if c not in rows.columns]
    if missing:
        rows = rows.assign(**{c: np.nan for c in missing})
    return np.asarray(model.predict(rows), dtype=np.float64), missing


def _groups(rows: pd.DataFrame) -> list[np.ndarray]:
    """Row positions of each request group, groups in sorted order."""
    codes, _ = pd.factorize(rows["group_id"], sort=True)
    order = np.argsort(codes, kind="mergesort")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds)


def top_k(scores: np.ndarray, idx: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """Positions (from ``idx``) of the k best scores, ties broken by ``tiebreak`` ascending."""
    order = np.lexsort((tiebreak[idx], -scores[idx]))
    return idx[order[:k]]


def offline_metrics(rows: pd.DataFrame, scores: np.ndarray, k: int) -> dict[str, float | None]:
    """NDCG@k on ``label_engaged`` over groups with a positive, and the engaged AUC."""
    from sklearn.metrics import roc_auc_score

    from components.evaluation.metrics import ranking_metrics

    y = rows["label_engaged"].to_numpy(dtype=np.float64)
    tiebreak = rows["content_id"].astype(str).rank(method="dense").to_numpy()
    recs: dict[int, list[int]] = {}
    rel: dict[int, set[int]] = {}
    for g, idx in enumerate(_groups(rows)):
        pos = idx[y[idx] > 0]
        if len(pos):
            recs[g] = top_k(scores, idx, k, tiebreak).tolist()
            rel[g] = set(pos.tolist())
    ndcg = float(ranking_metrics(recs, rel, ks=(k,))[f"ndcg@{k}"]) if rel else None
    auc = float(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 else None
    return {f"ndcg@{k}": ndcg, "auc": auc, "groups_with_positive": float(len(rel))}


def _pass_fail(
    gate: str,
    candidate: RankerModel,
    production: RankerModel | None,
    passed: bool,
    reason: str,
    metrics: dict[str, Any],
    thresholds: dict[str, Any],
    evidence: str,
) -> GateVerdict:
    """The verdict of a pass / fail gate (offline, shadow)."""
    return GateVerdict(
        gate=gate,
        candidate=candidate.version,
        production=production.version if production is not None else None,
        passed=passed,
        decision="pass" if passed else "fail",
        reason=reason,
        metrics=metrics,
        thresholds=thresholds,
        evidence=evidence,
    )


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def offline_gate(
    rows: pd.DataFrame,
    candidate: RankerModel,
    production: RankerModel | None,
    p: PromoteParams,
    *,
    quality: Mapping[str, Any],
    drift: Mapping[str, Any] | None,
    trained_until: str = "",
) -> GateVerdict:
    """Candidate vs production on the held-out rows, data quality and drift (module docstring)."""
    k = p.k
    cand_scores, cand_missing = scores_of(candidate, rows)
    cm = offline_metrics(rows, cand_scores, k)
    metrics: dict[str, Any] = {"candidate": cm, "rows": len(rows), "groups": int(rows["group_id"].nunique())}
    if cand_missing:
        metrics["candidate_missing_features"] = cand_missing
    thresholds: dict[str, Any] = {
        "min_delta_ndcg": p.min_delta_ndcg,
        "min_delta_auc": p.min_delta_auc,
        "max_quarantine_rate": p.max_quarantine_rate,
        "min_groups": p.min_groups,
    }
    problems: list[str] = []
    if metrics["groups"] < p.min_groups:
        problems.append(f"only {metrics['groups']} held-out groups (< {p.min_groups})")
    if not np.isfinite(cand_scores).all():
        problems.append("candidate produced non-finite scores")
    if production is not None:
        prod_scores, prod_missing = scores_of(production, rows)
        pm = offline_metrics(rows, prod_scores, k)
        metrics["production"] = pm
        if prod_missing:
            metrics["production_missing_features"] = prod_missing
        d_ndcg, d_auc = _delta(cm[f"ndcg@{k}"], pm[f"ndcg@{k}"]), _delta(cm["auc"], pm["auc"])
        metrics["delta"] = {f"ndcg@{k}": d_ndcg, "auc": d_auc}
        if d_ndcg is None or d_auc is None:
            problems.append("held-out rows have no positive (or no negative) labels to compare on")
        else:
            if d_ndcg < p.min_delta_ndcg:
                problems.append(f"NDCG@{k} {cm[f'ndcg@{k}']:.4f} vs production {pm[f'ndcg@{k}']:.4f} (Δ {d_ndcg:+.4f} < {p.min_delta_ndcg:+.4f})")
            if d_auc < p.min_delta_auc:
                problems.append(f"AUC {cm['auc']:.4f} vs production {pm['auc']:.4f} (Δ {d_auc:+.4f} < {p.min_delta_auc:+.4f})")
    else:
        thresholds["min_auc"] = p.min_auc
        if cm["auc"] is None or cm["auc"] < p.min_auc:
            problems.append(f"first model: AUC {cm['auc']} below the floor {p.min_auc}")
    # data quality of the training data
    metrics["quality"] = dict(quality)
    if not quality.get("reconciled", False):
        problems.append("ingestion counts do not reconcile (or no ingestion record)")
    rate = quality.get("quarantine_rate")
    if rate is None or rate > p.max_quarantine_rate:
        problems.append(f"quarantine rate {rate} above {p.max_quarantine_rate}")
    # drift seen after the candidate's training data makes it stale
    if drift:
        end = str(((drift.get("windows") or {}).get("current") or {}).get("end") or "")
        metrics["drift"] = {"drift_detected": bool(drift.get("drift_detected")), "current_end": end, "trained_until": trained_until}
        if drift.get("drift_detected") and trained_until and end and pd.Timestamp(end) > pd.Timestamp(trained_until):
            problems.append(f"drift detected in data up to {end}, newer than the candidate's training data ({trained_until})")
    passed = not problems
    if passed:
        reason = (
            f"NDCG@{k} {cm[f'ndcg@{k}']:.4f} and AUC {cm['auc']:.4f} within the margins of production"
            if production is not None
            else f"first model: AUC {cm['auc']:.4f} ≥ {p.min_auc}"
        ) + "; data quality and drift checks passed"
    else:
        reason = "; ".join(problems)
    return _pass_fail("offline", candidate, production, passed, reason, metrics, thresholds, REPLAY_EVIDENCE)


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = float(np.std(x))
    return (x - float(np.mean(x))) / sd if sd > 0 else x - float(np.mean(x))


def shadow_gate(
    rows: pd.DataFrame, candidate: RankerModel, production: RankerModel | None, p: PromoteParams
) -> tuple[GateVerdict, pd.DataFrame]:
    """Both models score every replayed request; returns the verdict and the score log rows."""
    from scipy.stats import ks_2samp, spearmanr

    groups = _groups(rows)
    cand = np.empty(len(rows))
    latencies = np.empty(len(groups))
    missing: list[str] = []
    for i, idx in enumerate(groups):  # one request at a time, as serving would
        t0 = time.perf_counter()
        cand[idx], missing = scores_of(candidate, rows.iloc[idx])
        latencies[i] = (time.perf_counter() - t0) * 1000.0
    metrics: dict[str, Any] = {
        "requests": len(groups),
        "rows": len(rows),
        "candidate_p50_ms": float(np.percentile(latencies, 50)),
        "candidate_p99_ms": float(np.percentile(latencies, 99)),
        "candidate_score_mean": float(np.mean(cand)),
        "candidate_score_std": float(np.std(cand)),
    }
    thresholds = {"min_rank_corr": p.min_rank_corr, "max_p99_ms": p.max_p99_ms}
    problems: list[str] = []
    if not np.isfinite(cand).all():
        problems.append("candidate produced non-finite scores")
    if np.std(cand) == 0:
        problems.append("candidate scores are constant")
    if missing:
        metrics["missing_features"] = missing
        problems.append(f"{len(missing)} feature(s) the candidate reads are not served: {missing[:5]}")
    if metrics["candidate_p99_ms"] > p.max_p99_ms:
        problems.append(f"p99 scoring latency {metrics['candidate_p99_ms']:.1f} ms > {p.max_p99_ms} ms")
    log_parts = [_score_log(rows, cand, candidate.version, "shadow")]
    if production is not None:
        prod = scores_of(production, rows)[0]
        tiebreak = rows["content_id"].astype(str).rank(method="dense").to_numpy()
        corr, overlap = [], []
        for idx in groups:
            if len(idx) >= 3 and np.std(cand[idx]) > 0 and np.std(prod[idx]) > 0:
                corr.append(float(spearmanr(cand[idx], prod[idx]).statistic))
            a = set(top_k(cand, idx, p.k, tiebreak).tolist())
            b = set(top_k(prod, idx, p.k, tiebreak).tolist())
            overlap.append(len(a & b) / len(a | b) if a | b else 1.0)
        ks = ks_2samp(_standardise(cand), _standardise(prod))
        metrics.update(
            {
                "mean_rank_corr": float(np.mean(corr)) if corr else None,
                f"mean_top{p.k}_jaccard": float(np.mean(overlap)),
                "score_ks_statistic": float(ks.statistic),
                "score_ks_pvalue": float(ks.pvalue),
                "production_score_mean": float(np.mean(prod)),
                "production_score_std": float(np.std(prod)),
            }
        )
        if metrics["mean_rank_corr"] is None or metrics["mean_rank_corr"] < p.min_rank_corr:
            problems.append(
                f"mean rank correlation with production {metrics['mean_rank_corr']} < {p.min_rank_corr}"
            )
        log_parts.append(_score_log(rows, prod, production.version, "production"))
    passed = not problems
    reason = "; ".join(problems) if problems else (
        f"agrees with production (rank corr {metrics.get('mean_rank_corr', float('nan')):.3f}, "
        f"top-{p.k} overlap {metrics.get(f'mean_top{p.k}_jaccard', float('nan')):.3f}), "
        f"p99 {metrics['candidate_p99_ms']:.1f} ms"
        if production is not None
        else f"first model: finite, non-constant scores, p99 {metrics['candidate_p99_ms']:.1f} ms"
    )
    verdict = _pass_fail(
        "shadow", candidate, production, passed, reason, metrics, thresholds,
        REPLAY_EVIDENCE + "; shadow scores are logged, never shown",
    )
    return verdict, pd.concat(log_parts, ignore_index=True)


def _score_log(rows: pd.DataFrame, scores: np.ndarray, version: str, role: str) -> pd.DataFrame:
    ts = pd.to_datetime(rows["event_timestamp"], utc=True)
    return pd.DataFrame(
        {
            "timestamp": ts.to_numpy(),
            "request_id": rows["group_id"].astype(str).to_numpy(),
            "user_id": rows["user_id"].astype(str).to_numpy(),
            "content_id": rows["content_id"].astype(str).to_numpy(),
            "model_version": version,
            "role": role,
            "score": scores,
        }
    )


def in_canary(user_ids: Sequence[str] | pd.Series, share: float, salt: str) -> np.ndarray:
    """Deterministic canary assignment: SHA-256 of ``salt:user_id`` mapped to [0, 1) < share."""
    out = np.empty(len(user_ids), dtype=bool)
    for i, u in enumerate(user_ids):
        h = hashlib.sha256(f"{salt}:{u}".encode()).digest()
        out[i] = int.from_bytes(h[:8], "big") / 2.0**64 < share
    return out


def arm_outcomes(
    rows: pd.DataFrame, cand: np.ndarray, prod: np.ndarray, p: PromoteParams
) -> pd.DataFrame:
    """Per user: arm, impressions, engagement and negative-feedback rates of the shown top-k."""
    canary_user = in_canary(rows["user_id"].astype(str).tolist(), p.share, p.salt)
    tiebreak = rows["content_id"].astype(str).rank(method="dense").to_numpy()
    engaged = rows["label_engaged"].to_numpy(dtype=np.float64)
    negative = (
        rows["label_negative"].to_numpy(dtype=np.float64)
        if "label_negative" in rows
        else np.zeros(len(rows))
    )
    users = rows["user_id"].astype(str).to_numpy()
    recs = []
    for idx in _groups(rows):
        arm = bool(canary_user[idx[0]])
        shown = top_k(cand if arm else prod, idx, p.k, tiebreak)
        recs.append((users[idx[0]], arm, len(shown), engaged[shown].sum(), negative[shown].sum()))
    per_request = pd.DataFrame(recs, columns=["user_id", "canary", "impressions", "engaged", "negative"])
    per_user = per_request.groupby(["user_id", "canary"], as_index=False)[["impressions", "engaged", "negative"]].sum()
    per_user["engagement_rate"] = per_user["engaged"] / per_user["impressions"]
    per_user["negative_rate"] = per_user["negative"] / per_user["impressions"]
    return per_user


def _welch(a: np.ndarray, b: np.ndarray, alpha: float) -> dict[str, float]:
    """Welch's t-test of mean(a) - mean(b), with one-sided p-values and a two-sided CI."""
    from scipy import stats

    t = stats.ttest_ind(a, b, equal_var=False)
    diff = float(np.mean(a) - np.mean(b))
    ci = t.confidence_interval(confidence_level=1 - alpha)
    return {
        "diff": diff,
        "t": float(t.statistic) if np.isfinite(t.statistic) else 0.0,
        "p_two_sided": float(t.pvalue) if np.isfinite(t.pvalue) else 1.0,
        "p_greater": float(stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue),
        "p_less": float(stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue),
        "ci_low": float(ci.low) if np.isfinite(ci.low) else diff,
        "ci_high": float(ci.high) if np.isfinite(ci.high) else diff,
    }


def canary_decision(per_user: pd.DataFrame, p: PromoteParams) -> tuple[str, str, dict[str, Any]]:
    """promote / hold / rollback from per-user outcomes of the two arms (module docstring)."""
    c = per_user[per_user["canary"]]
    b = per_user[~per_user["canary"]]
    metrics: dict[str, Any] = {
        "canary_users": len(c),
        "control_users": len(b),
        "canary_impressions": int(c["impressions"].sum()),
        "control_impressions": int(b["impressions"].sum()),
        "canary_engagement_rate": float(c["engagement_rate"].mean()) if len(c) else None,
        "control_engagement_rate": float(b["engagement_rate"].mean()) if len(b) else None,
        "canary_negative_rate": float(c["negative_rate"].mean()) if len(c) else None,
        "control_negative_rate": float(b["negative_rate"].mean()) if len(b) else None,
    }
    if min(len(c), len(b)) < p.min_users:
        return "hold", f"not enough outcomes yet: {len(c)} canary / {len(b)} control users (< {p.min_users} per arm)", metrics
    eng = _welch(c["engagement_rate"].to_numpy(), b["engagement_rate"].to_numpy(), p.alpha)
    neg = _welch(c["negative_rate"].to_numpy(), b["negative_rate"].to_numpy(), p.alpha)
    metrics["engagement_test"] = eng
    metrics["guardrail_test"] = neg
    if neg["p_greater"] < p.alpha and neg["diff"] > p.guardrail_margin:
        return "rollback", (
            f"guardrail: negative-feedback rate {metrics['canary_negative_rate']:.4f} vs "
            f"{metrics['control_negative_rate']:.4f} (+{neg['diff']:.4f} > {p.guardrail_margin}, "
            f"p = {neg['p_greater']:.2g})"
        ), metrics
    if eng["p_less"] < p.alpha:
        return "rollback", (
            f"engagement rate {metrics['canary_engagement_rate']:.4f} vs "
            f"{metrics['control_engagement_rate']:.4f}: significantly worse (p = {eng['p_less']:.2g})"
        ), metrics
    if eng["ci_low"] > -p.noninferiority_margin:
        return "promote", (
            f"engagement {metrics['canary_engagement_rate']:.4f} vs {metrics['control_engagement_rate']:.4f} "
            f"(Δ {eng['diff']:+.4f}, {100 * (1 - p.alpha):.0f} % CI [{eng['ci_low']:+.4f}, {eng['ci_high']:+.4f}] "
            f"above -{p.noninferiority_margin}); guardrail held"
        ), metrics
    return "hold", (
        f"inconclusive: engagement Δ {eng['diff']:+.4f}, CI low {eng['ci_low']:+.4f} ≤ "
        f"-{p.noninferiority_margin}; waiting for more outcomes"
    ), metrics


def canary_gate(
    rows: pd.DataFrame, candidate: RankerModel, production: RankerModel | None, p: PromoteParams
) -> GateVerdict:
    thresholds = {
        "share": p.share,
        "min_users_per_arm": p.min_users,
        "alpha": p.alpha,
        "noninferiority_margin": p.noninferiority_margin,
        "guardrail_margin": p.guardrail_margin,
        "k": p.k,
    }
    if production is None:
        return GateVerdict("canary", candidate.version, None, True, "promote",
                           "first model: no production model to compare with", {}, thresholds, REPLAY_EVIDENCE)
    cand = scores_of(candidate, rows)[0]
    prod = scores_of(production, rows)[0]
    per_user = arm_outcomes(rows, cand, prod, p)
    decision, reason, metrics = canary_decision(per_user, p)
    return GateVerdict(
        gate="canary",
        candidate=candidate.version,
        production=production.version,
        passed=decision == "promote",
        decision=decision,
        reason=reason,
        metrics=metrics,
        thresholds=thresholds,
        evidence=REPLAY_EVIDENCE,
    )


# ------------------------------------------------------------------------------------------ I/O


def ingestion_quality(paths: DataPaths) -> dict[str, Any]:
    """The ingestion record's reconciliation and quarantine rate (empty if there is none)."""
    path = paths.metrics / "ingest.json"
    if not path.exists():
        return {}
    rec = json.loads(path.read_text(encoding="utf-8"))
    n_in = int(rec.get("n_in", 0))
    return {
        "reconciled": bool(rec.get("reconciled")),
        "n_in": n_in,
        "quarantined": int(rec.get("quarantined", 0)),
        "quarantine_rate": (int(rec.get("quarantined", 0)) / n_in) if n_in else None,
    }


def write_verdict(paths: DataPaths, verdict: GateVerdict) -> Path:
    path = paths.metrics / f"gate_{verdict.gate}.json"
    atomic_write_text(path, verdict.to_json())
    return path


def append_score_log(paths: DataPaths, frame: pd.DataFrame, name: str) -> Path:
    """One parquet file per (gate run, model): rewriting the same name replaces it (idempotent)."""
    return atomic_write_parquet(paths.data / "logs" / "scores" / f"{name}.parquet", frame, index=False)


def _load(registry: ModelRegistry, version: str) -> RankerModel:
    from components.ranking.ranker import load

    return load(registry.artefact_dir(version))


def _target(registry: ModelRegistry, gate: str, version: str | None) -> str | None:
    if version is not None:
        return version
    stage = GATE_STAGE[gate]
    rec = registry.latest(stage)
    return rec.version if rec is not None else None


def run_gate(
    gate: str,
    params: Mapping[str, Any],
    paths: DataPaths,
    *,
    version: str | None = None,
    now: datetime,
    registry: ModelRegistry | None = None,
) -> GateVerdict:
    """Run ``gate`` for ``version`` (default: the model in the gate's stage), record the verdict
    and move the model in the registry. Re-running a gate for a model already past it is a no-op
    that passes; a model that was archived does not pass."""
    from components.deploy.registry import ModelRegistry
    from components.ranking.stage import holdout_path

    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; expected one of {GATES}")
    p = PromoteParams.from_params(params)
    registry = registry or ModelRegistry(paths)
    target = _target(registry, gate, version)
    dep = registry.deployment()
    prod_version = dep.production.version if dep.production is not None else None
    if target is None:
        verdict = GateVerdict(gate, "", prod_version, True, "nothing",
                              f"no model in stage {GATE_STAGE[gate]!r}: nothing to check")
        write_verdict(paths, verdict)
        return verdict
    record = registry.get(target)
    expected = GATE_STAGE[gate]
    if record.stage != expected:
        done = record.stage in STAGE_ORDER and STAGE_ORDER.index(record.stage) > STAGE_ORDER.index(expected)
        verdict = GateVerdict(
            gate, target, prod_version, done, "nothing",
            f"{target} is in stage {record.stage!r}, "
            + ("already past this gate" if done else f"not {expected!r}: not checked"),
        )
        write_verdict(paths, verdict)
        return verdict

    rows = pd.read_parquet(holdout_path(paths))
    candidate = _load(registry, target)
    production = _load(registry, prod_version) if prod_version and prod_version != target else None
    if gate == "offline":
        drift_path = paths.metrics / "drift.json"
        drift = json.loads(drift_path.read_text(encoding="utf-8")) if drift_path.exists() else None
        verdict = offline_gate(
            rows, candidate, production, p,
            quality=ingestion_quality(paths),
            drift=drift,
            trained_until=str((record.metrics or {}).get("trained_until", "")),
        )
    elif gate == "shadow":
        verdict, scores = shadow_gate(rows, candidate, production, p)
        append_score_log(paths, scores, f"shadow-{target}")
    else:
        verdict = canary_gate(rows, candidate, production, p)
    write_verdict(paths, verdict)
    note = f"{gate} gate: {verdict.reason}"
    if verdict.decision in ("pass", "promote"):
        registry.promote(target, NEXT_STAGE[gate], reason=note, now=now)
    elif verdict.decision in ("fail", "rollback"):
        registry.archive(target, reason=note, now=now)
    log.info("%s gate for %s: %s: %s", gate, target, verdict.decision, verdict.reason)
    return verdict


def run_all(
    params: Mapping[str, Any], paths: DataPaths, *, version: str | None, now: datetime
) -> list[GateVerdict]:
    """The gates in order for one model, stopping at the first that does not pass."""
    out = []
    for gate in GATES:
        v = run_gate(gate, params, paths, version=version, now=now)
        out.append(v)
        version = version or (v.candidate or None)
        if not v.passed:
            break
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Promotion gates: offline, shadow, canary.")
    parser.add_argument("gate", choices=(*GATES, "all"))
    parser.add_argument("--version", default=None, help="model version (default: the gate's stage)")
    parser.add_argument("--params", default=None)
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_params(args.params)
    paths = DataPaths(Path(args.root)) if args.root else DataPaths()
    now = datetime.now(UTC)
    verdicts = (
        run_all(params, paths, version=args.version, now=now)
        if args.gate == "all"
        else [run_gate(args.gate, params, paths, version=args.version, now=now)]
    )
    for v in verdicts:
        print(f"{v.gate:8s} {v.candidate or '-':>16s}  {v.decision:8s} {v.reason}")
    return 0 if verdicts[-1].passed else 3


if __name__ == "__main__":
    raise SystemExit(main())
