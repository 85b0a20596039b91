"""Airflow reads its configuration when first imported: point it at a throw-away home first,
so that importing DAGs in the test process never touches ~/airflow."""

from __future__ import annotations

import os
import tempfile

from components.core.catalog import PROJECT_ROOT

_HOME = tempfile.mkdtemp(prefix="reco-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_HOME}/airflow.db")
