"""The statistics of an experiment: effects with confidence intervals (Welch's t on per-user
values: the user is the randomisation unit), the minimum sample size for a minimum detectable
effect (statsmodels' power analysis of the two-sample t-test), the sample-ratio-mismatch
check (Pearson's chi-square of the users per arm against the configured shares), and Holm's
correction across the treatment arms of an A/B/n test (statsmodels ``multipletests``).

The tests are fixed-horizon: the report says ``continue`` until every arm has the minimum
sample size, and only then reads significance, so repeated looks before it cannot inflate
the false-positive rate (the A/A test in tests/unit/experiments measures that rate)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Effect:
    """``treatment - control`` of one metric's per-user means, its (1 - alpha) CI and p-value."""

    mean_treatment: float
    mean_control: float
    diff: float
    relative: float | None  # diff / mean_control (None when the control mean is 0)
    ci_low: float
    ci_high: float
    p_value: float  # two-sided
    n_treatment: int
    n_control: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def welch_effect(treatment: np.ndarray, control: np.ndarray, alpha: float) -> Effect:
    """Welch's t-test of the difference of means; with no variance in either arm the difference
    is exact (CI = point, p = 0 when it is non-zero, else 1)."""
    from scipy import stats

    t = np.asarray(treatment, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    if len(t) < 2 or len(c) < 2:
        raise ValueError("each arm needs at least 2 users")
    mt, mc = float(t.mean()), float(c.mean())
    diff = mt - mc
    rel = diff / mc if mc else None
    if np.ptp(t) == 0 and np.ptp(c) == 0:
        return Effect(mt, mc, diff, rel, diff, diff, 0.0 if diff else 1.0, len(t), len(c))
    res = stats.ttest_ind(t, c, equal_var=False)
    ci = res.confidence_interval(confidence_level=1 - alpha)
    return Effect(
        mt, mc, diff, rel, float(ci.low), float(ci.high), float(res.pvalue), len(t), len(c)
    )


def min_sample_size(
    sd: float, mde: float, alpha: float, power: float, ratio: float = 1.0
) -> int | None:
    """Users needed in the control arm (``ratio`` x as many in the treatment) for a two-sided
    t-test at ``alpha`` to detect an absolute difference ``mde`` with ``power``, given the
    per-user standard deviation ``sd``; None when ``sd`` is unknown or 0 (nothing varies)."""
    from statsmodels.stats.power import tt_ind_solve_power

    if not (math.isfinite(sd) and sd > 0):
        return None
    n = tt_ind_solve_power(
        effect_size=mde / sd, alpha=alpha, power=power, ratio=ratio, alternative="two-sided"
    )
    return math.ceil(float(np.asarray(n).item()))


@dataclass(frozen=True)
class SampleRatio:
    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    mismatch: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def srm_check(counts: Mapping[Any, int], shares: Mapping[str, float], alpha: float) -> SampleRatio:
    """Pearson's chi-square of the users per arm against the configured shares; ``mismatch``
    when p < ``alpha`` (a small alpha, e.g. 0.001: a mismatch means the assignment or the
    logging is broken, and no effect of the experiment can be trusted)."""
    from scipy.stats import chisquare

    arms = list(shares)
    by_name = {str(k): int(v) for k, v in counts.items()}
    obs = np.array([by_name.get(a, 0) for a in arms], dtype=np.float64)
    total = obs.sum()
    exp = total * np.array([shares[a] for a in arms], dtype=np.float64) / sum(shares.values())
    if total == 0:
        return SampleRatio(
            {a: 0 for a in arms}, dict(zip(arms, exp.tolist(), strict=True)), 0.0, 1.0, False
        )
    res = chisquare(obs, f_exp=exp)
    p = float(res.pvalue)
    return SampleRatio(
        {a: int(o) for a, o in zip(arms, obs, strict=True)},
        dict(zip(arms, exp.tolist(), strict=True)),
        float(res.statistic),
        p,
        p < alpha,
    )


def holm(p_values: Sequence[float], alpha: float) -> list[float]:
    """Holm-adjusted p-values (family-wise error at ``alpha`` across the treatment arms)."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(list(p_values), alpha=alpha, method="holm")[1]]
