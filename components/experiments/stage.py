"""The experiments stage: the report (:func:`components.experiments.report.analyse`) of every
running experiment (``experiments.running``) on the impression log joined with the event
stream, written to ``metrics/experiments.json``.

``python -m components.experiments.stage [--params params.yaml] [--root .]``
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import Experiment, Experiments, Params, stage_context
from components.core.io import write_metrics
from components.experiments.assign import experiment_arms
from components.experiments.outcomes import (
    labelled_impressions,
    per_user,
    read_impression_log,
    read_stream,
)
from components.experiments.report import analyse

log = logging.getLogger(__name__)


def report_experiment(exp: Experiment, labelled: pd.DataFrame, cfg: Experiments) -> dict[str, Any]:
    """One experiment's report on labelled impressions (fallback feeds included: they are part
    of what the arm's users saw)."""
    users = per_user(labelled)
    users["exp_arm"] = experiment_arms(exp, users["user_id"].astype(str).tolist())
    shares = {n: a.share for n, a in exp.arms.items()}
    out = analyse(users, "exp_arm", exp.control, shares, cfg, metrics=("impressions", "requests"))
    out["name"] = exp.name
    out["arms_config"] = {n: dict(a.serving) for n, a in exp.arms.items()}
    return out


@dataclass(frozen=True)
class ExperimentsResult:
    reports: list[dict[str, Any]]
    impressions: int
    users: int


def run(params: Mapping[str, Any], paths: DataPaths) -> ExperimentsResult:
    """Read the impression log and the event stream, report every running experiment."""
    cfg = Params.of(params).experiments
    imp = read_impression_log(paths.of("impressions"))
    events = read_stream(paths.of("stream_events"))
    labelled = labelled_impressions(imp, events, cfg.label_window_s) if len(imp) else imp
    reports = [report_experiment(e, labelled, cfg) for e in cfg.running] if len(imp) else []
    result = ExperimentsResult(reports, len(imp), int(imp["user_id"].nunique()) if len(imp) else 0)
    write_metrics(
        paths.of("metrics_experiments"),
        {"impressions": result.impressions, "users": result.users, "experiments": reports},
    )
    for r in reports:
        for arm, a in r["arms"].items():
            log.info("experiment %s arm %s: %s (%s)", r["name"], arm, a["decision"], a["reason"])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Report the running A/B/n experiments.")
    parser.add_argument("--params", default=None)
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params, paths = stage_context(args)
    result = run(params, paths)
    print(
        f"{result.impressions} impressions, {result.users} users, {len(result.reports)} experiment(s)"
    )
    for r in result.reports:
        print(f"{r['name']}: users {r['users']}, SRM p = {r['sample_ratio']['p_value']:.3g}")
        for arm, a in r["arms"].items():
            print(f"  {arm}: {a['decision']}: {a['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
