"""Load benchmark of the serving API: p50 / p99 latency, throughput, errors and peak memory.

Starts ``python -m components.serving.app`` on a free port of 127.0.0.1 over a built project
(default: this one, after ``make demo``), then sends ``GET /v1/recommend`` for random known
users from C concurrent clients for D seconds per level. Traffic goes to 127.0.0.1 only and is
bounded by the duration and the client count.

    .venv/bin/python -m benchmarks.bench_serving --concurrency 1 8 32 --seconds 60

The issue's targets (p99 <= 20 ms at concurrency 1; >= 200 requests/s with p99 <= 100 ms on 2
cores; zero errors) are stated for a 1M-item catalogue; this script measures whatever catalogue
the project holds and prints its size.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from components.paths import PROJECT_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _users(root: Path, n: int, seed: int) -> list[str]:
    import pandas as pd

    drops = root / "data" / "drops"
    source = next(p for p in sorted(drops.iterdir()) if (p / "events").exists())
    ids = pd.read_parquet(source / "events", columns=["user_id"])["user_id"].dropna().astype(str).unique()
    rng = random.Random(seed)
    return rng.sample(sorted(ids), min(n, len(ids)))


def run_level(base: str, users: list[str], k: int, concurrency: int, seconds: float, server: psutil.Process) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    degraded = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    peak = [server.memory_info().rss]

    def client(i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=base, timeout=10) as c:
            while time.monotonic() < stop:
                u = rng.choice(users)
                t0 = time.perf_counter()
                try:
                    r = c.get("/v1/recommend", params={"user_id": u, "k": k})
                    ok = r.status_code == 200
                    deg = ok and r.json().get("degraded", False)
                except httpx.HTTPError:
                    ok, deg = False, False
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    errors[0] += 0 if ok else 1
                    degraded[0] += 1 if deg else 0

    def sample_memory() -> None:
        while time.monotonic() < stop:
            peak[0] = max(peak[0], server.memory_info().rss)
            time.sleep(0.2)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    mem = threading.Thread(target=sample_memory)
    t0 = time.monotonic()
    for t in (*threads, mem):
        t.start()
    for t in (*threads, mem):
        t.join()
    wall = time.monotonic() - t0
    lat = np.array(latencies) * 1000.0
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "rps": len(lat) / wall,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "errors": errors[0],
        "degraded": degraded[0],
        "peak_rss_mb": peak[0] / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="a project built by `make demo`")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    port = _free_port()
    env = {**os.environ, "RECO_PROJECT_ROOT": str(args.root), "HOST": "127.0.0.1", "PORT": str(port)}
    env.setdefault("RECO_DEMO", "1")
    proc = subprocess.Popen([sys.executable, "-m", "components.serving.app"], env=env, cwd=args.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit("the server exited during start-up")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server was not ready in 300 s")
            time.sleep(0.5)
        users = _users(args.root, args.users, args.seed)
        server = psutil.Process(proc.pid)
        import pandas as pd

        catalogue = len(pd.read_parquet(args.root / "data" / "interim" / "content.parquet", columns=["content_id"]))
        print(f"serving benchmark: catalogue {catalogue:,} contents, {len(users):,} users, k={args.k}, "
              f"{args.seconds:.0f} s per level, {psutil.cpu_count()} cores")
        print(f"{'conc':>5} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'degraded':>9} {'peak MB':>8}")
        for c in args.concurrency:
            r = run_level(base, users, args.k, c, args.seconds, server)
            print(f"{r['concurrency']:>5} {r['requests']:>9} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                  f"{r['errors']:>7} {r['degraded']:>9} {r['peak_rss_mb']:>8.0f}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
