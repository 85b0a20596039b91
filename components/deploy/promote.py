"""Promotion: the offline, shadow and canary gates on the registry, and their CLI.

Each gate (one module each under :mod:`components.deploy.gates`) returns a
:class:`~components.core.verdict.Verdict` (checks, metrics, thresholds, ``passed``,
``decision``, ``reason``; ``candidate``, ``production`` and ``evidence`` in its details) that
is written to ``metrics/gate_<gate>.json`` and logged by the ``promote_model`` DAG. Gates fail
closed: missing evidence (no held-out rows, no ingestion record, no drift verdict, no model in
the gate's stage) is a failed check whose reason says what to run.

Traffic. The gates replay recent traffic: the ranker's held-out request groups
(``data/ranking/holdout.parquet``, written by the ``ranking`` stage: the latest requests, each
with its candidates, their features and the user's real events in the following 24 h). Both
models score the same requests. There is no live traffic on a laptop, so the canary gate's
outcomes are the users' recorded events on the items each arm would have shown: a replay of
held-out events, labelled as such in every verdict (``evidence``). With a serving layer, the
same gate reads logged impressions joined with outcomes instead.

Moves: offline pass → shadow, fail → archived; shadow pass → canary, fail → archived; canary
promote → production, rollback → archived, hold → stays canary. A gate that could not judge
(``insufficient_evidence``: every failed check lacked its evidence) moves nothing.

Exit codes of the CLI (of the last gate run): 0 passed, 3 judged and not passed (fail, hold,
rollback), 4 could not judge (no model in the stage, or missing evidence): a gate never passes
on nothing. With no production model (the
first model), the comparisons have no baseline: the offline gate requires an absolute AUC floor,
the shadow gate checks the candidate alone, and the canary gate promotes with that reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import Params, stage_context
from components.core.integrity import IntegrityError
from components.core.io import atomic_write_parquet
from components.core.verdict import INSUFFICIENT_EVIDENCE, Check, Verdict, missing, write_verdict
from components.deploy.gates.canary import canary_gate
from components.deploy.gates.common import PromoteParams, promotion_verdict
from components.deploy.gates.offline import offline_gate
from components.deploy.gates.shadow import shadow_gate
from components.deploy.transitions import RegistryError

if TYPE_CHECKING:
    from components.deploy.registry import ModelRegistry
    from components.ranking.model import RankerModel

log = logging.getLogger(__name__)

GATES: tuple[str, ...] = ("offline", "shadow", "canary")
#: the registry stage a gate applies to, and where its verdicts move the model
GATE_STAGE = {"offline": "candidate", "shadow": "shadow", "canary": "canary"}
NEXT_STAGE = {"offline": "shadow", "shadow": "canary", "canary": "production"}
STAGE_ORDER = ("candidate", "shadow", "canary", "production")
EXIT_PASSED, EXIT_NOT_PASSED, EXIT_COULD_NOT_JUDGE = 0, 3, 4


# ------------------------------------------------------------------------------------------ I/O


def ingestion_quality(paths: DataPaths) -> dict[str, Any]:
    """The ingestion record's reconciliation and quarantine rate (empty if there is none)."""
    path = paths.of("metrics_ingest")
    if not path.exists():
        return {}
    rec = json.loads(path.read_text(encoding="utf-8"))
    n_in = int(rec.get("n_in", 0))
    return {
        "reconciled": bool(rec.get("reconciled")),
        "n_in": n_in,
        "quarantined": int(rec.get("quarantined", 0)),
        "quarantine_rate": (int(rec.get("quarantined", 0)) / n_in) if n_in else None,
    }


def drift_record(paths: DataPaths) -> Mapping[str, Any] | None:
    """The drift verdict's JSON record, None when there is none; an unreadable file is a record
    the offline gate rejects with its reason."""
    path = paths.of("metrics_drift")
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return {"unreadable": f"{path}: {exc}"}
    return record if isinstance(record, Mapping) else {"unreadable": str(path)}


def verdict_path(paths: DataPaths, gate: str) -> Path:
    return paths.of("gate_verdict", gate=gate)


def append_score_log(paths: DataPaths, frame: pd.DataFrame, name: str) -> Path:
    """One parquet file per (gate run, model): rewriting the same name replaces it (idempotent)."""
    return atomic_write_parquet(paths.of("score_logs") / f"{name}.parquet", frame, index=False)


def _load(registry: ModelRegistry, version: str) -> RankerModel:
    from components.ranking.artefact import load

    return load(registry.artefact_dir(version))


def _target(registry: ModelRegistry, gate: str, version: str | None) -> str | None:
    if version is not None:
        return version
    rec = registry.latest(GATE_STAGE[gate])
    return rec.version if rec is not None else None


def stage_verdict(
    gate: str, target: str | None, stage: str | None, production: str | None
) -> Verdict | None:
    """The verdict of a gate that has no model to judge: none in its stage (fails: nothing to
    check), or ``target`` not in the gate's stage (passes only when it is already past the gate,
    as the registry's history records). None when ``target`` is in the gate's stage."""
    expected = GATE_STAGE[gate]
    if target is None:
        check = missing(
            "model",
            f"no model in stage {expected!r}: nothing to check",
            "register one (`python -m components.deploy.registry register`) or give --version",
        )
    elif stage == expected:
        return None
    else:
        done = stage in STAGE_ORDER and STAGE_ORDER.index(stage) > STAGE_ORDER.index(expected)
        check = Check(
            "stage",
            done,
            f"{target} is in stage {stage!r}, "
            + ("already past this gate" if done else f"not {expected!r}: not checked"),
        )
    return promotion_verdict(
        gate, target, production, [check], passed_reason=check.reason, decision="nothing"
    )


def judge(
    gate: str,
    p: PromoteParams,
    paths: DataPaths,
    rows: pd.DataFrame,
    candidate: RankerModel,
    production: RankerModel | None,
    trained_until: str,
    *,
    now: datetime,
    window_s: float,
) -> Verdict:
    """Run one gate: the offline gate on the replayed rows; the shadow and canary gates on live
    traffic from the impression log when the model has served any (outcomes within
    ``window_s``, windows closed by ``now``), else on the replay (the shadow gate also writes
    its score log)."""
    if gate == "offline":
        return offline_gate(
            rows,
            candidate,
            production,
            p,
            quality=ingestion_quality(paths),
            drift=drift_record(paths),
            trained_until=trained_until,
        )
    if gate == "shadow":
        verdict, scores = shadow_gate(rows, candidate, production, p, live=live_shadow(paths, candidate))
        append_score_log(paths, scores, f"shadow-{candidate.version}")
        return verdict
    live = live_canary(paths, candidate, production, window_s, now) if production is not None else None
    return canary_gate(rows, candidate, production, p, live=live)


def live_shadow(paths: DataPaths, candidate: RankerModel) -> dict[str, Any] | None:
    """The candidate's live shadow metrics from the impression log (None: no live rows)."""
    from components.deploy.gates.live import live_shadow_metrics
    from components.experiments.outcomes import read_impression_log

    return live_shadow_metrics(read_impression_log(paths.of("impressions")), candidate.version)


def live_canary(
    paths: DataPaths, candidate: RankerModel, production: RankerModel, window_s: float, now: datetime
) -> pd.DataFrame | None:
    """Per-user live outcomes of the canary and production arms (None: no live canary rows)."""
    from components.deploy.gates.live import live_canary_users
    from components.experiments.outcomes import read_impression_log, read_stream

    imp = read_impression_log(paths.of("impressions"))
    if imp.empty:
        return None
    events = read_stream(paths.of("stream_events"))
    return live_canary_users(imp, events, candidate.version, production.version, window_s, now)


def run_gate(
    gate: str,
    params: Mapping[str, Any],
    paths: DataPaths,
    *,
    version: str | None = None,
    now: datetime,
    registry: ModelRegistry | None = None,
) -> Verdict:
    """Run ``gate`` for ``version`` (default: the model in the gate's stage), record the verdict
    and move the model in the registry (pass / promote → next stage, fail / rollback →
    archived). No model to check fails; re-running a gate for a model already past it changes
    nothing and passes; a model that was archived does not pass."""
    from components.deploy.registry import ModelRegistry

    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; expected one of {GATES}")
    p = PromoteParams.from_params(params)
    registry = registry or ModelRegistry(paths)
    target = _target(registry, gate, version)
    dep = registry.deployment()
    prod_version = dep.production.version if dep.production is not None else None
    record = registry.get(target) if target is not None else None
    verdict = stage_verdict(gate, target, record.stage if record else None, prod_version)
    if verdict is None:
        assert target is not None and record is not None
        holdout = paths.of("ranking_holdout")
        if holdout.exists():
            production = (
                _load(registry, prod_version) if prod_version and prod_version != target else None
            )
            verdict = judge(
                gate,
                p,
                paths,
                pd.read_parquet(holdout),
                _load(registry, target),
                production,
                str((record.metrics or {}).get("trained_until", "")),
                now=now,
                window_s=Params.of(params).experiments.label_window_s,
            )
        else:
            check = missing(
                "held_out_rows",
                f"no replayed requests ({holdout} not found)",
                "run `dvc repro ranking`",
            )
            verdict = promotion_verdict(gate, target, prod_version, [check], passed_reason="")
        note = f"{gate} gate: {verdict.reason}"
        if verdict.decision in ("pass", "promote"):
            registry.promote(target, NEXT_STAGE[gate], reason=note, now=now)
        elif verdict.decision in ("fail", "rollback"):
            registry.archive(target, reason=note, now=now)
    write_verdict(verdict_path(paths, gate), verdict)
    log.info("%s gate for %s: %s: %s", gate, target or "-", verdict.decision, verdict.reason)
    return verdict


def proceeds(passed: bool, decision: str, pinned: str | None) -> bool:
    """Whether the next gate runs after this one: it passed, or no version is pinned and this
    gate had no model (each later gate then judges the model of its own stage, e.g. a canary
    waiting for outcomes). Having no model is still not a pass."""
    return passed or (pinned is None and decision == "nothing")


def run_all(
    params: Mapping[str, Any], paths: DataPaths, *, version: str | None, now: datetime
) -> list[Verdict]:
    """The gates in order for one model, stopping at the first that does not pass."""
    out = []
    for gate in GATES:
        v = run_gate(gate, params, paths, version=version, now=now)
        out.append(v)
        if gate == "shadow" and v.passed:
            off_policy_estimate(params, paths, v.details.get("candidate"))
        if not proceeds(v.passed, v.decision, version):
            break
        version = version or v.details.get("candidate") or None
    return out


def off_policy_estimate(params: Mapping[str, Any], paths: DataPaths, version: str | None) -> None:
    """Before the canary: the candidate's off-policy estimates on production's logged
    impressions (``metrics/ope.json``, :mod:`components.evaluation.ope`). Informational, it
    decides nothing: without a production log there is nothing to estimate, which is logged."""
    from components.evaluation.ope import run as ope

    try:
        out = ope(params, paths, version)
    except (SystemExit, ValueError) as exc:
        log.info("off-policy evaluation of %s skipped: %s", version, exc)
        return
    snips = out["estimates"]["snips"]
    log.info(
        "off-policy SNIPS of %s: %.4f [%.4f, %.4f] vs production's %.4f on %d impressions",
        version, snips["value"], snips["ci_low"], snips["ci_high"],
        out["production_engagement_rate"], out["impressions"],
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Promotion gates: offline, shadow, canary.")
    parser.add_argument("gate", choices=(*GATES, "all"))
    parser.add_argument("--version", default=None, help="model version (default: the gate's stage)")
    parser.add_argument("--params", default=None)
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    now = datetime.now(UTC)
    try:
        verdicts = (
            run_all(params, paths, version=args.version, now=now)
            if args.gate == "all"
            else [run_gate(args.gate, params, paths, version=args.version, now=now)]
        )
    except (IntegrityError, RegistryError) as exc:  # e.g. a model registered before its files had hashes
        print(f"{args.gate} gate could not judge: a model's artefact was refused: {exc}", file=sys.stderr)
        print("re-register the model (python -m components.deploy.registry register) or train it again")
        return EXIT_COULD_NOT_JUDGE
    for v in verdicts:
        print(f"{v.gate:8s} {v.details.get('candidate') or '-':>16s}  {v.decision:8s} {v.reason}")
    code = exit_code(verdicts[-1])
    if code == EXIT_COULD_NOT_JUDGE:
        print(f"{verdicts[-1].gate} gate could not judge ({INSUFFICIENT_EVIDENCE}): exit {code}")
    return code


def exit_code(verdict: Verdict) -> int:
    """The CLI's exit code for the last verdict (module docstring)."""
    if verdict.passed:
        return EXIT_PASSED
    if verdict.decision in ("nothing", INSUFFICIENT_EVIDENCE) or verdict.could_not_judge:
        return EXIT_COULD_NOT_JUDGE
    return EXIT_NOT_PASSED


if __name__ == "__main__":
    raise SystemExit(main())
