"""Where a serving process's memory grows: with ``RECO_TRACEMALLOC_S`` set to N, each server
process starts :mod:`tracemalloc` once it has loaded and logs, every N seconds, the source lines
whose live allocations grew the most since then (``memory growth since start-up: ...``).

A diagnostic for soaks (``benchmarks/bench_soak.py --trace-s``) and for an operator chasing a
growing RSS; tracemalloc costs CPU on every allocation, so it is off unless asked for. Written
over the standard library's tracemalloc (snapshot comparison by line), nothing else needed.
"""

from __future__ import annotations

import logging
import threading
import tracemalloc

log = logging.getLogger(__name__)

#: frames kept per allocation: the line that allocated (more frames cost much more CPU)
FRAMES = 1
#: lines reported per interval
TOP = 12


def start(every_s: float) -> threading.Event:
    """Trace allocations from now on; a daemon thread logs the top growth every ``every_s``
    seconds until the returned event is set."""
    tracemalloc.start(FRAMES)
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            log.warning("memory growth since start-up: %s", report())

    threading.Thread(target=run, name="memtrace", daemon=True).start()
    log.warning("tracemalloc on: memory growth logged every %.0f s (RECO_TRACEMALLOC_S)", every_s)
    return stop


def report(top: int = TOP) -> str:
    """The live traced total and the ``top`` lines holding the most of it (one line each)."""
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>"))
    )
    stats = snap.statistics("lineno")
    total = sum(s.size for s in stats)
    parts = [f"{total / 2**20:.1f} MB traced in all"]
    for s in stats[:top]:
        frame = s.traceback[0]
        parts.append(f"{s.size / 2**20:.2f} MB in {s.count} blocks at {frame.filename}:{frame.lineno}")
    return " | ".join(parts)
