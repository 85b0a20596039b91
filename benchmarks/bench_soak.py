"""Soak benchmark of the serving API: does anything grow or slow down over a long run?

Starts the real server (``python -m components.serving.app``, ``--workers`` processes, on a
free port of 127.0.0.1 over a project built by ``make demo``; the start-up, client loop and
user sampling are :mod:`benchmarks.bench_serving`'s), measures its feed capacity for
``--capacity-s`` seconds (closed loop, ``--capacity-concurrency`` connections), then sends
mixed traffic for ``--minutes``: ``GET /v1/recommend`` paced at ``--load`` of that capacity
over keep-alive connections, and ``POST /v1/events`` batches (views, likes, complete views,
skips of catalogue contents by known users, fresh event ids) at ``--event-batches-per-s``.
Traffic goes to 127.0.0.1 only and stops by itself. The posted events are real: they land in
the project's stream (``data/stream/events``), which the next ``ingest`` reads, so soak a
scratch copy of the project (``--root``), not the one you train from.

Every ``--sample-s`` it records, over the window just ended: p99 latency of feeds and of event
posts, errors; the server processes' RSS and anonymous RSS (``RssAnon``: heap, not the
memory-mapped artefacts whose pages count in RSS as requests touch them), their open file
descriptors; and the event stream follower's poll time, measured in this process on the
serving code's own :class:`~components.serving.events.StreamFollower` tailing the server's
stream (positioned at its end at the start, like a worker's): ``scan`` is the median of three
polls with nothing new (the cost every worker pays every ``serving.stream_poll_s``), ``absorb``
the poll that takes the window's new events. The table compares the first window after the
warm-up with the last one and says whether each figure stayed flat (the tolerances are
options). Latency is measured from the send of each request (a paced client: requests that
fall behind schedule are sent at once, not dropped).

    .venv/bin/python -m benchmarks.bench_soak                        # 30 min, 2 workers
    .venv/bin/python -m benchmarks.bench_soak --minutes 3 --sample-s 30
    .venv/bin/python -m benchmarks.bench_soak --root /tmp/copy --minutes 95 --judge-from-min 65 --json soak.json

Each worker keeps one hour of each user's events (the real-time windows), so its memory fills
for the first hour of traffic by design. Two ways to compare steady state with steady state:
``--backfill-min 60`` posts the past hour's events (at the soak's event rate, timestamps spread
over that hour) before the warm-up, so the windows start full and then turn over; or a run
longer than an hour with ``--judge-from-min`` past it. ``--json`` keeps every window.

    .venv/bin/python -m benchmarks.bench_soak --root /tmp/copy --backfill-min 60 --minutes 40 --judge-from-min 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import psutil

from benchmarks.bench_serving import (
    _processes,
    _read_response,
    _users,
    run_level,
    start_server,
    stop_server,
)
from components.core.catalog import PROJECT_ROOT, DataPaths

API_KEY = "soak-key"
EVENT_TYPES = ("view", "view", "view", "like", "complete_view", "skip")


@dataclass
class Traffic:
    """Completed requests: (monotonic end time, latency s, ok) per kind, appended by the client."""

    feed: list[tuple[float, float, bool]] = field(default_factory=list)
    events: list[tuple[float, float, bool]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        if len(self.errors) < 10:
            self.errors.append(what)


def _window(rows: list[tuple[float, float, bool]], t0: float, t1: float) -> tuple[int, float, int]:
    """(requests, p99 ms, errors) of the rows that ended in [t0, t1)."""
    sel = [(lat, ok) for t, lat, ok in rows[-200_000:] if t0 <= t < t1]
    if not sel:
        return 0, float("nan"), 0
    lat = np.array([s[0] for s in sel]) * 1000.0
    return len(sel), float(np.percentile(lat, 99)), sum(not s[1] for s in sel)


# --------------------------------------------------------------------------------- the client


async def _paced(port: int, rate: float, stop: float, make: Callable[[int], bytes], ok: Callable[[int, bytes], bool],
                 rows: list[tuple[float, float, bool]], traffic: Traffic) -> None:
    """One keep-alive connection sending ``make(n)`` at ``rate`` per second until ``stop``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    interval, due, n = 1.0 / rate, time.monotonic(), 0
    try:
        while due < stop:
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 1.0:  # far behind schedule: do not burst to catch up
                due = now
            due += interval
            n += 1
            t0 = time.perf_counter()
            try:
                writer.write(make(n))
                status, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                traffic.error(f"{type(exc).__name__}: {exc}")
                rows.append((time.monotonic(), time.perf_counter() - t0, False))
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            good = ok(status, body)
            if not good:
                traffic.error(f"HTTP {status}: {body[:120]!r}")
            rows.append((time.monotonic(), time.perf_counter() - t0, good))
    finally:
        writer.close()


def _feed_request(users: list[str], k: int, seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)

    def make(n: int) -> bytes:
        user = rng.choice(users)
        return f"GET /v1/recommend?user_id={quote(user)}&k={k} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()

    return make


def _random_event(rng: random.Random, event_id: str, users: list[str], contents: list[str], ts: float) -> dict[str, Any]:
    """One event of a random kind (``EVENT_TYPES``) by a random known user on a random content at ``ts``."""
    kind = rng.choice(EVENT_TYPES)
    ev: dict[str, Any] = {"event_id": event_id, "event_type": kind, "user_id": rng.choice(users),
                          "content_id": rng.choice(contents),
                          "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "+00:00"}
    if kind == "view":
        ev["watch_duration_s"] = round(rng.uniform(1.0, 30.0), 1)
    return ev


def _events_request(users: list[str], contents: list[str], size: int, seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    run = f"soak-{int(time.time())}-{seed}"

    def make(n: int) -> bytes:
        now = time.time()
        events = []
        for i in range(size):
            events.append(_random_event(rng, f"{run}-{n}-{i}", users, contents, now))
        body = json.dumps({"events": events}).encode()
        head = (f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        return head + body

    return make


def backfill(port: int, users: list[str], contents: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Post ``--backfill-min`` minutes of past events at the soak's event rate (timestamps spread
    evenly over that span, oldest first, ``--backfill-batch`` per post), so that the workers'
    one-hour real-time windows hold what they hold at steady state before the soak starts
    instead of filling during it. Returns what was posted and how long it took."""
    import httpx

    rng = random.Random(args.seed + 7)
    span_s = args.backfill_min * 60.0
    total = int(args.event_batches_per_s * args.event_batch * span_s)
    t_end = time.time() - 5.0
    stamps = sorted(t_end - rng.uniform(0.0, span_s) for _ in range(total))
    run = f"soak-backfill-{int(t_end)}"
    t0, accepted = time.monotonic(), 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": API_KEY}, timeout=120) as client:
        for b in range(0, total, args.backfill_batch):
            events = []
            for i, ts in enumerate(stamps[b : b + args.backfill_batch], start=b):
                events.append(_random_event(rng, f"{run}-{i}", users, contents, ts))
            r = client.post("/v1/events", json={"events": events})
            if r.status_code != 200:
                raise SystemExit(f"backfill: HTTP {r.status_code}: {r.text[:300]}")
            accepted += int(r.json()["accepted"])
    return {"events": float(total), "accepted": float(accepted), "seconds": time.monotonic() - t0}


def _feed_ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"items"' in body


def _events_ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"accepted"' in body


def run_traffic(port: int, users: list[str], contents: list[str], args: argparse.Namespace, feed_rate: float,
                seconds: float, traffic: Traffic) -> None:
    """Paced feeds over ``args.connections`` connections and paced event batches on one."""
    stop = time.monotonic() + seconds
    per_conn = feed_rate / args.connections

    async def clients() -> None:
        feeds = [_paced(port, per_conn, stop, _feed_request(users, args.k, args.seed + i), _feed_ok, traffic.feed, traffic)
                 for i in range(args.connections)]
        events = [_paced(port, args.event_batches_per_s, stop, _events_request(users, contents, args.event_batch, args.seed),
                         _events_ok, traffic.events, traffic)] if args.event_batches_per_s > 0 else []
        await asyncio.gather(*feeds, *events)

    try:  # uvloop when installed, as bench_serving
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(clients())
    except ImportError:
        asyncio.run(clients())


# ------------------------------------------------------------------------------ the server's state


def _server_state(proc: Any) -> dict[str, float]:
    """RSS, anonymous RSS and open file descriptors summed over the server's processes."""
    rss = anon = 0.0
    fds = files = 0
    for p in _processes(proc):
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            rss += p.memory_info().rss / 2**20
            fds += p.num_fds()
            files += len(p.open_files())
            status = Path(f"/proc/{p.pid}/status").read_text()
            anon += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("RssAnon:")) / 1024
    return {"rss_mb": rss, "anon_mb": anon, "fds": fds, "open_files": files}


class StreamProbe:
    """The serving code's stream follower in this process, tailing the server's event stream."""

    def __init__(self, root: Path) -> None:
        from components.core.config import load_params
        from components.serving.events import EventSink, StreamFollower, limits_from

        params = load_params(root / "params.yaml")
        self.paths = DataPaths(root)
        sink = EventSink(self.paths, key=b"soak-probe", limits=limits_from(params), known_content=set())
        self.follower = StreamFollower(sink, poll_s=3600.0)  # polled here, never by its own thread

    def sample(self) -> dict[str, float]:
        t0 = time.perf_counter()
        taken = self.follower.poll()
        absorb = time.perf_counter() - t0
        scans = []
        for _ in range(3):
            t0 = time.perf_counter()
            self.follower.poll()
            scans.append(time.perf_counter() - t0)
        folder = self.paths.of("stream_events")
        n_files = sum(1 for _ in folder.rglob("*.parquet")) if folder.exists() else 0
        return {"poll_scan_ms": statistics.median(scans) * 1000.0, "poll_absorb_ms": absorb * 1000.0,
                "absorbed": float(taken), "stream_files": float(n_files)}


# --------------------------------------------------------------------------------------- main

COLUMNS = (("feed_p99_ms", "feed p99 ms"), ("events_p99_ms", "events p99 ms"), ("rss_mb", "RSS MB"),
           ("anon_mb", "anon RSS MB"), ("fds", "open fds"), ("open_files", "open files"),
           ("poll_scan_ms", "poll scan ms"), ("poll_absorb_ms", "poll+absorb ms"))


def _sampler(proc: Any, probe: StreamProbe, traffic: Traffic, t_begin: float, every: float, stop: threading.Event,
             out: list[dict[str, float]]) -> None:
    t_prev = t_begin
    while not stop.wait(max(0.0, t_prev + every - time.monotonic())):
        t_now = time.monotonic()
        n_feed, p99_feed, err_feed = _window(traffic.feed, t_prev, t_now)
        n_ev, p99_ev, err_ev = _window(traffic.events, t_prev, t_now)
        row = {"t_min": (t_now - t_begin) / 60.0, "feeds": n_feed, "feed_rps": n_feed / (t_now - t_prev),
               "feed_p99_ms": p99_feed, "feed_errors": err_feed, "event_posts": n_ev, "events_p99_ms": p99_ev,
               "event_errors": err_ev, **_server_state(proc), **probe.sample()}
        out.append(row)
        print(f"  {row['t_min']:6.1f} min  {row['feed_rps']:6.1f} feeds/s  feed p99 {p99_feed:7.1f} ms  "
              f"events p99 {p99_ev:7.1f} ms  errors {err_feed + err_ev}  RSS {row['rss_mb']:6.0f} MB "
              f"(anon {row['anon_mb']:5.0f})  fds {row['fds']:4.0f}  poll {row['poll_scan_ms']:6.2f} ms "
              f"({row['stream_files']:.0f} stream files)", flush=True)
        t_prev = t_now


def _flat(key: str, start: float, end: float, args: argparse.Namespace) -> tuple[bool, str]:
    """Whether ``end`` stayed within the tolerance of ``start`` (and the rule used)."""
    if key in ("feed_p99_ms", "events_p99_ms"):
        bound = start * args.p99_ratio + 5.0
        return end <= bound, f"<= {args.p99_ratio:g} x start + 5 ms"
    if key in ("rss_mb", "anon_mb"):
        return end - start <= args.rss_mb, f"+{args.rss_mb:g} MB"
    if key in ("fds", "open_files"):
        return end - start <= args.fds, f"+{args.fds:g}"
    bound = start * args.poll_ratio + 1.0
    return end <= bound, f"<= {args.poll_ratio:g} x start + 1 ms"


def report(rows: list[dict[str, float]], args: argparse.Namespace) -> bool:
    """Print the start / end table; True when every figure stayed flat."""
    first = next((r for r in rows if r["t_min"] >= args.judge_from_min), rows[0])
    last = rows[-1]
    print(f"\nsoak: start = window ending at {first['t_min']:.1f} min, end = window ending at {last['t_min']:.1f} min")
    print(f"{'figure':>16} {'start':>10} {'end':>10} {'change':>10}  flat?  (tolerance)")
    all_flat = True
    for key, label in COLUMNS:
        a, b = first[key], last[key]
        ok, rule = _flat(key, a, b, args)
        all_flat &= ok
        print(f"{label:>16} {a:>10.1f} {b:>10.1f} {b - a:>+10.1f}  {'yes' if ok else 'NO':5s}  ({rule})")
    errors = sum(r["feed_errors"] + r["event_errors"] for r in rows)
    print(f"{'errors':>16} {errors:>10.0f} (feeds + event posts, all windows)")
    return all_flat and errors == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help="a project built by `make demo`")
    parser.add_argument("--minutes", type=float, default=30.0, help="duration of the soak (after the warm-up)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--load", type=float, default=0.5, help="feed rate as a share of the measured capacity")
    parser.add_argument("--capacity-s", type=float, default=20.0)
    parser.add_argument("--capacity-concurrency", type=int, default=8)
    parser.add_argument("--warmup-s", type=float, default=30.0, help="paced traffic before the soak (not counted)")
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections of the paced feeds")
    parser.add_argument("--event-batches-per-s", type=float, default=2.0)
    parser.add_argument("--event-batch", type=int, default=25, help="events per posted batch")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--p99-ratio", type=float, default=1.5)
    parser.add_argument("--rss-mb", type=float, default=64.0)
    parser.add_argument("--fds", type=float, default=16.0)
    parser.add_argument("--poll-ratio", type=float, default=2.0)
    parser.add_argument("--json", type=Path, help="also write every window's figures here")
    parser.add_argument("--backfill-min", type=float, default=0.0,
                        help="before the warm-up, post this many minutes of past events at the soak's event rate "
                             "(60 fills the one-hour real-time windows to their steady-state size at once)")
    parser.add_argument("--trace-s", type=float, default=0.0,
                        help="RECO_TRACEMALLOC_S for the server: each worker logs its memory growth by source line "
                             "this often (costs CPU on every allocation; for finding what grows, not for the latency figures)")
    parser.add_argument("--backfill-batch", type=int, default=1000, help="events per backfill post")
    parser.add_argument("--judge-from-min", type=float, default=0.0,
                        help="the start of the comparison: the first window ending at or after this minute "
                             "(state bounded by a time window, like the one hour of real-time events, fills first)")
    args = parser.parse_args(argv)
    if (args.minutes - args.judge_from_min) * 60 < 2 * args.sample_s:
        parser.error("--minutes must cover at least two --sample-s windows (a start and an end)")

    import pandas as pd

    root = args.root.resolve()
    users, what = _users(root, args.users, args.seed)
    contents = pd.read_parquet(root / "data" / "interim" / "content.parquet", columns=["content_id"])["content_id"].astype(str).tolist()
    rate_limit = max(20.0, 4 * args.event_batches_per_s)  # the soak measures growth, not the limiter
    proc, port, ready_s, log_path = start_server(root, args.workers, "bench_soak.log", {
        "RECO_API_KEYS": f"soak:{API_KEY}", "RECO_RATE_LIMIT_PER_S": f"{rate_limit:g}",
        **({"RECO_TRACEMALLOC_S": f"{args.trace_s:g}"} if args.trace_s > 0 else {})})
    rows: list[dict[str, float]] = []
    try:
        probe = StreamProbe(root)
        run_level(port, users, args.k, 4, 5.0, _processes(proc), 0.0)  # warm caches before measuring
        cap = run_level(port, users, args.k, args.capacity_concurrency, args.capacity_s, _processes(proc), 0.0)
        feed_rate = max(1.0, args.load * cap["rps"])
        print(f"soak benchmark: {what}; {args.workers} worker(s), ready after {ready_s:.0f} s; {psutil.cpu_count()} cores\n"
              f"capacity {cap['rps']:.1f} feeds/s (p99 {cap['p99_ms']:.1f} ms at concurrency {args.capacity_concurrency}, "
              f"{cap['errors']} errors) -> {feed_rate:.1f} feeds/s ({args.load:.0%}) over {args.connections} connections "
              f"+ {args.event_batches_per_s:g} event posts/s x {args.event_batch} events; warm-up {args.warmup_s:.0f} s, "
              f"then {args.minutes:g} min sampled every {args.sample_s:.0f} s (server log {log_path})", flush=True)
        if args.backfill_min > 0:
            bf = backfill(port, users, contents, args)
            print(f"backfill: {bf['accepted']:,.0f} of {bf['events']:,.0f} events of the past {args.backfill_min:g} min "
                  f"accepted in {bf['seconds']:.0f} s", flush=True)
        if args.warmup_s > 0:
            run_traffic(port, users, contents, args, feed_rate, args.warmup_s, Traffic())
            probe.sample()  # take the warm-up's events
        traffic, stop = Traffic(), threading.Event()
        sampler = threading.Thread(target=_sampler, args=(proc, probe, traffic, time.monotonic(), args.sample_s, stop, rows), daemon=True)
        sampler.start()
        run_traffic(port, users, contents, args, feed_rate, args.minutes * 60.0, traffic)
        stop.set()
        sampler.join(timeout=60)
        if proc.poll() is not None:
            raise SystemExit(f"the server exited during the soak (see {log_path})")
    finally:
        stop_server(proc)
    if len(rows) < 2:
        raise SystemExit("fewer than two sample windows: nothing to compare")
    flat = report(rows, args)
    for sample in traffic.errors:
        print(f"      error: {sample}")
    if args.json:
        args.json.write_text(json.dumps({"root": str(root), "workers": args.workers, "capacity_rps": cap["rps"],
                                         "feed_rate": feed_rate, "windows": rows}, indent=2) + "\n")
    print("all figures flat" if flat else "NOT flat (or errors): see the table")
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
