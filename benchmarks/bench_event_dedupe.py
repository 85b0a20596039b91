"""Duplicate detection over a long run: the cost of one 10k-event batch as the ids stream past.

Compares the event sink's :class:`~components.serving.events.RecentIds` (an ``OrderedDict``)
with the plain-dict eviction it replaced (``d.pop(next(iter(d)))``, which rescans the deleted
slots at the dict's front on every call), both remembering the last ``--remember`` ids, and
prints seconds per batch after every ``--report`` ids. In memory only; no server.

    .venv/bin/python -m benchmarks.bench_event_dedupe --remember 1000000 --ids 2000000
"""

from __future__ import annotations

import argparse
import time

from components.serving.events import RecentIds


def _plain_dict(capacity: int) -> tuple[dict[str, None], object]:
    seen: dict[str, None] = {}

    def add_all(ids: list[str]) -> None:
        for eid in ids:
            seen[eid] = None
        while len(seen) > capacity:
            seen.pop(next(iter(seen)))

    return seen, add_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--remember", type=int, default=1_000_000)
    ap.add_argument("--ids", type=int, default=1_500_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--report", type=int, default=250_000)
    args = ap.parse_args(argv)

    recent = RecentIds(args.remember)
    plain, plain_add = _plain_dict(args.remember)
    print(f"remember {args.remember:,} ids; batches of {args.batch:,}; seconds per batch")
    print(f"{'ids seen':>10} {'RecentIds':>10} {'plain dict':>11}")
    n = 0
    while n < args.ids:
        batch = [f"e{n + i:09d}" for i in range(args.batch)]
        t0 = time.perf_counter()
        recent.add_all(batch)
        t1 = time.perf_counter()
        plain_add(batch)  # type: ignore[operator]
        t2 = time.perf_counter()
        n += args.batch
        if n % args.report == 0:
            print(f"{n:>10,} {t1 - t0:>10.4f} {t2 - t1:>11.4f}", flush=True)
    assert len(recent) == len(plain) == min(n, args.remember)
    assert f"e{n - 1:09d}" in recent
    assert n <= args.remember or "e000000000" not in recent
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
