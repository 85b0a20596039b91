"""A serving process for the simulation: ``python -m components.serving.app`` on a free port of
127.0.0.1 in simulation mode (``RECO_SIMULATION=1``: feed requests carry the simulated time),
with an API key of its own and a rate limit the simulator cannot reach. Stopped by its owner
(SIGTERM: the impression log is flushed), or killed after ``max_life_s`` at the latest."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SimServer:
    proc: subprocess.Popen[bytes]
    base: str
    api_key: str
    log: Path
    _timer: threading.Timer | None = field(default=None, repr=False)

    def stop(self) -> None:
        """SIGTERM (the app flushes its impression log), SIGKILL after 60 s."""
        if self._timer is not None:
            self._timer.cancel()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def start_server(root: Path, logs: Path, *, max_life_s: float = 3600.0, start_timeout_s: float = 600.0, **extra: str) -> SimServer:
    """Start serving the project at ``root``; returns once ``/healthz`` answers."""
    port = free_port()
    key = secrets.token_hex(16)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"sim-server-{port}.log"
    env = {
        **os.environ,
        "RECO_PROJECT_ROOT": str(root), "HOST": "127.0.0.1", "PORT": str(port),
        "RECO_SIMULATION": "1", "RECO_API_KEYS": f"simulator:{key}", "RECO_RATE_LIMIT_PER_S": "100000",
        "RECO_ONLINE_UPDATE": "0", "RECO_WORKERS": "1", **extra,
    }  # fmt: skip
    if not env.get("RECO_HMAC_KEY"):
        env["RECO_DEMO"] = "1"  # the demo's built-in pseudonymisation key, as `make demo` uses
    with log_path.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "components.serving.app"], env=env, cwd=root, stdout=fh, stderr=subprocess.STDOUT)
    server = SimServer(proc, f"http://127.0.0.1:{port}", key, log_path)
    server._timer = threading.Timer(max_life_s, server.stop)
    server._timer.daemon = True
    server._timer.start()
    deadline = time.monotonic() + start_timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.base}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"server did not start in {start_timeout_s:.0f} s (log {log_path})")
        time.sleep(0.5)
