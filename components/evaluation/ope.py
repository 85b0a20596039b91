"""Off-policy evaluation of a candidate ranker on production's logged impressions: IPS, SNIPS
and doubly robust (DR) estimates of the candidate's engagement rate per impression, with
bootstrap intervals (requests resampled), before any of its traffic is live.

Estimators (one logged decision ``i``: action ``a_i``, reward ``r_i``, logging propensity
``p_i = pi_0(a_i | x_i)``, target probability ``pi_e(a_i | x_i)``, weight ``w_i = pi_e / p_i``):

* IPS ``mean(w r)`` (unbiased when ``pi_0 > 0`` wherever ``pi_e > 0``);
* SNIPS ``sum(w r) / sum(w)`` (self-normalised: biased in small samples, far lower variance);
* DR ``mean(v_hat + w (r - q_hat))`` with a reward model ``q_hat(x, a)`` and its value under
  the target, ``v_hat(x) = sum_a pi_e(a | x) q_hat(x, a)`` (unbiased if either the
  propensities or the reward model are right).

On the impression log (:func:`impression_decisions`) each slot is one decision: its item and
the logged propensity (production's probability of that item in that slot given the earlier
slots, ε-greedy / UCB). The candidate's policy is ε-greedy (``experiments.ope_epsilon``) over
the request's logged items not yet placed: its top-scored remaining item with probability
``1 - ε``, else uniform. Only the logged items have a logged feature row, so the candidate's
support is restricted to them: a content production never showed in the request has no
evidence (the usual support condition of IPS); SNIPS and DR are the estimates to read.

Hand-written: the Open Bandit Pipeline (``obp``) implements these estimators, but its latest
release (0.5.5) pins old stacks: a dry-run install into this environment downgrades numpy to
1.22, pandas to 1.5, scikit-learn to 1.0, scipy to 1.7 and pulls torch 1.13 with CUDA, which
cannot join this lock; the estimators themselves are a few vectorised NumPy lines. The reward
model is scikit-learn's logistic regression.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dr")
#: columns of a decision frame (:func:`estimate`)
DECISION_COLUMNS: tuple[str, ...] = ("group", "reward", "pi_b", "pi_e", "q_hat", "v_hat")


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


def _group_sums(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per group: sums of (1, w r, w, dr term) as an (n_groups, 4) matrix, and the codes."""
    w = d["pi_e"].to_numpy(np.float64) / d["pi_b"].to_numpy(np.float64)
    r = d["reward"].to_numpy(np.float64)
    dr = d["v_hat"].to_numpy(np.float64) + w * (r - d["q_hat"].to_numpy(np.float64))
    codes, _ = pd.factorize(d["group"])
    terms = np.column_stack([np.ones(len(d)), w * r, w, dr])
    sums = np.zeros((codes.max() + 1, 4))
    np.add.at(sums, codes, terms)
    return sums, codes


def _values(sums: np.ndarray) -> np.ndarray:
    """(…, 4) sums -> (…, 3) IPS, SNIPS, DR."""
    n, wr, w, dr = sums[..., 0], sums[..., 1], sums[..., 2], sums[..., 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([wr / n, np.where(w > 0, wr / w, np.nan), dr / n], axis=-1)


def estimate(
    decisions: pd.DataFrame, n_boot: int, alpha: float, rng: np.random.Generator
) -> dict[str, Estimate]:
    """IPS, SNIPS and DR with percentile bootstrap intervals (groups resampled with
    replacement: the decisions of one request are not independent)."""
    missing = [c for c in DECISION_COLUMNS if c not in decisions]
    if missing:
        raise KeyError(f"decisions need columns {missing}")
    if len(decisions) == 0:
        raise ValueError("no logged decisions to evaluate")
    pb = decisions["pi_b"].to_numpy(np.float64)
    if not (np.isfinite(pb).all() and (pb > 0).all()):
        raise ValueError("logging propensities must be finite and > 0")
    sums, _ = _group_sums(decisions)
    point = _values(sums.sum(axis=0))
    counts = rng.multinomial(len(sums), np.full(len(sums), 1.0 / len(sums)), size=n_boot)
    boot = _values(counts @ sums)
    lo, hi = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return {
        name: Estimate(float(point[i]), float(lo[i]), float(hi[i]))
        for i, name in enumerate(ESTIMATORS)
    }


def epsilon_greedy_probs(scores: np.ndarray, available: np.ndarray, epsilon: float) -> np.ndarray:
    """pi(a) over the ``available`` actions: ``1 - epsilon`` on the best score (first on ties),
    ``epsilon`` spread uniformly; 0 elsewhere."""
    avail = np.asarray(available, dtype=bool)
    m = int(avail.sum())
    out = np.where(avail, epsilon / max(m, 1), 0.0)
    if m:
        best = int(np.argmax(np.where(avail, scores, -np.inf)))
        out[best] += 1.0 - epsilon
    return out


def impression_decisions(
    labelled: pd.DataFrame, cand_scores: np.ndarray, q_hat: np.ndarray, epsilon: float
) -> pd.DataFrame:
    """The decision frame of logged impressions (``request_id``, ``position``, ``propensity``,
    ``label_engaged``), the candidate's scores and the reward model's predictions of the same
    rows (module docstring: the candidate's ε-greedy over each request's remaining logged items)."""
    f = labelled.assign(_s=np.asarray(cand_scores, np.float64), _q=np.asarray(q_hat, np.float64))
    f = f.sort_values(["request_id", "position"], kind="stable")
    pi_e = np.empty(len(f))
    v_hat = np.empty(len(f))
    i = 0
    for _, g in f.groupby("request_id", sort=False):
        s, q = g["_s"].to_numpy(), g["_q"].to_numpy()
        for j in range(len(g)):
            avail = np.arange(len(g)) >= j
            probs = epsilon_greedy_probs(s, avail, epsilon)
            pi_e[i + j] = probs[j]
            v_hat[i + j] = float(probs @ q)
        i += len(g)
    return pd.DataFrame(
        {
            "group": f["request_id"].to_numpy(),
            "reward": (f["label_engaged"].to_numpy(np.float64) > 0).astype(np.float64),
            "pi_b": f["propensity"].to_numpy(np.float64),
            "pi_e": pi_e,
            "q_hat": f["_q"].to_numpy(),
            "v_hat": v_hat,
        }
    )


def fit_reward_model(X: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """P(engaged | logged features): standardised logistic regression (NaN -> column mean)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y)) < 2:
        raise ValueError("the logged outcomes are all the same: no reward model can be fitted")
    model = make_pipeline(
        SimpleImputer(keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=500, random_state=seed),
    )
    return model.fit(X, y)


# -------------------------------------------------------------------------------- stage


def evaluate_candidate(
    labelled: pd.DataFrame,
    X: np.ndarray,
    cand_scores: np.ndarray,
    cfg: Mapping[str, Any],
    seed: int,
) -> dict[str, Any]:
    """OPE of the candidate on production's labelled impressions ``labelled`` (their feature
    matrix ``X``): the three estimates and production's own on-policy engagement rate."""
    y = (labelled["label_engaged"].to_numpy() > 0).astype(np.int64)
    rng = np.random.default_rng(seed)
    q = fit_reward_model(X, y, seed).predict_proba(X)[:, 1]
    d = impression_decisions(labelled, cand_scores, q, float(cfg["epsilon"]))
    est = estimate(d, int(cfg["n_boot"]), float(cfg["alpha"]), rng)
    w = d["pi_e"] / d["pi_b"]
    return {
        "impressions": len(d),
        "requests": int(d["group"].nunique()),
        "production_engagement_rate": float(y.mean()),
        "estimates": {k: v.to_dict() for k, v in est.items()},
        "max_weight": float(w.max()),
        "effective_sample_size": float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0,
    }


def run(params: Mapping[str, Any], paths: Any, version: str | None = None) -> dict[str, Any]:
    """OPE of ``version`` (default: the registry's newest candidate / shadow / canary) on the
    production arm's logged impressions; written to ``metrics/ope.json``."""
    from components.core.config import Params
    from components.core.io import write_metrics
    from components.deploy.registry import ModelRegistry
    from components.experiments.outcomes import (
        labelled_impressions,
        read_impression_log,
        read_stream,
    )
    from components.online_update.rows import snapshot_matrix

    cfg = Params.of(params)
    with ModelRegistry(paths) as registry:
        prod = registry.deployment().production
        if version is None:
            rec = next(
                (
                    registry.latest(s)
                    for s in ("candidate", "shadow", "canary")
                    if registry.latest(s)
                ),
                None,
            )
            version = rec.version if rec is not None else None
        if prod is None or version is None:
            raise SystemExit(
                "off-policy evaluation needs a production model and a candidate in the registry"
            )
        cols = [
            "features",
            "propensity",
            "position",
            "request_id",
            "user_id",
            "content_id",
            "model_version",
            "arm",
        ]
        imp = read_impression_log(paths.of("impressions"), [*cols, "timestamp", "degraded"])
        imp = imp[(imp["arm"] == "production") & ~imp["degraded"].fillna(False).astype(bool)]
        candidate = registry.load(version)
        known = {v.version: list(registry.load(v.version).feature_cols) for v in [prod]}
        X, ok, dropped = snapshot_matrix(imp, candidate.feature_cols, known)
        imp, X = imp[ok].reset_index(drop=True), X[ok]
        if len(imp) == 0:
            raise SystemExit(
                f"no usable production impressions with feature rows (dropped: {dropped})"
            )
        labelled = labelled_impressions(
            imp, read_stream(paths.of("stream_events")), cfg.experiments.label_window_s
        )
        scores = np.asarray(
            candidate.predict(pd.DataFrame(X, columns=candidate.feature_cols)), np.float64
        )
        e = cfg.experiments
        out = evaluate_candidate(
            labelled,
            X,
            scores,
            {"epsilon": e.ope_epsilon, "n_boot": e.ope_bootstrap, "alpha": e.alpha},
            cfg.base.seed,
        )
        out.update(candidate=version, production=prod.version, dropped=dropped)
    write_metrics(paths.of("metrics_ope"), out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from components.core.config import stage_context

    parser = argparse.ArgumentParser(
        description="Off-policy evaluation of a candidate on the impression log."
    )
    parser.add_argument(
        "--version", default=None, help="candidate version (default: newest pre-production)"
    )
    parser.add_argument("--params", default=None)
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    out = run(params, paths, args.version)
    print(
        f"candidate {out['candidate']} vs production {out['production']} on {out['impressions']} impressions"
    )
    print(f"  production (on-policy) engagement rate {out['production_engagement_rate']:.4f}")
    for name, e in out["estimates"].items():
        print(f"  {name:6s} {e['value']:.4f}  [{e['ci_low']:.4f}, {e['ci_high']:.4f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
