"""One worker against two: feed throughput and p99 latency of the real server with
``RECO_WORKERS=1`` and ``RECO_WORKERS=2`` (issue 16), and whether ``/metrics`` counted every
worker's requests.

For each worker count: start ``python -m components.serving.app`` on a free port of 127.0.0.1
over ``--root`` (a project built by ``make demo`` by default; the start-up and the closed-loop
client are :mod:`benchmarks.bench_serving`'s), send ``--warmup-s`` of traffic (not counted),
then ``GET /v1/recommend`` from ``--concurrency`` keep-alive connections for ``--seconds``, read
``reco_requests_total{endpoint="recommend",status="200"}`` from ``/metrics`` before and after, and
stop the server. Bounded: two short levels, 127.0.0.1 only.

    .venv/bin/python -m benchmarks.bench_workers                      # ~2 x (start + 20 s)
    .venv/bin/python -m benchmarks.bench_workers --root /path/to/project --seconds 10
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_serving import _processes, _users, run_level, start_server, stop_server
from components.core.catalog import PROJECT_ROOT

FEED_COUNT = re.compile(r'^reco_requests_total\{endpoint="recommend",status="200"\} ([0-9.e+]+)$', re.M)


def feed_count(port: int) -> int:
    found = FEED_COUNT.search(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text)
    return int(float(found.group(1))) if found else 0


def measure(root: Path, workers: int, users: list[str], args: argparse.Namespace) -> dict[str, Any]:
    proc, port, ready_s, _ = start_server(root, workers, f"bench-workers-{workers}.log")
    try:
        server = _processes(proc)
        run_level(port, users, args.k, args.concurrency, args.warmup_s, server, 0.0)
        before = feed_count(port)
        level = run_level(port, users, args.k, args.concurrency, args.seconds, server, 0.0)
        counted = feed_count(port) - before
    finally:
        stop_server(proc)
    return {"workers": workers, "ready_s": ready_s, "counted": counted, **level}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="a project built by `make demo`")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    users, where = _users(args.root, args.users, args.seed)
    print(f"{where}; concurrency {args.concurrency}, {args.seconds:g} s a level")
    rows = [measure(args.root, w, users, args) for w in args.workers]
    print(f"{'workers':>7} {'ready s':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'degraded':>8} {'sent':>6} {'/metrics':>8}")
    for r in rows:
        print(
            f"{r['workers']:>7} {r['ready_s']:>8.1f} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['errors']:>6} {r['degraded']:>8} {r['requests']:>6} {r['counted']:>8}"
        )
    exact = all(r["counted"] == r["requests"] for r in rows if r["errors"] == 0)
    print("/metrics counted every request of every worker" if exact else "/metrics MISSED requests")
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
