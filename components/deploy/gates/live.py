"""Live evidence for the shadow and canary gates, from what serving logged.

Canary (:func:`live_canary_users`): the impression log's rows of the canary arm served by the
candidate and of the production arm served by production, each joined with the user's events
on the content within ``experiments.label_window_s``
(:func:`components.experiments.outcomes.labelled_impressions`), aggregated per user and arm in
the frame :func:`components.deploy.gates.canary.canary_decision` reads. Impressions whose label
window has not closed yet (after ``now - window``) wait for the next run. Both arms are read
over the same period, from the candidate's first canary impression on: engagement drifts from
day to day (novelty, fatigue, the catalogue), so production's impressions from before the
canary started would compare other days, not other models (in ``make simulate`` that alone
turned a 0.3-point daily gap into a 3.4-point "significant" one).

Shadow (:func:`live_shadow_metrics`): the rows where the candidate scored as the shadow
(``shadow_version``): per request, the Spearman correlation of its scores with the served
model's (``model_score``) over the shown items, the KS statistic of both standardised score
distributions, and the share of rows where the shadow failed (version logged, no score).

Either returns None when the log has no such rows: the gate then falls back to the replay,
labelled as such in its verdict.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from components.core.verdict import Check, at_least, finite
from components.serving.feed import CANARY, PRODUCTION

LIVE_CANARY_EVIDENCE = (
    "live traffic: impressions of the canary arm (candidate) and the production arm from the "
    "impression log, outcomes from the event stream within the label window"
)
LIVE_SHADOW_EVIDENCE = (
    "live shadow scores from the impression log (scored on served requests, never shown)"
)
NO_LIVE = "; no live traffic for this model yet, so the replay decides"


def live_canary_users(
    impressions: pd.DataFrame,
    events: pd.DataFrame,
    candidate: str,
    production: str,
    window_s: float,
    now: datetime,
) -> pd.DataFrame | None:
    """Per user: ``canary`` (bool), impressions, engagement and negative rates of the live arms;
    None when the candidate has served no impression whose label window has closed."""
    from components.experiments.outcomes import labelled_impressions, per_user

    if impressions.empty:
        return None
    imp = impressions[~impressions["degraded"].fillna(False).astype(bool)]
    ts = pd.to_datetime(imp["timestamp"], utc=True)
    closed = ts <= pd.Timestamp(now) - pd.Timedelta(seconds=window_s)
    canary = (imp["arm"] == CANARY) & (imp["model_version"] == candidate)
    prod = (imp["arm"] == PRODUCTION) & (imp["model_version"] == production)
    if not (closed & canary).any():
        return None
    imp = imp[closed & (canary | prod) & (ts >= ts[canary].min())]  # the canary's period only
    users = per_user(labelled_impressions(imp, events, window_s), by=["arm"])
    users["canary"] = users["arm"] == CANARY
    return users.drop(columns="arm")


def live_shadow_metrics(impressions: pd.DataFrame, candidate: str) -> dict[str, Any] | None:
    """Agreement of the live shadow scores with the served model's (module docstring); None
    when the candidate never scored as the shadow."""
    from scipy.stats import ks_2samp, spearmanr

    if impressions.empty or "shadow_version" not in impressions:
        return None
    rows = impressions[
        (impressions["shadow_version"] == candidate) & impressions["model_score"].notna()
    ]
    if rows.empty:
        return None
    failed = rows["shadow_score"].isna()
    ok = rows[~failed]
    corr = []
    for _, g in ok.groupby("request_id", sort=False):
        s, m = g["shadow_score"].to_numpy(float), g["model_score"].to_numpy(float)
        if len(g) >= 3 and np.std(s) > 0 and np.std(m) > 0:
            corr.append(float(spearmanr(s, m).statistic))

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() or 1.0)

    ks = (
        ks_2samp(z(ok["shadow_score"].to_numpy(float)), z(ok["model_score"].to_numpy(float)))
        if len(ok)
        else None
    )
    return {
        "live_rows": len(rows),
        "live_requests": int(rows["request_id"].nunique()),
        "live_shadow_failure_rate": float(failed.mean()),
        "live_compared_requests": len(corr),
        "live_mean_rank_corr": finite(np.mean(corr)) if corr else None,
        "live_score_ks_statistic": finite(ks.statistic) if ks is not None else None,
        "live_shadow_score_mean": finite(ok["shadow_score"].mean()) if len(ok) else None,
        "live_served_score_mean": finite(ok["model_score"].mean()) if len(ok) else None,
    }


def live_shadow_checks(m: dict[str, Any], min_rank_corr: float) -> list[Check]:
    """The shadow never failed on a served request, and its live ordering does not contradict
    the served model's (the replay's floor)."""
    rate = m["live_shadow_failure_rate"]
    return [
        Check(
            "live_shadow_errors",
            rate == 0,
            f"the shadow scored every one of {m['live_rows']} live rows"
            if rate == 0
            else f"the shadow failed on {rate:.1%} of {m['live_rows']} live rows",
        ),
        at_least(
            "live_rank_corr",
            m["live_mean_rank_corr"],
            min_rank_corr,
            "live mean rank correlation with the served model",
        ),
    ]
