"""Session-wide fixtures: one tiny project through the whole training pipeline, shared (by copy)
by the serving, DAG and pipeline tests instead of each running `dvc repro` again.

``make test`` runs the suite on two pytest-xdist workers (``--dist loadscope``: a module's tests
stay on one worker, so module fixtures are built once). The session project is then built once
for both workers: the first to need it builds it under a file lock in the run's shared temporary
folder, the other waits and reuses it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from tests.fixtures.tiny_project import pipeline_project


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A tiny project after `dvc repro` of the training pipeline (materialize, candidates,
    ranking, evaluate, export); read only: copy it (``copy_project``) before changing anything."""
    if worker_id == "master":  # not under xdist
        return pipeline_project(tmp_path_factory.mktemp("tiny-pipeline"))
    shared = tmp_path_factory.getbasetemp().parent / "tiny-pipeline"
    done = shared.with_name("tiny-pipeline.built")
    with FileLock(str(shared) + ".lock"):
        if not done.exists():  # first, or the first worker's build failed: (re)build
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            pipeline_project(shared)
            done.touch()
    return shared


#: The order `make test` hands modules to its two workers (the Makefile turns off xdist's
#: reordering by test count, which put the few-test, minutes-long modules last and left one worker
#: finishing alone): the longest module first (it builds the session's tiny project; the other
#: worker meanwhile runs the unit tests, which do not need it), then the long end-to-end modules;
#: every other module keeps its place after these.
FIRST = (
    "tests/dags/test_dag_runs.py",
    "tests/unit/",
    "tests/e2e/test_ground_truth.py",
    "tests/e2e/test_serving_engine.py",
    "tests/e2e/test_serving_api.py",
    "tests/e2e/test_dvc_pipeline.py",
    "tests/e2e/test_simulate.py",
    "tests/e2e/test_fault_injection.py",
    "tests/e2e/test_workers.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return next((i for i, prefix in enumerate(FIRST) if path.startswith(prefix)), len(FIRST))

    items.sort(key=rank)  # stable: within a rank, the collection order
