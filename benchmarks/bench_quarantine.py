"""Benchmark: the reject path of ingestion, N invalid records quarantined (records per second).

A Parquet drop of N events that all fail validation is written first (not timed): by default
70 % have 1990s timestamps (``timestamp_before_2000``, what a brought MovieLens 100K-style split
met under the short-video rules), 10 % an out-of-range rating, 10 % an unknown event type and
10 % no ``content_id``. Then ``components.data.ingest.run`` ingests it with ``params.yaml``'s
``ingest`` section; the figure is records in / wall time of the whole run (decode, validate,
describe every reject, write the quarantine Parquet), with the process's CPU time beside it
(the machine may be shared: ``load_avg_1min`` says how busy it was). The quarantine file is read back to check
one row per record and that the counts reconcile.

    python -m benchmarks.bench_quarantine --records 1000000

Measured on the 2-core development machine (issue 15): before the column-wise reject path,
50k records at 1,822 records/s (2,951 per CPU-second; load 3.1); after, 1M records at
169,658 records/s (180,215 per CPU-second; load 1.8).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core import schema

TARGET_RECORDS_PER_S = 100_000


def invalid_drop(n: int, out: Path, seed: int) -> dict[str, int]:
    """Write a drop of ``n`` invalid events under ``out``; returns the intended reason counts."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(4, size=n, p=[0.7, 0.1, 0.1, 0.1])
    rows = np.arange(n)
    ts = pd.Timestamp("1997-09-20", tz="UTC") + pd.to_timedelta(rng.integers(0, 200 * 86400, n), unit="s")
    ts = ts.where(kind == 0, pd.Timestamp("2024-01-01", tz="UTC"))
    events = pd.DataFrame(
        {
            "event_id": pd.Series(rows).map("bench-{}-complete_view".format),
            "event_type": np.where(kind == 2, "watched", "complete_view"),
            "user_id": pd.Series(rng.integers(0, 943, n)).map("u{}".format),
            "content_id": pd.Series(rng.integers(0, 1682, n)).map("m{}".format).where(kind != 3, None),
            "timestamp": ts.astype("datetime64[ms, UTC]"),
            "rating": np.where(kind == 1, 9.0, rng.integers(1, 6, n).astype(float)),
        }
    )
    for f in schema.DROP_EVENT_SCHEMA:
        if f.name not in events:
            events[f.name] = None
    (out / "events").mkdir(parents=True)
    table = pa.Table.from_pandas(events[schema.DROP_EVENT_SCHEMA.names], schema=schema.DROP_EVENT_SCHEMA, preserve_index=False)
    pq.write_table(table, out / "events" / "part-00000.parquet")
    _ids_table(schema.CONTENT_SCHEMA, "content_id", [f"m{i}" for i in range(1682)], out / "content.parquet")
    _ids_table(schema.USER_SCHEMA, "user_id", [f"u{i}" for i in range(943)], out / "users.parquet")
    names = ["timestamp_before_2000", "invalid_rating", "unknown_event_type", "missing_field"]
    return {names[k]: int(c) for k, c in zip(*np.unique(kind, return_counts=True), strict=True)}


def _ids_table(table_schema: pa.Schema, id_col: str, ids: list[str], path: Path) -> None:
    """A side table with only its ids known (every other column null)."""
    cols = [pa.array(ids) if f.name == id_col else pa.nulls(len(ids), f.type) for f in table_schema]
    pq.write_table(pa.Table.from_arrays(cols, schema=table_schema), path)


def measure(n: int, seed: int) -> dict[str, object]:
    """Write the drop, ingest it once, and return the figures."""
    from components.core.catalog import DataPaths
    from components.core.config import load_params
    from components.data.ingest import NothingStored
    from components.data.ingest import run as ingest_run

    params = load_params()
    with tempfile.TemporaryDirectory(prefix="bench-quarantine-") as tmp:
        drop, root = Path(tmp) / "drop", Path(tmp) / "root"
        expected = invalid_drop(n, drop, seed)
        paths = DataPaths(root)
        error = ""
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            r = ingest_run(params, drop, paths, now=pd.Timestamp("2026-01-01", tz="UTC"), key=b"benchmark-key")
        except NothingStored as exc:  # expected: every record is invalid
            r, error = exc.result, str(exc)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        q = pq.read_table(paths.of("quarantine_records"), columns=["record_no", "reason"])
        return {
            "records": n,
            "stored": r.stored,
            "quarantined": r.quarantined,
            "duplicates": r.duplicates,
            "reconciles": r.reconciles() and len(q) == r.quarantined + r.duplicates,
            "one_row_per_record": len(q) == len(set(q["record_no"].to_pylist())),
            "reasons_as_intended": r.reasons == expected,
            "reasons": r.reasons,
            "seconds": round(seconds, 2),
            "records_per_s": round(n / seconds),
            "cpu_s": round(cpu, 2),
            "records_per_cpu_s": round(n / cpu),
            "load_avg_1min": round(os.getloadavg()[0], 1),
            "target_records_per_s": TARGET_RECORDS_PER_S,
            "error": error[:200],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    for n in args.records:
        print(json.dumps(measure(n, args.seed)), flush=True)


if __name__ == "__main__":
    main()
