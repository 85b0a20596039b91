"""Load benchmark of the serving API: p50 / p99 latency, throughput, errors and peak memory.

Starts ``python -m components.serving.app`` (``--workers`` processes) on a free port of
127.0.0.1 over a project root, waits until ``/readyz`` answers 200, then sends
``GET /v1/recommend`` from C concurrent keep-alive connections for D seconds per level.
Traffic goes to 127.0.0.1 only and is bounded by the duration and the connection count.

The client is a small asyncio HTTP/1.1 loop on raw sockets (~0.1 ms of CPU a request), because
it shares the machine's cores with the server: a heavier client would be measured as server
time. Every response is checked: a status other than 200 or a body that is not a feed counts
as an error; ``"degraded": true`` feeds are counted apart.

Roots:

* the project after ``make demo`` (default): users are the raw ids of its event drops;
* the 1M-content world of ``benchmarks/synthetic_catalogue.py`` (``--root .cache/catalogue-1m``):
  users ``bench-u000000`` … (its ``catalogue.json`` says how many).

``--cold-share`` of the requests name users nobody knows (the cold-start path).

    .venv/bin/python -m benchmarks.synthetic_catalogue            # once, ~10 min
    .venv/bin/python -m benchmarks.bench_serving --root .cache/catalogue-1m --workers 2

Targets of the issue (1M contents, 100k users): p99 <= 20 ms at concurrency 1; >= 200
requests/s with p99 <= 100 ms on 2 cores; zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import psutil

from components.core.catalog import PROJECT_ROOT
from components.serving.process import ServerStartError, spawn, stop_process


def _users(root: Path, n: int, seed: int) -> tuple[list[str], str]:
    """Raw user ids to request, and a description of where they come from."""
    rng = random.Random(seed)
    meta_path = root / "catalogue.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        fmt, total = meta["raw_user_format"], int(meta["users"])
        picked = rng.sample(range(total), min(n, total))
        return [fmt.format(i) for i in picked], f"synthetic world: {meta['items']:,} contents, {total:,} users"
    import pandas as pd

    drops = root / "data" / "drops"
    source = next(p for p in sorted(drops.iterdir()) if (p / "events").exists())
    ids = pd.read_parquet(source / "events", columns=["user_id"])["user_id"].dropna().astype(str).unique()
    content = len(pd.read_parquet(root / "data" / "interim" / "content.parquet", columns=["content_id"]))
    return rng.sample(sorted(ids), min(n, len(ids))), f"project: {content:,} contents, {len(ids):,} users"


class Level:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.degraded = 0
        self.error_samples: list[str] = []

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == "content-length:":
            length = int(line[15:].strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _connection(port: int, users: list[str], cold_share: float, k: int, stop: float, seed: int, out: Level) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while time.monotonic() < stop:
            n += 1
            user = f"bench-cold-{seed}-{n}" if rng.random() < cold_share else rng.choice(users)
            request = f"GET /v1/recommend?user_id={quote(user)}&k={k} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            t0 = time.perf_counter()
            try:
                writer.write(request)
                status, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                out.error(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            dt = time.perf_counter() - t0
            out.latencies.append(dt)
            if status != 200 or b'"items"' not in body:
                out.error(f"HTTP {status}: {body[:120]!r}")
            elif b'"degraded":true' in body:
                out.degraded += 1
    finally:
        writer.close()


def run_level(port: int, users: list[str], k: int, concurrency: int, seconds: float, server: list[psutil.Process], cold_share: float) -> dict[str, Any]:
    out = Level()
    stop = time.monotonic() + seconds
    peak = [0]

    def rss() -> int:
        total = 0
        for p in server:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def sample_memory() -> None:
        while time.monotonic() < stop:
            peak[0] = max(peak[0], rss())
            time.sleep(0.25)

    async def clients() -> None:
        await asyncio.gather(*(_connection(port, users, cold_share, k, stop, 1000 * concurrency + i, out) for i in range(concurrency)))

    mem = threading.Thread(target=sample_memory, daemon=True)
    mem.start()
    t0 = time.monotonic()
    try:  # uvloop when installed (it comes with uvicorn[standard]): less client CPU per request
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(clients())
    except ImportError:
        asyncio.run(clients())
    wall = time.monotonic() - t0
    mem.join()
    memory = _memory(server)
    lat = np.array(out.latencies) * 1000.0
    pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: float("nan"))
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "rps": len(lat) / wall,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "errors": out.errors,
        "degraded": out.degraded,
        "peak_rss_mb": peak[0] / 2**20,
        **memory,
        "error_samples": out.error_samples,
    }


def _memory(server: list[psutil.Process]) -> dict[str, float | list[float]]:
    """At the end of a level: each server process's RSS, and the processes' total RSS and PSS
    (proportional set size: a page mapped by N processes counts 1/N in each, so memory-mapped
    artefacts shared by the workers are counted once; RSS counts them in every process)."""
    rss, pss = [], 0.0
    for p in server:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            rss.append(round(info.rss / 2**20, 1))
            pss += getattr(info, "pss", info.rss) / 2**20
    return {"rss_mb_per_process": rss, "rss_mb_total": round(sum(rss), 1), "pss_mb_total": round(pss, 1)}


def _processes(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    p = psutil.Process(proc.pid)
    return [p, *p.children(recursive=True)]


def start_server(root: Path, workers: int, log_name: str, extra_env: dict[str, str] | None = None, timeout_s: float = 900) -> tuple[subprocess.Popen[bytes], int, float, Path]:
    """``python -m components.serving.app`` with ``workers`` processes on a free port of 127.0.0.1
    over ``root``, once ``/readyz`` answers 200: (process, port, seconds to ready, log path)."""
    env = {"RECO_WORKERS": str(workers), **(extra_env or {})}
    if "RECO_DEMO" not in env and "RECO_DEMO" not in os.environ:
        env["RECO_DEMO"] = "1"
    logs = root / "data" / "logs"  # git-ignored (data/)
    try:
        server = spawn(root, env, logs, name=log_name.removesuffix(".log"), probe="/readyz", timeout_s=timeout_s, cwd=PROJECT_ROOT)
    except ServerStartError as err:
        raise SystemExit(str(err)) from None
    return server.proc, server.port, server.ready_s, server.log


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    stop_process(proc, grace_s=30.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="a project built by `make demo`, or a synthetic world")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of traffic before the first level (not counted)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--users", type=int, default=20000, help="distinct known users to draw requests from")
    parser.add_argument("--cold-share", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=1, help="server processes (RECO_WORKERS)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    proc, port, ready_s, _ = start_server(root, args.workers, "bench_serving.log")
    results = []
    try:
        users, what = _users(root, args.users, args.seed)
        print(f"serving benchmark: {what}; {len(users):,} distinct users requested, {args.cold_share:.0%} cold; "
              f"k={args.k}; {args.workers} server process(es); {args.seconds:.0f} s per level; {psutil.cpu_count()} cores; "
              f"ready after {ready_s:.0f} s")
        if args.warmup > 0:
            run_level(port, users, args.k, 4, args.warmup, _processes(proc), args.cold_share)
        print(f"{'conc':>5} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} {'degraded':>9} {'peak MB':>8} {'PSS MB':>8}  RSS MB per process")
        for c in args.concurrency:
            r = run_level(port, users, args.k, c, args.seconds, _processes(proc), args.cold_share)
            results.append(r)
            print(f"{r['concurrency']:>5} {r['requests']:>9} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p90_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                  f"{r['max_ms']:>8.1f} {r['errors']:>7} {r['degraded']:>9} {r['peak_rss_mb']:>8.0f} {r['pss_mb_total']:>8.0f}  {r['rss_mb_per_process']}", flush=True)
            for sample in r["error_samples"]:  # type: ignore[union-attr]
                print(f"      error: {sample}")
    finally:
        stop_server(proc)
    if args.json:
        args.json.write_text(json.dumps({"root": str(root), "workers": args.workers, "levels": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
