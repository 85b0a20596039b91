"""Duplicate detection over a long run: the cost of one 10k-event batch as the ids stream past.

The event sink's duplicate detection is the stream's commit log
(:class:`~components.serving.commits.CommitLog`: a SQLite unique index shared by the workers
and kept across restarts). For every ``--batch`` of new ids this times what a posted batch
pays under the commit lock: the lookup of its ids (``known``, with one id in ten a repeat of
an earlier batch, as a client's retry would send) and the insert of the new ones; every
``--report`` ids it prints both, the ids held and the database's size on disk. With
``--retention-batches`` the ids of all but the last that many batches are pruned
(:meth:`~components.serving.commits.CommitLog.forget_ids`, what ``serving.dedupe_retention_h``
does by commit time), showing that the log then stops growing. Runs in a temporary folder;
no server.

    .venv/bin/python -m benchmarks.bench_event_dedupe --ids 2000000
    .venv/bin/python -m benchmarks.bench_event_dedupe --ids 2000000 --retention-batches 50
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from components.serving.commits import CommitLog


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--report", type=int, default=250_000)
    ap.add_argument("--retention-batches", type=int, default=0, help="0: keep every id")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "commits.sqlite"
        log = CommitLog(db)
        print(f"commit log dedupe; batches of {args.batch:,} ids (10 % repeats); seconds per batch"
              + (f"; ids of the last {args.retention_batches} batches kept" if args.retention_batches else "; every id kept"))
        print(f"{'ids posted':>11} {'lookup s':>9} {'insert s':>9} {'ids held':>10} {'db MB':>7}")
        n, batch_no, clock = 0, 0, 0.0
        while n < args.ids:
            fresh = [f"e{n + i:010d}" for i in range(args.batch)]
            repeats = [f"e{rng.randrange(n):010d}" for _ in range(args.batch // 10)] if n else []
            t0 = time.perf_counter()
            with log.writing() as tx:
                stored = tx.known(fresh + repeats)
                t1 = time.perf_counter()
                tx.add(f"b{batch_no}", "bench", [e for e in fresh if e not in stored], committed_s=clock)
            t2 = time.perf_counter()
            assert len(stored) <= len(repeats)
            n += args.batch
            batch_no += 1
            clock += 1.0
            if args.retention_batches:
                log.forget_ids(clock - args.retention_batches)
            if n % args.report == 0:
                print(f"{n:>11,} {t1 - t0:>9.4f} {t2 - t1:>9.4f} {log.count_ids():>10,} {_size_mb(db):>7.1f}", flush=True)
        log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
