"""The offline gate: candidate vs production on the held-out requests, data quality, drift.

* NDCG@k (engaged) and AUC of the candidate vs production on the held-out rows, with the
  margins of ``promote.offline``; the first model (no production) needs the AUC floor
  ``promote.offline.min_auc`` instead.
* The data-quality record of ingestion (``metrics/ingest.json``): reconciled, quarantine rate.
* The drift verdict (``metrics/drift.json``): every piece of its evidence present, and no drift
  in data newer than the candidate's training data (``trained_until`` of its registry record).

Fail closed: a missing record, a metric that cannot be computed or is not finite, a drift
verdict that could not test a required family, a drift verdict without its window end or a
candidate without ``trained_until``: each is a failed check naming what to run. A verdict that
failed only for missing evidence decides ``insufficient_evidence`` (the candidate stays a
candidate) rather than ``fail``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.verdict import NO_DRIFT, Check, Verdict, at_least, at_most, finite, missing
from components.deploy.gates.common import (
    REPLAY_EVIDENCE,
    PromoteParams,
    finite_scores,
    id_tiebreak,
    promotion_verdict,
    request_groups,
    scores_of,
    top_k,
)

if TYPE_CHECKING:
    from components.ranking.model import RankerModel

DRIFT_FIX = "run `dvc repro drift` (or the monitor_drift DAG)"


def offline_metrics(rows: pd.DataFrame, scores: np.ndarray, k: int) -> dict[str, float | None]:
    """NDCG@k on ``label_engaged`` over groups with a positive, and the engaged AUC; None for a
    metric that cannot be computed (no positive, one class only, or non-finite scores)."""
    from sklearn.metrics import roc_auc_score

    from components.evaluation.metrics import ranking_metrics

    y = rows["label_engaged"].to_numpy(dtype=np.float64)
    tiebreak = id_tiebreak(rows)
    recs: dict[int, list[int]] = {}
    rel: dict[int, set[int]] = {}
    for g, idx in enumerate(request_groups(rows)):
        pos = idx[y[idx] > 0]
        if len(pos):
            recs[g] = top_k(scores, idx, k, tiebreak).tolist()
            rel[g] = set(pos.tolist())
    scorable = bool(np.isfinite(scores).all())
    ndcg = finite(ranking_metrics(recs, rel, ks=(k,))[f"ndcg@{k}"]) if rel and scorable else None
    auc = finite(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 and scorable else None
    return {f"ndcg@{k}": ndcg, "auc": auc, "groups_with_positive": float(len(rel))}


def _versus(name: str, label: str, cand: Any, prod: Any, margin: float) -> Check:
    """candidate - production >= margin, failing when either side is missing or not finite."""
    c, p = finite(cand), finite(prod)
    if c is None or p is None:
        return Check(
            name,
            False,
            f"{label} cannot be compared (candidate {cand}, production {prod}): the held-out rows "
            "need positive and negative labels and both models finite scores",
        )
    d = c - p
    ok = d >= margin
    sign = ">=" if ok else "<"
    return Check(
        name, ok, f"{label} {c:.4f} vs production {p:.4f} (Δ {d:+.4f} {sign} {margin:+.4f})"
    )


def quality_checks(quality: Mapping[str, Any], p: PromoteParams) -> list[Check]:
    """Ingestion reconciled and its quarantine rate under the ceiling; an absent record fails."""
    if not quality:
        return [
            missing(
                "ingestion_reconciled",
                "no ingestion record (metrics/ingest.json not found): ingestion counts cannot be "
                "reconciled",
                "run `dvc repro ingest`",
            )
        ]
    reconciled = bool(quality.get("reconciled", False))
    return [
        Check(
            "ingestion_reconciled",
            reconciled,
            "ingestion counts reconcile"
            if reconciled
            else "ingestion counts do not reconcile (metrics/ingest.json)",
        ),
        at_most(
            "quarantine_rate",
            quality.get("quarantine_rate"),
            p.offline.max_quarantine_rate,
            "quarantine rate",
        ),
    ]


def drift_check(
    drift: Mapping[str, Any] | None, trained_until: str
) -> tuple[Check, dict[str, Any]]:
    """The drift verdict holds all its evidence and finds no drift in data newer than the
    candidate's training data (module docstring); the metrics it was judged on. Without the
    verdict, a complete one, its window end or the candidate's ``trained_until`` the check
    fails with ``evidence_missing``: a verdict that cannot be placed against the candidate's
    training data says nothing about it, drift or not."""
    if drift is None:
        return missing("drift", "no drift verdict (metrics/drift.json not found)", DRIFT_FIX), {}
    try:
        v = Verdict.from_dict(drift)
    except ValueError as exc:
        return missing("drift", f"metrics/drift.json is not a drift verdict ({exc})", DRIFT_FIX), {}
    end = str(((v.details.get("windows") or {}).get("current") or {}).get("end") or "")
    metrics = {
        "passed": v.passed,
        "drift_detected": v.details.get("drift_detected"),
        "current_end": end,
        "trained_until": trained_until,
    }
    if v.gate != "drift":
        return missing("drift", f"metrics/drift.json holds a {v.gate!r} verdict", DRIFT_FIX), metrics
    gaps = [c.reason for c in v.failed_checks if not c.name.endswith(NO_DRIFT)]
    if gaps:
        return missing("drift", "drift verdict incomplete: " + "; ".join(gaps), DRIFT_FIX), metrics
    if not trained_until:
        return missing(
            "drift",
            "the candidate's registry record has no trained_until: the drift verdict cannot be "
            "placed against its training data",
            "register it from a `dvc repro ranking` run (lineage records trained_until)",
        ), metrics
    if not end:
        return missing("drift", "the drift verdict has no current window end", DRIFT_FIX), metrics
    try:
        newer = pd.Timestamp(end) > pd.Timestamp(trained_until)
    except (ValueError, TypeError) as exc:
        return Check(
            "drift",
            False,
            f"cannot compare drift window end {end!r} with trained_until {trained_until!r}: {exc}",
            evidence_missing=True,
        ), metrics
    found = [c.name.removesuffix(NO_DRIFT) for c in v.failed_checks]
    if not found:
        return Check("drift", True, f"no drift in the window ending {end}"), metrics
    if newer:
        return Check(
            "drift",
            False,
            f"drift detected in {', '.join(found)} in data up to {end}, newer than the "
            f"candidate's training data ({trained_until})",
        ), metrics
    return Check(
        "drift", True, f"drift only in data up to {end}, which the candidate was trained on"
    ), metrics


def offline_gate(
    rows: pd.DataFrame,
    candidate: RankerModel,
    production: RankerModel | None,
    p: PromoteParams,
    *,
    quality: Mapping[str, Any],
    drift: Mapping[str, Any] | None,
    trained_until: str = "",
) -> Verdict:
    """Candidate vs production on the held-out rows, data quality and drift (module docstring).
    ``drift`` is the drift verdict's JSON record, None when there is none (a failed check)."""
    k = p.k
    cand_scores, cand_missing = scores_of(candidate, rows)
    cm = offline_metrics(rows, cand_scores, k)
    groups = int(rows["group_id"].nunique())
    metrics: dict[str, Any] = {"candidate": cm, "rows": len(rows), "groups": groups}
    if cand_missing:
        metrics["candidate_missing_features"] = cand_missing
    thresholds: dict[str, Any] = {
        "min_delta_ndcg": p.offline.min_delta_ndcg,
        "min_delta_auc": p.offline.min_delta_auc,
        "max_quarantine_rate": p.offline.max_quarantine_rate,
        "min_groups": p.offline.min_groups,
    }
    enough = groups >= p.offline.min_groups
    checks = [
        Check(
            "held_out_groups",
            enough,
            f"{groups} held-out groups ({'>=' if enough else '<'} {p.offline.min_groups})",
            evidence_missing=not enough,
        ),
        finite_scores("candidate_scores", cand_scores, "candidate"),
    ]
    if production is not None:
        prod_scores, prod_missing = scores_of(production, rows)
        pm = offline_metrics(rows, prod_scores, k)
        metrics["production"] = pm
        if prod_missing:
            metrics["production_missing_features"] = prod_missing
        metrics["delta"] = {key: _delta(cm[key], pm[key]) for key in (f"ndcg@{k}", "auc")}
        checks += [
            _versus(
                "ndcg_vs_production",
                f"NDCG@{k}",
                cm[f"ndcg@{k}"],
                pm[f"ndcg@{k}"],
                p.offline.min_delta_ndcg,
            ),
            _versus("auc_vs_production", "AUC", cm["auc"], pm["auc"], p.offline.min_delta_auc),
        ]
        passed_reason = (
            f"NDCG@{k} {_fmt(cm[f'ndcg@{k}'])} and AUC {_fmt(cm['auc'])} within the margins of "
            "production"
        )
    else:
        thresholds["min_auc"] = p.offline.min_auc
        floor = at_least("auc_floor", cm["auc"], p.offline.min_auc, "first model: AUC")
        if not floor.passed:
            floor = Check(
                "auc_floor", False, f"first model: AUC {cm['auc']} below the floor {p.offline.min_auc}"
            )
        checks.append(floor)
        passed_reason = f"first model: AUC {_fmt(cm['auc'])} ≥ {p.offline.min_auc}"
    metrics["quality"] = dict(quality)
    checks += quality_checks(quality, p)
    drift_ok, metrics["drift"] = drift_check(drift, trained_until)
    checks.append(drift_ok)
    return promotion_verdict(
        "offline",
        candidate.version,
        production.version if production is not None else None,
        checks,
        passed_reason=passed_reason + "; data quality and drift checks passed",
        metrics=metrics,
        thresholds=thresholds,
        evidence=REPLAY_EVIDENCE,
    )


def _delta(a: Any, b: Any) -> float | None:
    fa, fb = finite(a), finite(b)
    return None if fa is None or fb is None else fa - fb


def _fmt(x: Any) -> str:
    v = finite(x)
    return "n/a" if v is None else f"{v:.4f}"
