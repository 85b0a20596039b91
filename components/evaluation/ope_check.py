"""Simulated logged bandit data with a known true policy value, to measure the off-policy
estimators' bias and interval coverage (:func:`coverage_study`; unit tests and
``benchmarks/bench_experiments.py``).

Each context offers ``n_actions`` contents with feature vectors; the true engagement
probability is ``sigmoid(phi . theta + bias)``. Production logs with ε-greedy on a noisy
scorer (``theta`` plus noise) and records its propensity; the candidate is ε-greedy on the
true direction (better by construction). The true value of the candidate is its expected
engagement over a large fresh sample of contexts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.evaluation.ope import ESTIMATORS, estimate, fit_reward_model


@dataclass(frozen=True)
class BanditWorld:
    theta: np.ndarray
    theta_logging: np.ndarray
    n_actions: int
    bias: float = -1.5
    eps_logging: float = 0.3
    eps_target: float = 0.1

    @classmethod
    def make(
        cls, rng: np.random.Generator, dim: int = 5, n_actions: int = 10, noise: float = 1.0
    ) -> BanditWorld:
        theta = rng.normal(size=dim)
        return cls(theta, theta + noise * rng.normal(size=dim), n_actions)

    def contexts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.normal(size=(n, self.n_actions, len(self.theta)))

    def p_true(self, phi: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(phi @ self.theta + self.bias)))

    def policy(self, phi: np.ndarray, direction: np.ndarray, eps: float) -> np.ndarray:
        """ε-greedy action probabilities (n, n_actions)."""
        s = phi @ direction
        probs = np.full(s.shape, eps / self.n_actions)
        probs[np.arange(len(s)), np.argmax(s, axis=1)] += 1.0 - eps
        return probs

    def true_value(self, rng: np.random.Generator, n: int = 200_000) -> float:
        phi = self.contexts(rng, n)
        return float(
            (self.policy(phi, self.theta, self.eps_target) * self.p_true(phi)).sum(axis=1).mean()
        )

    def logs(self, rng: np.random.Generator, n: int, seed: int) -> tuple[pd.DataFrame, float]:
        """The decision frame of ``n`` logged contexts and production's on-policy average."""
        phi = self.contexts(rng, n)
        pi0 = self.policy(phi, self.theta_logging, self.eps_logging)
        a = np.minimum((pi0.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), self.n_actions - 1)
        rows = np.arange(n)
        r = (rng.random(n) < self.p_true(phi[rows, a])).astype(np.float64)
        model = fit_reward_model(phi[rows, a], r.astype(np.int64), seed)
        q_all = model.predict_proba(phi.reshape(-1, phi.shape[-1]))[:, 1].reshape(n, self.n_actions)
        pie = self.policy(phi, self.theta, self.eps_target)
        frame = pd.DataFrame(
            {
                "group": rows,
                "reward": r,
                "pi_b": pi0[rows, a],
                "pi_e": pie[rows, a],
                "q_hat": q_all[rows, a],
                "v_hat": (pie * q_all).sum(axis=1),
            }
        )
        return frame, float(r.mean())


def coverage_study(
    seed: int, runs: int, n: int, n_boot: int = 200, alpha: float = 0.05
) -> pd.DataFrame:
    """Per estimator over ``runs`` simulated logs: true value, mean estimate, bias, RMSE and the
    share of (1 - alpha) intervals that cover the true value."""
    rng = np.random.default_rng(seed)
    world = BanditWorld.make(rng)
    truth = world.true_value(rng)
    recs = []
    for i in range(runs):
        frame, logged = world.logs(rng, n, seed + i)
        est = estimate(frame, n_boot, alpha, rng)
        recs += [(k, e.value, e.ci_low <= truth <= e.ci_high, logged) for k, e in est.items()]
    f = pd.DataFrame(recs, columns=["estimator", "value", "covered", "logged"])
    out = f.groupby("estimator").agg(
        mean_estimate=("value", "mean"),
        coverage=("covered", "mean"),
        logged_value=("logged", "mean"),
    )
    out["true_value"] = truth
    out["bias"] = out["mean_estimate"] - truth
    out["rmse"] = f.groupby("estimator")["value"].apply(
        lambda v: float(np.sqrt(np.mean((v - truth) ** 2)))
    )
    return out.loc[list(ESTIMATORS)]
