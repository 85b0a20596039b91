"""The event path's costs, in process (no server), on a temporary stream:

* ``POST /v1/events``'s sink on 3,000 plain events vs 3,000 events with one unique unknown key
  each (they used to become 3,000 DataFrame columns: 2.2 s vs 0.49 s for 10k plain);
* one small batch's durable commit (staging, fsync of files and folders, SQLite commit, rename);
* a 10k-event batch's duplicate check once the commit log holds ``--stored`` ids;
* the stream follower's poll with nothing new once ``--batches`` batches are committed (it asks
  the commit log for batches after the last one; it used to rglob every stream file).

    .venv/bin/python -m benchmarks.bench_event_input --stored 200000 --batches 2000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from components.core.catalog import DataPaths
from components.core.config import load_params
from components.data.ingestion.rules import Limits
from components.serving.events import EventSink, StreamFollower

NOW = pd.Timestamp("2026-06-03T12:00:00Z")


def _events(prefix: str, n: int, unknown: bool = False) -> list[dict[str, Any]]:
    ts = (NOW - pd.Timedelta(minutes=5)).isoformat()
    out = []
    for i in range(n):
        e: dict[str, Any] = {"event_id": f"{prefix}{i}", "event_type": "like", "user_id": f"u{i % 500}", "content_id": "c1", "timestamp": ts}
        if unknown:
            e[f"key_{prefix}{i}"] = i
        out.append(e)
    return out


def _commit_only(sink: EventSink, i: int) -> None:
    """Stage, fsync, commit and place 20 already validated events (new ids each call)."""
    from components.data.ingestion.decode import decode_records
    from components.data.ingestion.process import process_drops
    from components.data.ingestion.rules import quarantine_frame

    global _TEMPLATE
    if _TEMPLATE is None:
        d = decode_records(_events("t", 20), "bench")
        _TEMPLATE = next(iter(process_drops([d], known_content={"c1"}, key=b"b", now=NOW, limits=sink.limits))).events
    ids = pa.array([f"c{i}-{j}" for j in range(len(_TEMPLATE))])
    table = _TEMPLATE.set_column(_TEMPLATE.schema.get_field_index("event_id"), "event_id", ids)
    done = sink.store.commit(table, quarantine_frame([]), sink.writer_id)
    assert len(done.events) == 20


_TEMPLATE: pa.Table | None = None


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--stored", type=int, default=200_000, help="ids in the commit log before the dedupe check")
    ap.add_argument("--batches", type=int, default=2_000, help="committed batches before the follower's poll")
    args = ap.parse_args(argv)
    if args.stored < 20_000:
        ap.error("--stored must be >= 20000 (the checked batch is 10k of the first 20k ids)")
    limits = Limits.from_params(load_params(args.params))
    with tempfile.TemporaryDirectory() as tmp:
        sink = EventSink(DataPaths(Path(tmp)), key=b"bench", limits=limits, known_content={"c1"})
        sink.accept(_events("warm", 100), NOW)
        plain, r1 = _timed(lambda: sink.accept(_events("p", 3000), NOW))
        unknown, r2 = _timed(lambda: sink.accept(_events("k", 3000, unknown=True), NOW))
        assert r1.accepted == r2.accepted == 3000 and r2.dropped_keys == 3000
        print(f"3,000 events: plain {plain:.3f} s; one unique unknown key each {unknown:.3f} s")
        small = [_timed(lambda i=i: sink.accept(_events(f"s{i}-", 20), NOW))[0] for i in range(20)]
        print(f"20-event batch, whole accept (validation included): median {sorted(small)[10] * 1000:.1f} ms")
        commits = [_timed(lambda i=i: _commit_only(sink, i))[0] for i in range(50)]
        print(f"20-event batch, durable commit alone: median {sorted(commits)[25] * 1000:.1f} ms, max {max(commits) * 1000:.1f} ms")
        with sink.store.log.writing() as tx:  # fill the commit log
            tx.add("bench-fill", sink.writer_id, (f"f{i}" for i in range(args.stored)))
        t, known = _timed(lambda: sink.store.log.known([f"f{i}" for i in range(0, 20_000, 2)]))
        assert len(known) == 10_000
        print(f"dedupe check of a 10k-id batch against {sink.store.log.count_ids():,} stored ids: {t * 1000:.1f} ms")
        other = EventSink(DataPaths(Path(tmp)), key=b"bench", limits=limits, known_content={"c1"})
        for i in range(args.batches):
            with other.store.log.writing() as tx:
                tx.add(f"empty-{i}", "bench", [])
        follower = StreamFollower(sink)
        follower.after = 0
        t_first, _ = _timed(follower.poll)
        polls = [_timed(follower.poll)[0] for _ in range(20)]
        print(f"follower: first poll over {args.batches:,} batches {t_first * 1000:.1f} ms; then nothing new: median {sorted(polls)[10] * 1000:.2f} ms a poll")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
