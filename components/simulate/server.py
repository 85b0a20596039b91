"""A serving process for the simulation: the API (:mod:`components.serving.process`) in
simulation mode (``RECO_SIMULATION=1``: feed requests carry the simulated time), with an API key
of its own and a rate limit the simulator cannot reach. Stopped by its owner (SIGTERM: the
impression log is flushed), or killed after ``max_life_s`` at the latest."""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from components.serving.process import ServerProcess, spawn


@dataclass
class SimServer:
    process: ServerProcess
    api_key: str
    _timer: threading.Timer | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return self.process.base

    @property
    def log(self) -> Path:
        return self.process.log

    def stop(self) -> None:
        """SIGTERM (the app flushes its impression log), SIGKILL after 60 s."""
        if self._timer is not None:
            self._timer.cancel()
        self.process.stop(grace_s=60.0)

    def kill9(self) -> None:
        self.process.kill9()


def start_server(root: Path, logs: Path, *, max_life_s: float = 3600.0, start_timeout_s: float = 600.0, **extra: str) -> SimServer:
    """Start serving the project at ``root``; returns once ``/healthz`` answers."""
    key = secrets.token_hex(16)
    env = {
        "RECO_SIMULATION": "1", "RECO_API_KEYS": f"simulator:{key}", "RECO_RATE_LIMIT_PER_S": "100000",
        "RECO_ONLINE_UPDATE": "0", "RECO_WORKERS": "1", **extra,
    }  # fmt: skip
    if not (env.get("RECO_HMAC_KEY") or os.environ.get("RECO_HMAC_KEY")):
        env["RECO_DEMO"] = "1"  # the demo's built-in pseudonymisation key, as `make demo` uses
    server = SimServer(spawn(root, env, logs, name="sim-server", timeout_s=start_timeout_s), key)
    server._timer = threading.Timer(max_life_s, server.stop)
    server._timer.daemon = True
    server._timer.start()
    return server
