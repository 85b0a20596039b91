"""The DAGs run for real on the tiny data set.

* ``dag.test()`` runs ``train_recommender`` end to end (SQLite metadata); its artefacts match a
  ``dvc repro`` of the same data in another copy, and it registers a candidate and fires the
  model asset with the version.
* ``promote_model`` then takes that first model through the gates to production.
* ``monitor_drift`` requests a retrain (the retrain asset) after a crafted shift of the
  features in the current window, and not when the current window is drawn from the reference.
* The production setting: Postgres metadata database with the LocalExecutor (tasks run by
  executor workers through an API server on 127.0.0.1). Re-running ``train_recommender`` for
  the same data is a no-op (every DVC stage up to date, nothing registered).

Each Airflow run is a subprocess with its own ``AIRFLOW_HOME``, so the test process's
configuration does not leak in.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.orchestration import MODEL_ASSET_NAME, TRAIN_STAGES
from components.serving.process import free_port
from tests.fixtures.tiny_project import lock_outs, make_project, tool_env

pytestmark = pytest.mark.slow

#: the tiny data set has ~100 held-out users: a smaller canary minimum lets the gate decide.
#: Its 7 days are still warming up (7-day counters grow through the first week), so 0.42 of
#: the feature columns of its last day differ from the days before: under the default share
#: (0.3) that is drift newer than the model's training data, which fails the offline gate.
OVERRIDES = {"promote": {"canary": {"min_users": 10}}, "drift": {"min_rows": 30, "drift_share": 0.5}}

_RUNNER = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
path, dag_id, use_executor = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
bag = DagBag(dag_folder=path, safe_mode=False)
assert not bag.import_errors, bag.import_errors
dr = bag.dags[dag_id].test(use_executor=use_executor)
tis = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
from airflow import settings
from airflow.executors.executor_loader import ExecutorLoader
executor = type(ExecutorLoader.get_default_executor()).__name__
print("RESULT " + json.dumps({"state": str(dr.state), "tasks": tis, "executor": executor,
                              "database": settings.engine.dialect.name}))
"""


def _airflow_env(project: Path, home: Path, **extra: str) -> dict[str, str]:
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "RECO_PROJECT_ROOT": str(project),
    }
    return tool_env(**{**settings, **extra})


def _airflow(env: dict[str, str], *args: str, timeout: int = 300) -> str:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _dag_test(env: dict[str, str], project: Path, dag_id: str, *, use_executor: bool = False) -> dict:
    path = project / "dags" / f"{dag_id}.py"
    out = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(path), dag_id, "1" if use_executor else "0"],
        env=env, capture_output=True, text=True, timeout=900, cwd=project,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stdout[-5000:] + out.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline: Path) -> dict:
    """train_recommender by dag.test() in one copy; dvc repro in another; promote_model after.

    The DAG's project starts with the session project's DVC cache (its run cache included), so a
    task whose stage has the same command, deps and params as the session's ``dvc repro`` is
    restored from it instead of training again: the run shows that the DAG runs exactly the
    stages ``dvc repro`` ran (a stage it ran differently would compute, and its outputs would
    differ from the reference's). That computing them twice gives the same artefacts is
    ``tests/e2e/test_dvc_pipeline.py``'s forced re-run."""
    project = make_project(tmp_path_factory.mktemp("dagproj"), OVERRIDES, dags=True)
    shutil.copytree(tiny_pipeline / ".dvc" / "cache", project / ".dvc" / "cache", dirs_exist_ok=True)
    home = tmp_path_factory.mktemp("airflow-home")
    env = _airflow_env(project, home)
    _airflow(env, "db", "migrate")
    train = _dag_test(env, project, "train_recommender")
    # the reference: the session's `dvc repro` of the same data (OVERRIDES touch no training stage)
    reference = tiny_pipeline
    promote = _dag_test(env, project, "promote_model")
    return {"project": project, "reference": reference, "home": home, "env": env,
            "train": train, "promote": promote}


def test_train_dag_runs_every_stage_and_registers(ran: dict) -> None:
    assert ran["train"]["state"] == "success", ran["train"]
    assert set(ran["train"]["tasks"].values()) == {"success"}
    assert set(ran["train"]["tasks"]) == {*TRAIN_STAGES, "register_candidate"}
    version = (ran["project"] / "data/models/ranker/LATEST").read_text().strip()
    db = sqlite3.connect(ran["home"] / "airflow.db")
    rows = db.execute(
        "select a.name, e.extra from asset_event e join asset a on a.id = e.asset_id"
    ).fetchall()
    assert (MODEL_ASSET_NAME, json.dumps({"version": version})) in [(n, json.dumps(json.loads(x))) for n, x in rows]
    # the scheduler's view of the wiring: which DAG each asset schedules
    consumers = set(db.execute(
        "select a.name, r.dag_id from dag_schedule_asset_reference r join asset a on a.id = r.asset_id"
    ).fetchall())
    assert consumers == {(MODEL_ASSET_NAME, "promote_model"), ("reco_retrain_request", "train_recommender")}


def test_train_dag_artefacts_match_dvc_repro(ran: dict) -> None:
    dag_outs, ref_outs = lock_outs(ran["project"]), lock_outs(ran["reference"])
    stages = ["generate", *TRAIN_STAGES[1:]]
    assert set(stages) <= set(dag_outs)
    # timings; the materialised window's clock; the Optuna study's storage (trial start / end times)
    volatile = ("_throughput.json", "materialize.json", ".db")
    # the session's reference runs the training stages only (drift reads OVERRIDES' settings)
    for stage in (s for s in stages if s != "drift"):
        a = {p: m for p, m in dag_outs[stage].items() if not p.endswith(volatile)}
        b = {p: m for p, m in ref_outs[stage].items() if not p.endswith(volatile)}
        assert a == b, stage
    for name in ("ranking.json", "evaluate.json", "ingest.json", "features.json"):
        assert (ran["project"] / "metrics" / name).read_text() == (ran["reference"] / "metrics" / name).read_text()
    drift = json.loads((ran["project"] / "metrics" / "drift.json").read_text())
    assert drift["gate"] == "drift" and drift["passed"], drift["reason"]  # the offline gate's evidence


def test_promote_dag_takes_the_first_model_to_production(ran: dict) -> None:
    from components.core.catalog import DataPaths
    from components.deploy.registry import ModelRegistry

    assert ran["promote"]["state"] == "success", ran["promote"]
    assert ran["promote"]["tasks"]["deployment"] == "success"
    version = (ran["project"] / "data/models/ranker/LATEST").read_text().strip()
    registry = ModelRegistry(DataPaths(ran["project"]))
    assert registry.deployment().production.version == version
    stages = [h.to_stage for h in registry.history(version)]
    assert stages == ["candidate", "shadow", "canary", "production"]
    for gate in ("offline", "shadow", "canary"):
        verdict = json.loads((ran["project"] / f"metrics/gate_{gate}.json").read_text())
        assert verdict["passed"] and verdict["candidate"] == version
        assert "first model" in verdict["reason"]
    assert registry.check() == []


@pytest.fixture
def postgres_airflow(ran: dict, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh Postgres metadata database, LocalExecutor, and an execution API on 127.0.0.1."""
    psycopg2 = pytest.importorskip("psycopg2")
    name = f"reco_airflow_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    port = free_port()
    env = _airflow_env(
        ran["project"], tmp_path,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="2",
        AIRFLOW__API_AUTH__JWT_SECRET=uuid.uuid4().hex,
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
    )
    server = None
    try:
        _airflow(env, "db", "migrate")
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "api-server", "--host", "127.0.0.1",
             "--port", str(port), "--apps", "execution"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, "api-server exited"
                time.sleep(0.5)
        else:
            pytest.fail("the Airflow API server did not start in 120 s")
        yield env
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.mark.postgres
def test_postgres_local_executor_rerun_is_a_no_op(ran: dict, postgres_airflow: dict[str, str]) -> None:
    import psycopg2

    before = (ran["project"] / "dvc.lock").read_text()
    result = _dag_test(postgres_airflow, ran["project"], "train_recommender", use_executor=True)
    assert result["state"] == "success", result
    tasks = result["tasks"]
    assert all(tasks[s] == "success" for s in TRAIN_STAGES), tasks
    assert tasks["register_candidate"] == "skipped"  # same artefact: nothing new to promote
    assert (result["executor"], result["database"]) == ("LocalExecutor", "postgresql")
    assert (ran["project"] / "dvc.lock").read_text() == before
    url = postgres_airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    conn = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    with conn, conn.cursor() as cur:
        cur.execute("select count(*) from task_instance where dag_id = 'train_recommender' and state = 'success'")
        (done,) = cur.fetchone()
    conn.close()
    assert done == len(TRAIN_STAGES)


def _drift_root(ran: dict, target: Path, shift: float | None) -> Path:
    """A project folder with the DAG run's features and events, whose newest feature snapshot
    (the current window) is redrawn from the earlier snapshots (the reference window): the same
    distribution by construction. The 7-day tiny data set is still warming up (7-day counters
    grow through its first week), so its own last day differs from the days before it.
    ``shift`` then scales every numeric feature of the current window."""

    import numpy as np
    import pandas as pd

    for sub in ("data/features", "data/interim"):
        shutil.copytree(ran["project"] / sub, target / sub)
    shutil.copy(ran["project"] / "params.yaml", target / "params.yaml")
    rng = np.random.default_rng(5)
    for table in ("user_features", "content_features"):
        path = target / f"data/features/{table}.parquet"
        frame = pd.read_parquet(path)
        newest = frame["event_timestamp"].max()
        current = frame["event_timestamp"] == newest
        past = frame[~current]
        redrawn = past.iloc[rng.integers(0, len(past), int(current.sum()))].assign(event_timestamp=newest)
        if shift is not None:
            cols = [c for c in redrawn.select_dtypes("number").columns if not c.endswith(("_id", "_idx"))]
            redrawn[cols] = redrawn[cols] * shift + shift
        pd.concat([past, redrawn], ignore_index=True).to_parquet(path, index=False)
    return target


@pytest.mark.parametrize("shift", [None, 3.0], ids=["unshifted", "shifted"])
def test_monitor_drift_requests_retraining_only_on_drift(ran: dict, tmp_path: Path, shift: float | None) -> None:
    root = _drift_root(ran, tmp_path / "proj", shift)
    env = {**ran["env"], "RECO_PROJECT_ROOT": str(root)}
    result = _dag_test(env, ran["project"], "monitor_drift")
    assert result["state"] == "success", result
    verdict = json.loads((root / "metrics/drift.json").read_text())
    assert (root / "reports/drift.html").stat().st_size > 10_000
    feature = verdict["families"]["feature"]
    if shift is None:
        assert not verdict["retrain_requested"], verdict["reason"]
        assert result["tasks"]["request_retrain"] == "skipped"
    else:
        assert verdict["retrain_requested"] and feature["drifted"]
        assert feature["share_drifted"] > 0.5
        assert result["tasks"]["request_retrain"] == "success"
        db = sqlite3.connect(ran["home"] / "airflow.db")
        names = [n for (n,) in db.execute("select a.name from asset_event e join asset a on a.id = e.asset_id")]
        assert "reco_retrain_request" in names


def test_materialize_features_is_incremental_with_an_overlap(ran: dict) -> None:
    """Runs last: it rewrites the materialisation record of the DAG run's project."""
    import pandas as pd

    before = json.loads((ran["project"] / "metrics/materialize.json").read_text())
    result = _dag_test(ran["env"], ran["project"], "materialize_features")
    assert result["state"] == "success" and result["tasks"] == {"materialize": "success"}, result
    after = json.loads((ran["project"] / "metrics/materialize.json").read_text())
    previous_end = {v["view"]: pd.Timestamp(v["end"]) for v in before["views"]}
    assert after["views"] and all(v["incremental"] for v in after["views"])
    for v in after["views"]:
        # starts the configured overlap before the previous run's end (late data), ends at the
        # data interval's end (an hour boundary after the tiny data set's last event)
        assert pd.Timestamp(v["start"]) == previous_end[v["view"]] - pd.Timedelta(hours=after["overlap_hours"])
        assert pd.Timestamp(v["end"]) > previous_end[v["view"]] and pd.Timestamp(v["end"]).minute == 0
