"""What the promotion gates share: their parameters, scoring of the replayed requests, the
request groups, top-k selection, the score log rows and the verdict of a promotion gate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core.config import Params, Promote, Seed
from components.core.verdict import INSUFFICIENT_EVIDENCE, Check, Verdict

if TYPE_CHECKING:
    from components.ranking.model import RankerModel

REPLAY_EVIDENCE = (
    "replay of held-out events: the latest request groups of the training data, outcomes from "
    "the users' recorded events in the following window (data/ranking/holdout.parquet); "
    "not live traffic"
)


class PromoteParams(Promote):
    """The ``promote`` section of params.yaml (``k`` and the ``offline``, ``shadow`` and
    ``canary`` gates' subsections, checked by :class:`Promote`) plus ``base.seed``."""

    seed: Seed

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> PromoteParams:
        """The ``promote`` section with ``base.seed``."""
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.promote.model_dump())


def promotion_verdict(
    gate: str,
    candidate: str | None,
    production: str | None,
    checks: Iterable[Check],
    *,
    passed_reason: str,
    metrics: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    evidence: str = "",
    decision: str = "",
) -> Verdict:
    """A promotion gate's verdict: the model versions and the evidence go to ``details``
    (``candidate``, ``production``, ``evidence`` in the JSON, as its readers expect). Without a
    ``decision``, one that failed only for missing evidence decides ``insufficient_evidence``
    (the model stays where it is) rather than ``fail`` (archived)."""
    verdict = Verdict.from_checks(
        gate,
        checks,
        passed_reason=passed_reason,
        metrics=metrics,
        thresholds=thresholds,
        details={"candidate": candidate, "production": production, "evidence": evidence},
    )
    if not decision and verdict.could_not_judge:
        decision = INSUFFICIENT_EVIDENCE
    return replace(verdict, decision=decision) if decision else verdict


def scores_of(model: RankerModel, rows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The model's final scores on ``rows``; feature columns the rows lack are NaN (returned)."""
    missing = [c for c in model.feature_cols if c not in rows.columns]
    if missing:
        rows = rows.assign(**{c: np.nan for c in missing})
    return np.asarray(model.predict(rows), dtype=np.float64), missing


def finite_scores(name: str, scores: np.ndarray, who: str) -> Check:
    """Every score finite (a NaN score would rank anywhere and compare as nothing)."""
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        return Check(name, False, f"{who} produced non-finite scores ({bad} of {len(scores)})")
    return Check(name, True, f"{who} scores are finite")


def request_groups(rows: pd.DataFrame) -> list[np.ndarray]:
    """Row positions of each request group, groups in sorted order."""
    codes, _ = pd.factorize(rows["group_id"], sort=True)
    order = np.argsort(codes, kind="mergesort")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds)


def id_tiebreak(rows: pd.DataFrame) -> np.ndarray:
    """A dense rank of the content ids: ties in score are broken by id, the same in every gate."""
    return rows["content_id"].astype(str).rank(method="dense").to_numpy()


def top_k(scores: np.ndarray, idx: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """Positions (from ``idx``) of the k best scores, ties broken by ``tiebreak`` ascending."""
    order = np.lexsort((tiebreak[idx], -scores[idx]))
    return idx[order[:k]]


def score_log(rows: pd.DataFrame, scores: np.ndarray, version: str, role: str) -> pd.DataFrame:
    """Score log rows (read by drift monitoring's prediction family) for one model."""
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
