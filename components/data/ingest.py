"""Stage ``ingest``: read an event drop, validate every event, pseudonymise users, store or quarantine.

Every input record ends in exactly one place, so ``in = stored + quarantined + duplicates``
holds and is checked on every run:

* valid events go to the raw store (Parquet, partitioned by ``event_date``);
* invalid ones go to the quarantine file with a reason code and a human-readable detail;
* repeats of an ``event_id`` already accepted are counted as duplicates (and logged in the
  quarantine file with reason ``duplicate_event_id``, so nothing disappears).

Events about a content id that is in neither the content table nor an upload event are kept
and flagged (``unknown_content``), not lost. The steps live in :mod:`components.data.ingestion`
(decode, validate, pseudonymise, process, store); this module wires them over a drop folder.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.core import schema
from components.core.catalog import DataPaths
from components.core.config import stage_context, stage_parser
from components.core.io import atomic_write_json, write_metrics
from components.data.ingestion.decode import decode_file
from components.data.ingestion.process import FileOutcome, FileReport, process_drops
from components.data.ingestion.pseudonyms import hmac_key_from_env, pseudonymise
from components.data.ingestion.rules import IngestError, Limits
from components.data.ingestion.scan import list_drop_files, repeated_ids, scan_uploads
from components.data.ingestion.store import read_event_table, write_events
from components.data.ingestion.stream import StreamOutcome, ingest_stream, stream_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """The run's counts (they reconcile), timings, reasons and per-file reports."""

    n_in: int
    stored: int
    quarantined: int
    duplicates: int
    unknown_content: int
    users: int
    contents: int
    empty_files: int
    seconds: float
    events_per_second: float
    reasons: dict[str, int] = field(default_factory=dict)
    files: list[FileReport] = field(default_factory=list)
    #: the API's event stream, ingested after the drop (:mod:`components.data.ingestion.stream`):
    #: n_in = stored + quarantined + duplicates, batches, uploads (contents added)
    stream: dict[str, int] = field(default_factory=dict)

    def reconciles(self) -> bool:
        """Whether every record in is accounted for exactly once."""
        return self.n_in == self.stored + self.quarantined + self.duplicates


@dataclass(frozen=True)
class _Stored:
    """What writing the outcomes left: reports, quarantine rows and distinct ids seen."""

    reports: list[FileReport]
    quarantine: pd.DataFrame
    user_ids: list[pa_arrow.Array]
    content_ids: list[pa_arrow.Array]
    n_unknown: int


def _read_side_tables(drop_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The drop's content and users tables (empty with their id column when absent)."""
    content_path = drop_dir / "content.parquet"
    content = pq.read_table(content_path).to_pandas() if content_path.exists() else pd.DataFrame({"content_id": []})
    users_path = drop_dir / "users.parquet"
    users = pq.read_table(users_path).to_pandas() if users_path.exists() else pd.DataFrame({"user_id": []})
    return content, users


def _prepare_users(users: pd.DataFrame, key: bytes) -> pd.DataFrame:
    users = users.copy()
    users["user_id"] = pseudonymise(users["user_id"].astype("string"), key)
    return users.drop_duplicates("user_id", keep="first")


def _store_outcomes(outcomes: Iterable[FileOutcome], paths: DataPaths) -> _Stored:
    """Write each file's events to the raw store, collecting its report and quarantine rows."""
    reports: list[FileReport] = []
    rejected: list[pd.DataFrame] = []
    user_ids: list[pa_arrow.Array] = []
    content_ids: list[pa_arrow.Array] = []
    n_unknown = 0
    for i, outcome in enumerate(outcomes):
        write_events(outcome.events, paths.raw_events, basename=f"part-{i:05d}")
        reports.append(outcome.report)
        rejected.append(outcome.quarantine)
        user_ids.append(pc.unique(outcome.events["user_id"].combine_chunks()))
        content_ids.append(pc.unique(outcome.events["content_id"].combine_chunks()))
        n_unknown += int(pc.sum(outcome.events["unknown_content"]).as_py() or 0)
    quarantine = pd.concat(rejected, ignore_index=True)
    return _Stored(reports, quarantine, user_ids, content_ids, n_unknown)


def _write_tables(
    paths: DataPaths, quarantine: pd.DataFrame, users: pd.DataFrame, content: pd.DataFrame, key: bytes
) -> None:
    """The quarantine file and the pseudonymised users and content tables of the raw store."""
    pq.write_table(
        pa_arrow.Table.from_pandas(quarantine, schema=schema.QUARANTINE_SCHEMA, preserve_index=False),
        paths.of("quarantine_records"),
    )
    pq.write_table(
        pa_arrow.Table.from_pandas(_prepare_users(users, key), schema=schema.USER_SCHEMA, preserve_index=False),
        paths.of("raw_users"),
    )
    pq.write_table(
        pa_arrow.Table.from_pandas(content, schema=schema.CONTENT_SCHEMA, preserve_index=False),
        paths.of("raw_content"),
    )


def _add_stream(
    stream_dir: Path | None, paths: DataPaths, known: set[str], now: pd.Timestamp, limits: Limits
) -> StreamOutcome | None:
    """The stream's events after the drop's, exactly once by ``event_id`` (None: no stream)."""
    if stream_dir is None or not stream_files(stream_dir):
        return None
    drop_ids = set(read_event_table(paths.raw_events, ["event_id"])["event_id"].to_pylist()) if any(paths.raw_events.iterdir()) else set()
    out = ingest_stream(stream_dir, stored_ids=drop_ids, known_content=known, now=now, limits=limits)
    write_events(out.events, paths.raw_events, basename="stream-00000")
    log.info(
        "stream %s: %d events in %d batches = %d stored + %d quarantined + %d duplicates; %d uploaded contents",
        stream_dir, out.n_in, out.batches, out.stored, out.quarantined, out.duplicates, len(out.content),
    )  # fmt: skip
    if out.n_in != out.stored + out.quarantined + out.duplicates:
        raise IngestError(f"stream counts do not reconcile: {out.n_in} != {out.stored} + {out.quarantined} + {out.duplicates}")
    return out


def _result(stored: _Stored, seconds: float) -> IngestResult:
    """Sum the per-file counts into the run's result; refuse one that does not reconcile."""
    reports, quarantine = stored.reports, stored.quarantine
    reasons = quarantine["reason"].value_counts().sort_index().to_dict() if len(quarantine) else {}
    n_in = sum(r.n_in for r in reports)
    user_ids, content_ids = stored.user_ids, stored.content_ids
    result = IngestResult(
        n_in=n_in,
        stored=sum(r.stored for r in reports),
        quarantined=sum(r.quarantined for r in reports),
        duplicates=sum(r.duplicates for r in reports),
        unknown_content=stored.n_unknown,
        users=len(pc.unique(pa_arrow.concat_arrays(user_ids))) if user_ids else 0,
        contents=len(pc.drop_null(pc.unique(pa_arrow.concat_arrays(content_ids)))) if content_ids else 0,
        empty_files=sum(1 for r in reports if r.n_in == 0),
        seconds=round(seconds, 3),
        events_per_second=round(n_in / seconds, 1) if seconds > 0 else 0.0,
        reasons={str(k): int(v) for k, v in reasons.items()},
        files=reports,
    )
    if not result.reconciles():
        raise IngestError(
            f"counts do not reconcile: in={result.n_in} != stored={result.stored} + "
            f"quarantined={result.quarantined} + duplicates={result.duplicates}"
        )
    return result


class NothingStored(IngestError):
    """Ingestion kept no event: every record was quarantined (or the drop held none).

    Raised after the quarantine and the metrics are written, so the records stay inspectable;
    the message names the dominant reason, its count and an example detail.
    """

    def __init__(self, result: IngestResult, quarantine: pd.DataFrame, where: Path) -> None:
        self.result = result
        if result.n_in == 0:
            message = f"no event stored: the drop holds no record ({len(result.files)} empty file(s))"
        else:
            reason, count = max(result.reasons.items(), key=lambda kv: (kv[1], kv[0]))
            example = quarantine.loc[quarantine["reason"] == reason, "detail"].iloc[0]
            message = (
                f"no event stored: all {result.n_in:,} records were quarantined; dominant reason "
                f"{reason!r} ({count:,} records, {count / result.n_in:.0%}), e.g. {example!r}; "
                f"every reason: {result.reasons}; records in {where}"
            )
        super().__init__(message)


def _write_metrics(paths: DataPaths, result: IngestResult) -> None:
    """Counts (deterministic, compared across runs) apart from timings (not), plus file reports."""
    metrics = asdict(result)
    metrics.pop("files")
    timing = {"seconds": metrics.pop("seconds"), "events_per_second": metrics.pop("events_per_second")}
    metrics["reconciled"] = True
    write_metrics(paths.of("metrics_ingest"), metrics)
    write_metrics(paths.of("metrics_ingest_throughput"), timing, sort_keys=False)
    atomic_write_json(paths.of("ingest_report"), [asdict(f) for f in result.files], sort_keys=False)


def run(
    params: dict[str, Any],
    drop_dir: Path,
    paths: DataPaths,
    *,
    now: pd.Timestamp | None = None,
    key: bytes | None = None,
    stream_dir: Path | None = None,
) -> IngestResult:
    """Ingest one drop folder, then the API's event stream (``stream_dir``, when given and not
    empty), into the raw store, quarantine and ``metrics/ingest.json``.

    Raises :class:`NothingStored` (after writing the quarantine and metrics) when no event is
    kept: every later stage would fail on an empty store with a far less telling error.
    """
    limits = Limits.from_params(params)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    key = key if key is not None else hmac_key_from_env()
    t0 = time.perf_counter()
    content, users = _read_side_tables(drop_dir)
    files = list_drop_files(drop_dir / "events")
    if not files:
        raise IngestError(f"{drop_dir / 'events'}: no event files (*.parquet, *.jsonl) to ingest")
    known = set(content["content_id"].astype(str)) | scan_uploads(files)

    for d in (paths.raw_events, paths.quarantine):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
    decoded = (decode_file(p, str(p.relative_to(drop_dir))) for p in files)
    candidates = repeated_ids(files)
    outcomes = process_drops(decoded, known_content=known, key=key, now=now, limits=limits, candidates=candidates)
    stored = _store_outcomes(outcomes, paths)
    stream = _add_stream(stream_dir, paths, known, now, limits)
    quarantine = stored.quarantine
    if stream is not None:
        content = pd.concat([content, stream.content[~stream.content["content_id"].isin(content["content_id"])]], ignore_index=True)
        quarantine = pd.concat([quarantine, stream.quarantine], ignore_index=True)
    _write_tables(paths, quarantine, users, content, key)
    seconds = time.perf_counter() - t0
    result = _result(stored, seconds)
    if stream is not None:
        result = replace(result, stream={
            "n_in": stream.n_in, "stored": stream.stored, "quarantined": stream.quarantined,
            "duplicates": stream.duplicates, "batches": stream.batches, "uploads": len(stream.content),
        })  # fmt: skip
    _write_metrics(paths, result)
    if result.stored == 0:
        raise NothingStored(result, stored.quarantine, paths.of("quarantine_records"))
    log.info(
        "ingested %d records: %d stored, %d quarantined, %d duplicates, %d unknown-content (%.1f s)",
        result.n_in, result.stored, result.quarantined, result.duplicates, result.unknown_content, seconds,
    )  # fmt: skip
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m components.data.ingest --params params.yaml --drop data/drops/<source>``."""
    parser = stage_parser(__doc__)
    parser.add_argument("--drop", required=True, help="drop folder with events/, users.parquet, content.parquet")
    parser.add_argument("--stream", default=None, help="the API's event stream (data/stream/events), ingested after the drop when present")
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    try:
        r = run(params, Path(args.drop), paths, stream_dir=Path(args.stream) if args.stream else None)
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"ingest: {r.n_in} in = {r.stored} stored + {r.quarantined} quarantined + {r.duplicates} duplicates"
        f" ({r.unknown_content} flagged unknown content; {r.events_per_second:,.0f} events/s)"
        + (f"; stream: {r.stream['n_in']} in = {r.stream['stored']} stored + {r.stream['quarantined']} quarantined"
           f" + {r.stream['duplicates']} duplicates" if r.stream else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
