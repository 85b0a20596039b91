"""A real serving process for the fault-injection and bad-input suites: started on a free port
of 127.0.0.1 over a tiny trained project (:mod:`components.serving.process`), stopped gently or
killed with SIGKILL."""

from __future__ import annotations

from pathlib import Path

from components.serving.process import ServerProcess as Server
from components.serving.process import spawn
from tests.fixtures.tiny_project import tool_env

__all__ = ["API_KEY", "Server", "start_server"]

API_KEY = "fault-secret"


def start_server(project: Path, logs: Path, **extra: str) -> Server:
    """``python -m components.serving.app`` over ``project``; returns once ``/healthz`` answers."""
    env: dict[str, str | None] = {
        **tool_env(**{"RECO_API_KEYS": f"test:{API_KEY}", "RECO_RATE_LIMIT_PER_S": "1000", "RECO_ONLINE_UPDATE": "0", **extra}),
        "RECO_DEMO": None,  # the test HMAC key of tool_env, not the demo's
    }
    return spawn(project, env, logs, timeout_s=240)
