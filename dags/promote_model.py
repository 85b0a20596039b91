"""
### promote_model

Runs when **train_recommender** registers a new candidate (the `reco_ranker_candidate` asset),
and daily so that a canary waiting for outcomes is looked at again. Three gates, each a typed
verdict written to `metrics/gate_<gate>.json` and logged here:

1. **offline**: candidate vs production on the held-out requests (metric margins from
   `params.yaml`), data quality and drift; pass → *shadow*, fail → *archived*.
2. **shadow**: the candidate scores the same replayed requests as production without serving
   them; agreement, score distributions and latency are compared; pass → *canary*.
3. **canary**: the candidate serves `promote.canary.share` of users (by hashed user id);
   engagement is compared with a Welch t-test, with a minimum sample size and guardrails
   (negative-feedback rate); promote → *production*, rollback → *archived*, hold → stays canary.

A failed gate stops the run (the later gates are skipped) and leaves production untouched.
Gates fail closed: missing evidence (no drift verdict, no ingestion record, no held-out rows)
fails with a reason naming what to run; a gate with no model to check does not pass, but on
the daily run (no version pinned) the later gates still look at the models of their stages.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from components.orchestration import DAG_DEFAULT_ARGS, MODEL_ASSET_NAME

MODEL = Asset(MODEL_ASSET_NAME)


@task
def pick_version(*, triggering_asset_events=None) -> str | None:  # type: ignore[no-untyped-def]
    """The version named by the triggering asset event; None lets each gate take its model."""
    for events in (triggering_asset_events or {}).values():
        for event in reversed(list(events)):
            version = (event.extra or {}).get("version")
            if version:
                return str(version)
    return None


def _gate(gate: str, version: str | None) -> bool:
    """Run the gate; go on when it passed, or when it had no model and none is pinned."""
    from components.deploy.promote import proceeds
    from components.orchestration import run_gate

    record = run_gate(gate, version)
    return proceeds(bool(record["passed"]), str(record["decision"]), version)


@task.short_circuit
def offline_gate(version: str | None) -> bool:
    return _gate("offline", version)


@task.short_circuit
def shadow_gate(version: str | None) -> bool:
    return _gate("shadow", version)


@task.short_circuit
def canary_gate(version: str | None) -> bool:
    return _gate("canary", version)


@task
def deployment() -> dict[str, Any]:
    """What serves now, as the registry says."""
    from components.core.catalog import DataPaths
    from components.deploy.registry import ModelRegistry
    from components.orchestration import project_root

    dep = ModelRegistry(DataPaths(project_root())).deployment()
    return {
        "production": dep.production.version if dep.production else None,
        "canary": dep.canary.version if dep.canary else None,
        "shadow": dep.shadow.version if dep.shadow else None,
        "revision": dep.revision,
    }


@dag(
    dag_id="promote_model",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("30 3 * * *", timezone="UTC"), assets=MODEL
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["reco", "promotion", "registry"],
    default_args=dict(DAG_DEFAULT_ARGS),
    doc_md=__doc__,
)
def promote_model() -> None:
    version = pick_version()
    offline_gate(version) >> shadow_gate(version) >> canary_gate(version) >> deployment()


promote_model()
