"""A real serving process for the fault-injection and bad-input suites: started on a free port
of 127.0.0.1 over a tiny trained project, stopped gently or killed with SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.fixtures.tiny_project import free_port, tool_env

API_KEY = "fault-secret"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def kill9(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no atexit."""
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def start_server(project: Path, logs: Path, **extra: str) -> Server:
    """``python -m components.serving.app`` over ``project``; returns once ``/healthz`` answers."""
    port = free_port()
    log_path = logs / f"server-{port}.log"
    env = tool_env(
        **{
            "RECO_PROJECT_ROOT": str(project), "HOST": "127.0.0.1", "PORT": str(port), "RECO_API_KEYS": f"test:{API_KEY}",
            "RECO_RATE_LIMIT_PER_S": "1000", "RECO_ONLINE_UPDATE": "0", **extra,
        }
    )
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "components.serving.app"], env=env, cwd=project, stdout=log, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 240
    while True:
        if proc.poll() is not None:
            raise AssertionError(log_path.read_text()[-3000:])
        try:
            if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError("server did not start in 240 s")
        time.sleep(0.5)
