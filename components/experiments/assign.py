"""Assignment of users to experiment arms by a salted hash of the user id.

A user's point on [0, 1) is the first 8 bytes of SHA-256 of ``salt:user_id`` (the canary split,
:func:`components.deploy.gates.canary.in_canary`, uses the same map). Arms take consecutive
intervals of [0, 1) in their declared order, sized by their shares, so a user stays in one arm
for the life of an experiment and experiments with different salts are independent of each
other. Assignment is a pure function of the id: it is never logged, the analysis recomputes it.
This module is imported by serving: keep it free of heavy imports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from components.core.config import Experiment, Experiments


def unit_interval(user_ids: Iterable[str], salt: str) -> np.ndarray:
    """Each user's deterministic point on [0, 1): SHA-256 of ``salt:user_id``."""
    return np.array(
        [
            int.from_bytes(hashlib.sha256(f"{salt}:{u}".encode()).digest()[:8], "big") / 2.0**64
            for u in user_ids
        ],
        dtype=np.float64,
    )


def assign_arms(
    user_ids: Sequence[str], salt: str, arms: Sequence[tuple[str, float]]
) -> np.ndarray:
    """The arm name of each user: consecutive intervals of [0, 1) sized by the arms' shares."""
    names = [a for a, _ in arms]
    edges = np.cumsum([s for _, s in arms])
    if not np.isclose(edges[-1], 1.0):
        raise ValueError(f"arm shares must sum to 1, got {edges[-1]}")
    idx = np.searchsorted(edges, unit_interval(user_ids, salt), side="right")
    return np.asarray(names, dtype=object)[np.minimum(idx, len(names) - 1)]


def experiment_arms(exp: Experiment, user_ids: Sequence[str]) -> np.ndarray:
    """Arms of ``user_ids`` in one configured experiment."""
    return assign_arms(user_ids, exp.salt, [(n, a.share) for n, a in exp.arms.items()])


def serving_overrides(experiments: Experiments, user_id: str) -> dict[str, Any]:
    """The serving keys the running experiments set for ``user_id`` ({} = params.yaml as is).
    Two running experiments never set the same key (checked here, so a clash fails loudly)."""
    out: dict[str, Any] = {}
    for exp in experiments.running:
        arm = str(experiment_arms(exp, [user_id])[0])
        for key, value in exp.arms[arm].serving.items():
            if key in out:
                raise ValueError(f"serving key {key!r} is set by more than one running experiment")
            out[key] = value
    return out


def user_arms(experiments: Experiments, user_id: str) -> Mapping[str, str]:
    """{experiment name: arm} of one user."""
    return {e.name: str(experiment_arms(e, [user_id])[0]) for e in experiments.running}
