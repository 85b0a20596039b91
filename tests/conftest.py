"""Session-wide fixtures: one tiny project through the whole training pipeline, shared (by copy)
by the serving, DAG and pipeline tests instead of each running `dvc repro` again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_project import pipeline_project


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project after `dvc repro` of materialize, candidates, ranking and evaluate; read
    only: copy it (``copy_project``) before changing anything."""
    return pipeline_project(tmp_path_factory.mktemp("tiny-pipeline"))
