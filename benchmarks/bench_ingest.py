"""Benchmark: ingest + validate + preprocess throughput and peak memory at N synthetic events.

For each N, a synthetic drop is generated first (not timed), then a fresh child process runs
ingestion (decode, validate, pseudonymise, dedupe, write the partitioned store) and
preprocessing (dedupe, impute, normalise, sessionise, write), and reports its wall time and
peak resident memory (``ru_maxrss`` of that process alone, imports included).

    python -m benchmarks.bench_ingest --events 1000000 5000000 10000000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

TARGET_EVENTS = 5_000_000
TARGET_SECONDS = 30.0
TARGET_PEAK_GB = 4.0


def child(drop: Path, root: Path) -> None:
    """Run ingest + preprocess once and print one JSON line with the figures."""
    from components.core.catalog import DataPaths
    from components.core.config import load_params
    from components.data.ingest import run as ingest_run
    from components.data.preprocess import run as preprocess_run

    params = load_params()
    paths = DataPaths(root)
    t0 = time.perf_counter()
    ing = ingest_run(params, drop, paths, now=pd.Timestamp.now(tz="UTC"), key=b"benchmark-key")
    t1 = time.perf_counter()
    pre = preprocess_run(params, paths)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(
        json.dumps(
            {
                "events_in": ing.n_in,
                "stored": ing.stored,
                "quarantined": ing.quarantined,
                "duplicates": ing.duplicates,
                "sessions": pre.sessions,
                "ingest_s": round(t1 - t0, 2),
                "preprocess_s": round(t2 - t1, 2),
                "total_s": round(t2 - t0, 2),
                "peak_rss_gb": round(peak / 1e9, 2),
            }
        )
    )


def generate(n_events: int, out: Path) -> float:
    from components.core.config import load_params
    from components.data.datagen import write_drop
    from components.data.synthetic.params import GenParams

    params = load_params()
    gp = GenParams.from_params(params)
    # Scale the catalogue with the log: ~20 events per user, ~50 per item.
    gp = gp.replace(
        n_events=n_events,
        n_users=max(gp.n_users, n_events // 50),
        n_items=max(gp.n_items, n_events // 50),
        n_creators=max(gp.n_creators, n_events // 1000),
    )
    t0 = time.perf_counter()
    write_drop(gp, out)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir, removed)")
    ap.add_argument("--child", nargs=2, metavar=("DROP", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return 0

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    rows = []
    try:
        for n in args.events:
            drop, root = work / f"drop-{n}", work / f"root-{n}"
            gen_s = generate(n, drop)
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_ingest", "--child", str(drop), str(root)],
                check=True, capture_output=True, text=True,
            )
            fig = json.loads(out.stdout.strip().splitlines()[-1])
            fig["generate_s"] = round(gen_s, 1)
            fig["events_per_s"] = round(fig["events_in"] / fig["total_s"])
            rows.append(fig)
            print(
                f"{n:>11,} events: ingest {fig['ingest_s']:6.2f} s + preprocess {fig['preprocess_s']:6.2f} s"
                f" = {fig['total_s']:6.2f} s  ({fig['events_per_s']:,} events/s), peak RSS {fig['peak_rss_gb']:.2f} GB"
                f"  [stored {fig['stored']:,}, quarantined {fig['quarantined']:,}, duplicates {fig['duplicates']:,},"
                f" sessions {fig['sessions']:,}; generation {fig['generate_s']} s, not timed]",
                flush=True,
            )
            shutil.rmtree(drop, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    for fig in rows:
        if fig["events_in"] == TARGET_EVENTS:
            ok = fig["total_s"] < TARGET_SECONDS and fig["peak_rss_gb"] < TARGET_PEAK_GB
            print(
                f"target (5M events < {TARGET_SECONDS:.0f} s, peak < {TARGET_PEAK_GB:.0f} GB): "
                f"{'met' if ok else 'MISSED'} ({fig['total_s']} s, {fig['peak_rss_gb']} GB)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
