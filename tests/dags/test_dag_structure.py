"""Every DAG imports, follows the house rules (owner, tags, retries, no catchup, docs) and has
the expected task graph and schedule."""

from __future__ import annotations

import itertools

import pytest

from components.core.catalog import PROJECT_ROOT
from components.orchestration import MODEL_ASSET_NAME, RETRAIN_ASSET_NAME, TRAIN_STAGES

EXPECTED = {"train_recommender", "materialize_features", "monitor_drift", "promote_model"}


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"), safe_mode=False)


def _edges(dag) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}


def test_every_dag_imports(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_house_rules(dagbag, dag_id: str) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags[dag_id]
    assert dag.tags and "reco" in dag.tags
    assert dag.catchup is False
    assert dag.doc_md and dag_id in dag.doc_md
    assert dag.max_active_runs == 1
    for t in dag.tasks:
        assert t.owner == "reco-platform", t.task_id
        assert t.retries >= 2, t.task_id


def test_train_recommender_graph(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["train_recommender"]
    order = [*TRAIN_STAGES, "register_candidate"]
    assert [t.task_id for t in dag.topological_sort()] == order
    assert _edges(dag) == set(itertools.pairwise(order))
    assert TRAIN_STAGES[1:] == ("ingest", "preprocess", "features", "feast_apply", "materialize",
                                "tune", "embeddings", "candidates", "ranking", "evaluate", "drift")
    register = dag.get_task("register_candidate")
    assert [o.name for o in register.outlets] == [MODEL_ASSET_NAME]
    # scheduled daily and by the drift monitor's retrain request
    timetable = dag.timetable
    assert type(timetable).__name__ == "AssetOrTimeSchedule"
    assert RETRAIN_ASSET_NAME in str(timetable.asset_condition)


def test_promote_model_graph(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["promote_model"]
    assert _edges(dag) == {
        ("pick_version", "offline_gate"),
        ("pick_version", "shadow_gate"),
        ("pick_version", "canary_gate"),
        ("offline_gate", "shadow_gate"),
        ("shadow_gate", "canary_gate"),
        ("canary_gate", "deployment"),
    }
    assert MODEL_ASSET_NAME in str(dag.timetable.asset_condition)


def test_monitor_drift_graph(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["monitor_drift"]
    assert _edges(dag) == {
        ("drift_report", "retrain_needed"),
        ("drift_report", "request_retrain"),
        ("retrain_needed", "request_retrain"),
    }
    assert [o.name for o in dag.get_task("request_retrain").outlets] == [RETRAIN_ASSET_NAME]
    assert "kpis" in dag.task_ids  # the KPIs of served traffic, independent of the drift verdict


def test_materialize_features_graph(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["materialize_features"]
    assert [t.task_id for t in dag.tasks] == ["materialize"]
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.timetable.expression == "0 * * * *"  # hourly, with a real data interval


def _first_production_stages() -> tuple[str, ...]:
    from components.simulate.loop import retrain_stages

    return retrain_stages(first=True)


@pytest.mark.parametrize("order", [TRAIN_STAGES, _first_production_stages()], ids=["training DAG", "make simulate, first model"])
def test_train_stages_run_after_every_stage_whose_outputs_they_read(order: tuple[str, ...]) -> None:
    """Each task runs ``dvc repro --single-item``, which does not run upstream stages: a stage
    reading an output of a later task would read a stale or missing file. On a fresh project
    (``make simulate``'s first model) every output a stage reads must come from an earlier one."""
    import yaml

    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    names = ["generate" if s == "drop" else s for s in order]

    def paths(entries: list) -> list[str]:  # type: ignore[type-arg]
        return [next(iter(e)) if isinstance(e, dict) else e for e in entries]

    def outs(name: str) -> list[str]:
        body = stages[name]
        return paths(body.get("outs", []) + body.get("metrics", []) + body.get("plots", []))

    for i, name in enumerate(names):
        for dep in stages[name].get("deps", []):
            writers = [w for w in stages if any(dep == o or dep.startswith(o + "/") or o.startswith(dep + "/") for o in outs(w))]
            assert all(w in names and names.index(w) < i for w in writers if w != name), (name, dep, writers)
