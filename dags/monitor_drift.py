"""
### monitor_drift

Daily Evidently drift report: the current window (ending at the data interval's end, or at the
newest event if the data stops earlier) against the reference window, for feature drift,
prediction (score) drift and target/engagement drift. The HTML report goes to
`reports/drift.html` and the JSON verdict to `metrics/drift.json`; thresholds are in
`params.yaml` (`drift:`). When the verdict requests a retrain, the `reco_retrain_request` asset
is updated, which schedules **train_recommender**.

The `kpis` task computes the KPIs of served traffic per day and arm (DAU, D1/D7 retention,
sessions, time spent, CTR, engagement, negative feedback, coverage, creator Gini) from the
impression log and the event stream: `metrics/kpis.json`, `metrics/plots/kpis.csv` and the
`reco_kpi` gauges (`metrics/kpis.prom`, and `/metrics` of the serving app).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task

from components.orchestration import DAG_DEFAULT_ARGS, RETRAIN_ASSET_NAME

RETRAIN = Asset(RETRAIN_ASSET_NAME)


@task
def drift_report(*, data_interval_end: datetime | None = None) -> dict[str, Any]:
    """Run the drift check; the verdict is logged and returned."""
    from components.orchestration import drift_report as report

    assert data_interval_end is not None
    return report(data_interval_end)


@task
def kpis() -> int:
    """The kpis stage (``dvc repro --single-item kpis``'s command, run directly: the traffic
    it reads is not a DVC output); returns the (day, arm) rows written."""
    from components.orchestration import kpis as run_kpis

    return run_kpis()


@task.short_circuit
def retrain_needed(verdict: dict[str, Any]) -> bool:
    """Continue to the retrain request only when the verdict asks for one."""
    return bool(verdict.get("retrain_requested"))


@task(outlets=[RETRAIN])
def request_retrain(verdict: dict[str, Any], *, outlet_events=None) -> str:  # type: ignore[no-untyped-def]
    """Update the retrain asset, with the verdict's reason as the event's extra."""
    outlet_events[RETRAIN].extra = {"reason": str(verdict.get("reason", ""))}
    return str(verdict.get("reason", ""))


@dag(
    dag_id="monitor_drift",
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["reco", "monitoring", "evidently"],
    default_args=dict(DAG_DEFAULT_ARGS),
    doc_md=__doc__,
)
def monitor_drift() -> None:
    verdict = drift_report()
    retrain_needed(verdict) >> request_retrain(verdict)
    kpis()


monitor_drift()
