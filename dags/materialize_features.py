"""
### materialize_features

Hourly incremental Feast materialisation: loads feature rows up to the end of the data interval
into the online store, starting `feast.materialize_overlap_hours` before the previous end so
late-arriving rows are picked up. Materialising the same interval twice writes the same values.
"""

from __future__ import annotations

from datetime import datetime

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

from components.orchestration import DAG_DEFAULT_ARGS


@task
def materialize(*, data_interval_end: datetime | None = None) -> str:
    """Materialise every feature view up to the data interval's end."""
    from components.orchestration import materialize_until

    assert data_interval_end is not None
    return materialize_until(data_interval_end)


@dag(
    dag_id="materialize_features",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["reco", "features", "feast"],
    default_args=dict(DAG_DEFAULT_ARGS),
    doc_md=__doc__,
)
def materialize_features() -> None:
    materialize()


materialize_features()
