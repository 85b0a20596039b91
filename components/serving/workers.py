"""The launcher of ``RECO_WORKERS`` > 1 server processes, and their supervisor.

Each worker is a spawned process with its own listening socket on the same port
(``SO_REUSEPORT``: the kernel spreads new connections over the workers; one shared socket lets
whichever worker wakes first take most of them), loading its own engine. Before the first
worker starts, the launcher points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder, so every
worker's counters land in shared files that ``/metrics`` reads whole
(:mod:`components.serving.metrics`).

A worker that dies (a crash, the OOM killer, ``kill -9``) is marked dead for Prometheus and
replaced; the others keep serving meanwhile. A crash loop (more than ``3 x workers`` deaths
within a minute) stops the server instead of spinning.

Why not uvicorn's own supervisor (``uvicorn --workers``)? uvicorn 0.54 does replace a dead
worker, but all its workers share one listening socket (the imbalance above) and it has no hook
to mark a dead worker's Prometheus files; this loop is short, so the launcher stays here.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.serving.metrics import FEAST_MULTIPROC_ENV, MULTIPROC_ENV, mark_dead

log = logging.getLogger(__name__)

#: deaths within this window that count as a crash loop (times the worker count)
CRASH_WINDOW_S = 60.0
CRASH_DEATHS_PER_WORKER = 3


def listen(host: str, port: int) -> socket.socket:
    """A listening socket of its own with SO_REUSEPORT (see the module doc)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def worker_main(host: str, port: int) -> None:
    """One worker process: its socket, its engine (``app.worker_app``), uvicorn."""
    import uvicorn

    from components.serving.app import worker_app

    sock = listen(host, port)
    app = worker_app()
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=False))
    server.run(sockets=[sock])  # the app's lifespan flushes the impressions on SIGTERM


def fresh_metrics_dir() -> tuple[Path, bool]:
    """The multiprocess metrics folder, emptied (the operator's ``PROMETHEUS_MULTIPROC_DIR``,
    else a new temporary folder, removed at the end), set in both spellings for the workers."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path, owned = Path(given), False
        path.mkdir(parents=True, exist_ok=True)
        for f in path.glob("*.db"):
            f.unlink()
    else:
        path, owned = Path(tempfile.mkdtemp(prefix="reco-metrics-")), True
    os.environ[MULTIPROC_ENV] = str(path)
    os.environ[FEAST_MULTIPROC_ENV] = str(path)
    return path, owned


class Supervisor:
    """Starts ``workers`` processes from ``spawn()`` and keeps that many alive."""

    def __init__(self, spawn: Callable[[int], Any], workers: int, poll_s: float = 0.5) -> None:
        self.spawn = spawn
        self.procs = [spawn(i) for i in range(workers)]
        self.poll_s = poll_s
        self.stopping = threading.Event()
        self.deaths: deque[float] = deque()
        self.replaced = 0

    def check(self) -> bool:
        """Replace the dead workers; False on a crash loop (the caller stops)."""
        for i, p in enumerate(self.procs):
            if p.is_alive() or self.stopping.is_set():
                continue
            p.join(timeout=1)
            mark_dead(p.pid)
            now = time.monotonic()
            self.deaths.append(now)
            while self.deaths and self.deaths[0] < now - CRASH_WINDOW_S:
                self.deaths.popleft()
            if len(self.deaths) > CRASH_DEATHS_PER_WORKER * len(self.procs):
                log.error("%d worker deaths within %.0f s: stopping", len(self.deaths), CRASH_WINDOW_S)
                return False
            log.error("worker %s (pid %s) exited with %s: starting a new one", p.name, p.pid, p.exitcode)
            self.procs[i] = self.spawn(i)
            self.replaced += 1
        return True

    def run(self) -> int:
        """Until told to stop (0) or a crash loop (1); then stop every worker."""
        crashed = False
        while not self.stopping.wait(self.poll_s):
            if not self.check():
                crashed = True
                break
        self.stop_all()
        return 1 if crashed else 0

    def stop_all(self, timeout_s: float = 30.0) -> None:
        self.stopping.set()
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=timeout_s)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)


def serve_workers(host: str, port: int, workers: int) -> int:
    """Run ``workers`` server processes (spawned) under a :class:`Supervisor` until SIGTERM /
    SIGINT."""
    import multiprocessing

    metrics_dir, owned = fresh_metrics_dir()
    ctx = multiprocessing.get_context("spawn")

    def spawn(i: int) -> Any:
        p = ctx.Process(target=worker_main, args=(host, port), name=f"serve-{i}")
        p.start()
        return p

    sup = Supervisor(spawn, workers)

    def stop(*_: Any) -> None:
        sup.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return sup.run()
    finally:
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)
