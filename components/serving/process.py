"""The serving API as a child process on 127.0.0.1: start it on a free port, wait until it
answers, stop it gently (SIGTERM: the app flushes its impression log) or kill it.

One place for what the simulator (:mod:`components.simulate.server`), the serving benchmarks
and the end-to-end tests each did with their own copy. Written here rather than taken from a
library because it is a few lines over :mod:`subprocess` and ``httpx`` that must know this
app's probes (``/healthz`` answers once the process is up, ``/readyz`` once it can serve).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx


class ServerStartError(RuntimeError):
    """The server exited during start-up or did not answer in time (the log's tail attached)."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL when it has not exited after ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    ready_s: float = 0.0  # seconds from the spawn until the probe answered 200

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, grace_s: float = 30.0) -> None:
        stop_process(self.proc, grace_s)

    def kill9(self) -> None:
        """SIGKILL: no shutdown hook, no flush."""
        self.proc.kill()
        self.proc.wait(timeout=30)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def spawn(
    root: Path,
    env: Mapping[str, str | None],
    logs: Path,
    *,
    name: str = "server",
    probe: str = "/healthz",
    timeout_s: float = 240.0,
    cwd: Path | None = None,
) -> ServerProcess:
    """``python -m components.serving.app`` over the project at ``root`` on a free port, with
    ``env`` laid over this process's environment (a ``None`` value unsets the variable), its
    output in ``logs/<name>-<port>.log``; returns once ``probe`` answers 200."""
    port = free_port()
    log_path = logs / f"{name}-{port}.log"
    merged = {**os.environ, **env, "RECO_PROJECT_ROOT": str(root), "HOST": "127.0.0.1", "PORT": str(port)}
    full_env = {k: v for k, v in merged.items() if v is not None}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "components.serving.app"], env=full_env, cwd=cwd or root, stdout=log, stderr=subprocess.STDOUT
        )
    server = ServerProcess(proc, port, log_path)
    t0 = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                raise ServerStartError(f"the server exited during start-up ({proc.returncode}), log {log_path}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{server.base}{probe}", timeout=2).status_code == 200:
                    server.ready_s = time.monotonic() - t0
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > t0 + timeout_s:
                raise ServerStartError(f"the server did not answer {probe} in {timeout_s:.0f} s, log {log_path}:\n{_tail(log_path)}")
            time.sleep(0.5)
    except BaseException:
        server.stop()
        raise
