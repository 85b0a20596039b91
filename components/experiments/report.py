"""An experiment's report from per-user outcomes: users per arm and the sample-ratio check,
per treatment arm and metric the effect against control with its confidence interval, the
minimum sample size of the primary metric, guardrails, and a decision per treatment arm.

Decisions, in order: ``invalid`` (sample-ratio mismatch: nothing can be trusted), ``stop`` (a
guardrail significantly worse by more than its margin, or the primary metric significantly
worse), ``continue`` (an arm below the minimum sample size: the fixed-horizon test is not read
yet), ``ship`` (the primary metric significantly better, Holm-corrected across arms), else
``no_effect``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from components.core.config import Experiments, Guardrail
from components.experiments.stats import Effect, holm, min_sample_size, srm_check, welch_effect


def guardrail_breached(g: Guardrail, e: Effect) -> bool:
    """Significantly worse (the CI excludes 0 on the worse side) by more than the margin."""
    if g.worse_when == "higher":
        return e.ci_low > 0 and e.diff > g.margin
    return e.ci_high < 0 and -e.diff > g.margin


def _decide(
    srm_bad: bool,
    breached: list[str],
    primary: Effect,
    p_holm: float,
    needed: int | None,
    cfg: Experiments,
) -> tuple[str, str]:
    if srm_bad:
        return "invalid", "sample-ratio mismatch: the assignment or the logging is broken"
    if breached:
        return "stop", f"guardrail(s) breached: {', '.join(breached)}"
    if needed is None:
        return "continue", f"{cfg.primary_metric} does not vary yet: no sample size can be computed"
    if min(primary.n_treatment, primary.n_control) < needed:
        return "continue", (
            f"{primary.n_treatment} / {primary.n_control} users, {needed} per arm needed "
            f"to detect {cfg.mde} at power {cfg.power}"
        )
    significant = p_holm < cfg.alpha
    if significant and primary.diff < 0:
        return (
            "stop",
            f"{cfg.primary_metric} significantly worse ({primary.diff:+.4f}, p_holm {p_holm:.2g})",
        )
    if significant:
        return (
            "ship",
            f"{cfg.primary_metric} significantly better ({primary.diff:+.4f}, p_holm {p_holm:.2g})",
        )
    return (
        "no_effect",
        f"{cfg.primary_metric} {primary.diff:+.4f}, p_holm {p_holm:.2g} >= {cfg.alpha}",
    )


def analyse(
    users: pd.DataFrame,
    arm_col: str,
    control: str,
    shares: Mapping[str, float],
    cfg: Experiments,
    metrics: Sequence[str] = (),
) -> dict[str, Any]:
    """The report (module docstring) of per-user rows with their arm in ``arm_col``."""
    counts = users[arm_col].astype(str).value_counts().to_dict()
    srm = srm_check({str(k): int(v) for k, v in counts.items()}, dict(shares), cfg.srm_alpha)
    names = list(dict.fromkeys([cfg.primary_metric, *(g.metric for g in cfg.guardrails), *metrics]))
    ctrl = users[users[arm_col].astype(str) == control]
    treatments = [a for a in shares if a != control]
    effects: dict[str, dict[str, Effect]] = {}
    for arm in treatments:
        tr = users[users[arm_col].astype(str) == arm]
        if min(len(tr), len(ctrl)) < 2:
            continue
        effects[arm] = {
            m: welch_effect(tr[m].to_numpy(), ctrl[m].to_numpy(), cfg.alpha) for m in names
        }
    adjusted = dict(
        zip(
            effects,
            holm([effects[a][cfg.primary_metric].p_value for a in effects], cfg.alpha),
            strict=True,
        )
    )
    sd = float(np.std(ctrl[cfg.primary_metric], ddof=1)) if len(ctrl) > 1 else float("nan")
    needed = min_sample_size(sd, cfg.mde, cfg.alpha, cfg.power)
    arms_out: dict[str, Any] = {}
    for arm in treatments:
        if arm not in effects:
            arms_out[arm] = {
                "decision": "continue",
                "reason": "fewer than 2 users in this arm or in control",
            }
            continue
        eff = effects[arm]
        breached = [g.metric for g in cfg.guardrails if guardrail_breached(g, eff[g.metric])]
        decision, reason = _decide(
            srm.mismatch, breached, eff[cfg.primary_metric], adjusted[arm], needed, cfg
        )
        arms_out[arm] = {
            "decision": decision,
            "reason": reason,
            "p_holm": adjusted[arm],
            "guardrails_breached": breached,
            "effects": {m: e.to_dict() for m, e in eff.items()},
        }
    return {
        "control": control,
        "users": {a: int(counts.get(a, 0)) for a in shares},
        "sample_ratio": srm.to_dict(),
        "min_sample_size_per_arm": needed,
        "primary_metric": cfg.primary_metric,
        "alpha": cfg.alpha,
        "mde": cfg.mde,
        "arms": arms_out,
    }
