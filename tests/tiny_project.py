"""A throw-away copy of the project on a tiny synthetic data set, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.config import deep_merge
from components.paths import PROJECT_ROOT

TINY = {"n_users": 150, "n_items": 400, "n_creators": 40, "n_events": 15_000, "days": 7}
HMAC_KEY = "e2e-test-key"


def tool_env(**extra: str) -> dict[str, str]:
    """The environment stage commands run in: this venv first on PATH, a test HMAC key."""
    env = {**os.environ, "RECO_HMAC_KEY": HMAC_KEY, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RECO_DEMO", None)
    env.update(extra)
    return env


def dvc(root: Path, *args: str) -> str:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args], cwd=root, env=tool_env(), capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def make_project(root: Path, overrides: Mapping[str, Any] | None = None, *, dags: bool = False) -> Path:
    """Copy the code, data sets and DVC pipeline into ``root`` with the tiny generator settings."""
    names = ["components", "datasets", "feature_repo"] + (["dags"] if dags else [])
    for name in names:
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(PROJECT_ROOT / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["datagen"].update(TINY)
    params = deep_merge(params, overrides or {})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(root, "init", "--no-scm", "-q")
    dvc(root, "config", "core.analytics", "false")
    return root


def lock_outs(root: Path) -> dict[str, dict[str, str]]:
    """Per stage in dvc.lock: out path -> md5."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {
        stage: {o["path"]: o.get("md5", "") for o in body.get("outs", [])}
        for stage, body in lock.get("stages", {}).items()
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trained_project(root: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """A tiny project with features materialised, candidates, a trained ranker registered and
    promoted to production (what serving needs)."""
    from datetime import UTC, datetime

    from components.paths import DataPaths
    from components.registry import ModelRegistry
    from components.registry import run as register

    make_project(root, overrides)
    dvc(root, "repro", "materialize", "candidates", "train")
    paths = DataPaths(root)
    now = datetime.now(UTC)
    version = register(paths, now=now, reason="test").version
    with ModelRegistry(paths) as reg:
        for stage in ("shadow", "canary", "production"):
            reg.promote(version, stage, now=now, reason="test setup")
    return root
