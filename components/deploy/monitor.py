"""The post-promotion monitor: the new production model's live outcomes against the previous
production's, with automatic rollback (through the registry) when a guardrail degrades.

Periods: "before" is the previous production version's last ``experiments.monitor_window_hours``
of production-arm impressions, "after" the new version's first window, both from the impression
log joined with the event stream (per user: engagement and negative-feedback rates,
:mod:`components.experiments.outcomes`). The periods are told apart by the logged model
version rather than by the promotion's wall-clock time, so a log on a simulated or historic
clock compares the right impressions.

Per guardrail (``experiments.monitor_guardrails``): Welch's difference after - before with its
confidence interval; a guardrail is breached when the difference is significantly on its
worse side and beyond its margin (:func:`components.experiments.report.guardrail_breached`).
Decisions: ``rollback`` (any breach: the registry archives the new version and restores the
previous one, in one transaction), ``hold`` (fewer than ``monitor_min_users`` users in either
period, or no previous production: nothing to compare, nothing done), ``keep``. The verdict is
written to ``metrics/monitor.json``. Users appear in both periods, so the two samples are not
independent: the test treats them as if they were (conservative for positively correlated
per-user rates).

``python -m components.deploy.monitor [--params params.yaml] [--root .] [--dry-run]``
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import Experiments, Params, stage_context
from components.core.verdict import Check, Verdict, write_verdict
from components.deploy.gates.common import promotion_verdict
from components.experiments.report import guardrail_breached
from components.experiments.stats import welch_effect

log = logging.getLogger(__name__)

EVIDENCE = (
    "live traffic: production-arm impressions of the new production version (its first window) "
    "and of the previous one (its last window), outcomes from the event stream"
)


def period(impressions: pd.DataFrame, version: str, hours: float, first: bool) -> pd.DataFrame:
    """Production-arm, non-degraded impressions of ``version`` in its first (or last) window."""
    f = impressions[
        (impressions["arm"] == "production")
        & (impressions["model_version"] == version)
        & ~impressions["degraded"].fillna(False).astype(bool)
    ]
    if f.empty:
        return f
    ts = pd.to_datetime(f["timestamp"], utc=True)
    span = pd.Timedelta(hours=hours)
    keep = ts < ts.min() + span if first else ts >= ts.max() - span
    return f[keep.to_numpy()]


def monitor_decision(
    before: pd.DataFrame, after: pd.DataFrame, cfg: Experiments
) -> tuple[str, list[Check], dict[str, Any]]:
    """rollback / hold / keep from per-user outcomes of the two periods (module docstring)."""
    metrics: dict[str, Any] = {"users_before": len(before), "users_after": len(after)}
    if min(len(before), len(after)) < cfg.monitor_min_users:
        few = Check(
            "sample_size",
            False,
            f"{len(before)} users before / {len(after)} after (< {cfg.monitor_min_users}): waiting for traffic",
        )
        return "hold", [few], metrics
    checks = [Check("sample_size", True, f"{len(before)} users before / {len(after)} after")]
    for g in cfg.monitor_guardrails:
        e = welch_effect(after[g.metric].to_numpy(), before[g.metric].to_numpy(), cfg.alpha)
        metrics[g.metric] = e.to_dict()
        bad = guardrail_breached(g, e)
        checks.append(
            Check(
                f"guardrail_{g.metric}",
                not bad,
                f"{g.metric} {e.mean_control:.4f} -> {e.mean_treatment:.4f} ({e.diff:+.4f}, "
                f"{100 * (1 - cfg.alpha):.0f} % CI [{e.ci_low:+.4f}, {e.ci_high:+.4f}], "
                f"worse when {g.worse_when}, margin {g.margin})" + (": breached" if bad else ""),
            )
        )
    return ("rollback" if any(not c.passed for c in checks) else "keep"), checks, metrics


def previous_production(history: Sequence[Any], current: str) -> str | None:
    """The version that was production before ``current`` last became production."""
    promoted = [h for h in history if h.to_stage == "production"]
    last = max((h.id for h in promoted if h.version == current), default=None)
    if last is None:
        return None
    before = [h for h in promoted if h.id < last and h.version != current]
    return max(before, key=lambda h: h.id).version if before else None


def run(
    params: Mapping[str, Any], paths: DataPaths, *, now: datetime, dry_run: bool = False
) -> Verdict:
    """Compare the production periods, roll back on a breach (unless ``dry_run``), write the verdict."""
    from components.deploy.registry import ModelRegistry
    from components.experiments.outcomes import (
        labelled_impressions,
        per_user,
        read_impression_log,
        read_stream,
    )

    cfg = Params.of(params).experiments
    with ModelRegistry(paths) as registry:
        prod = registry.deployment().production
        current = prod.version if prod is not None else None
        previous = previous_production(registry.history(), current) if current else None
        thresholds = {
            "guardrails": [g.model_dump() for g in cfg.monitor_guardrails],
            "min_users": cfg.monitor_min_users,
            "window_hours": cfg.monitor_window_hours,
            "alpha": cfg.alpha,
        }
        if current is None or previous is None:
            check = Check(
                "baseline", False, f"no previous production to compare {current or 'nothing'} with"
            )
            verdict = promotion_verdict(
                "monitor", current, previous, [check], passed_reason="", thresholds=thresholds,
                evidence=EVIDENCE, decision="hold",
            )  # fmt: skip
        else:
            imp = read_impression_log(paths.of("impressions"))
            events = read_stream(paths.of("stream_events"))
            users = {}
            for name, version, first in (("before", previous, False), ("after", current, True)):
                rows = period(imp, version, cfg.monitor_window_hours, first) if len(imp) else imp
                users[name] = (
                    per_user(labelled_impressions(rows, events, cfg.label_window_s))
                    if len(rows)
                    else pd.DataFrame()
                )
            decision, checks, metrics = monitor_decision(users["before"], users["after"], cfg)
            verdict = promotion_verdict(
                "monitor", current, previous, checks, passed_reason="no guardrail degraded after the promotion",
                metrics=metrics, thresholds=thresholds, evidence=EVIDENCE, decision=decision,
            )  # fmt: skip
            if decision == "rollback" and not dry_run:
                result = registry.rollback(f"post-promotion monitor: {verdict.reason}", now=now)
                verdict = replace(
                    verdict, details={**verdict.details, "restored": result.restored.version}
                )
    write_verdict(paths.of("metrics_monitor"), verdict)
    log.info("monitor %s: %s: %s", current or "-", verdict.decision, verdict.reason)
    return verdict


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Post-promotion monitor with automatic rollback.")
    parser.add_argument("--params", default=None)
    parser.add_argument("--root", default=None)
    parser.add_argument(
        "--dry-run", action="store_true", help="decide and write the verdict, roll nothing back"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params, paths = stage_context(args)
    v = run(params, paths, now=datetime.now(UTC), dry_run=args.dry_run)
    print(f"monitor {v.details.get('candidate') or '-'}: {v.decision}: {v.reason}")
    return 0 if v.decision in ("keep", "hold") else 3


if __name__ == "__main__":
    raise SystemExit(main())
