"""
### train_recommender

The batch pipeline as Airflow tasks: one task per DVC stage, in `dvc.yaml`'s order, each
running `dvc repro --single-item <stage>` in the project (so a DAG run and `dvc repro` produce
the same artefacts, and an unchanged stage is skipped by DVC: re-running a data interval is a
no-op). The drift stage's verdict (`metrics/drift.json`) is evidence the offline gate requires.
The last task registers the trained ranker in the model registry as a *candidate* and
updates the `reco_ranker_candidate` asset, which schedules **promote_model**.

Runs daily, and whenever **monitor_drift** requests a retrain (`reco_retrain_request` asset).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from components.orchestration import (
    DAG_DEFAULT_ARGS,
    MODEL_ASSET_NAME,
    RETRAIN_ASSET_NAME,
    TRAIN_STAGES,
)

MODEL = Asset(MODEL_ASSET_NAME)
RETRAIN = Asset(RETRAIN_ASSET_NAME)


@task
def dvc_stage(stage: str) -> dict[str, object]:
    """One DVC stage; DVC decides whether it needs to run."""
    from dataclasses import asdict

    from components.orchestration import run_stage

    return asdict(run_stage(stage))


@task(outlets=[MODEL])
def register_candidate(*, outlet_events=None) -> str:  # type: ignore[no-untyped-def]
    """Register the trained ranker as a candidate; the model asset fires only for a new one."""
    from airflow.sdk.exceptions import AirflowSkipException

    from components.orchestration import register_candidate as register

    reg = register()
    if not reg.new:
        raise AirflowSkipException(f"ranker {reg.version} is already registered ({reg.stage})")
    outlet_events[MODEL].extra = {"version": reg.version}
    return reg.version


@dag(
    dag_id="train_recommender",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"), assets=RETRAIN
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # DVC holds a lock on the project: one run at a time
    tags=["reco", "training", "dvc"],
    default_args=dict(DAG_DEFAULT_ARGS),
    doc_md=__doc__,
)
def train_recommender() -> None:
    previous = None
    for stage in TRAIN_STAGES:
        current = dvc_stage.override(task_id=stage)(stage)
        if previous is not None:
            previous >> current
        previous = current
    assert previous is not None
    previous >> register_candidate()


train_recommender()
