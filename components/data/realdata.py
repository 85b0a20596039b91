"""Stages ``import_kuairand`` / ``import_movielens``: turn a vendored real data set into an event drop.

A drop (see the bottom of :mod:`components.core.schema`) is what a producer delivers to ingestion, so
real data flows through exactly the same ingestion, quarantine and pseudonymisation as synthetic
data. Each adapter (:mod:`components.data.adapters`: :mod:`~components.data.adapters.kuairand`,
:mod:`~components.data.adapters.movielens`) is a pure function from the data set's own tables to a
:class:`~components.data.adapters.drop.Drop`, with a ``reconciliation`` that accounts for every
event by the input rows it came from; this module reads the vendored files and writes the drop.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from components.core.catalog import DataPaths
from components.core.io import atomic_write_json, atomic_write_parquet
from components.core.schema import CONTENT_SCHEMA, DROP_EVENT_SCHEMA, USER_SCHEMA
from components.data.adapters.drop import Drop, to_arrow, validate_drop
from components.data.adapters.kuairand import kuairand_to_drop, read_kuairand
from components.data.adapters.movielens import movielens_to_drop, read_movielens

logger = logging.getLogger(__name__)

#: The vendored data sets; each one's folder is the catalogue's ``dataset_<name>``.
DATASETS: tuple[str, ...] = ("kuairand", "movielens")

EVENTS_FILE = Path("events") / "part-00000.parquet"
USERS_FILE = Path("users.parquet")
CONTENT_FILE = Path("content.parquet")
RECONCILIATION_FILE = Path("reconciliation.json")


@dataclass(frozen=True)
class DropFiles:
    """Where :func:`write_drop` put each part of a drop."""

    out_dir: Path
    events: Path
    users: Path
    content: Path
    reconciliation: Path


@dataclass(frozen=True, eq=False)
class RealDataOutputs:
    """What :func:`run` produced: the files, the reconciliation and the wall time it took."""

    dataset: str
    files: DropFiles
    reconciliation: dict[str, int]
    seconds: float


def write_drop(drop: Drop, out_dir: Path) -> DropFiles:
    """Write a drop folder: events/part-00000.parquet, users/content Parquet, reconciliation.json.

    Idempotent: a re-run replaces the same files (each atomically). Refuses to write when
    ``events/`` holds other event files, which ingestion would read as part of this drop.
    """
    files = DropFiles(
        out_dir=out_dir,
        events=out_dir / EVENTS_FILE,
        users=out_dir / USERS_FILE,
        content=out_dir / CONTENT_FILE,
        reconciliation=out_dir / RECONCILIATION_FILE,
    )
    if files.events.parent.is_dir():
        foreign = sorted(
            p.name
            for p in files.events.parent.iterdir()
            if p.name != files.events.name and not p.name.startswith(".")
        )
        if foreign:
            raise ValueError(
                f"{files.events.parent} holds other files {foreign}; remove them first"
            )
    validate_drop(drop)
    tables = (
        (files.events, to_arrow(drop.events, DROP_EVENT_SCHEMA, "events")),
        (files.users, to_arrow(drop.users, USER_SCHEMA, "users")),
        (files.content, to_arrow(drop.content, CONTENT_SCHEMA, "content")),
    )
    for path, table in tables:
        # Compliant nested types would read back as list<element: …>, not the schema's list<item>.
        atomic_write_parquet(path, table, use_compliant_nested_type=False)
    atomic_write_json(files.reconciliation, drop.reconciliation, sort_keys=False)
    logger.info("wrote drop to %s: %d events", out_dir, len(drop.events))
    return files


def default_src(dataset: str) -> Path:
    """The vendored copy of a data set under the project root."""
    return DataPaths().of(f"dataset_{_checked_dataset(dataset)}")


def default_out(dataset: str) -> Path:
    """The drop folder a data set is converted into by default (``data/drops/<dataset>``)."""
    return DataPaths().of("drop", dataset=_checked_dataset(dataset))


def _checked_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    return dataset


def convert(dataset: str, src: Path) -> Drop:
    """Read a data set from ``src`` and map it onto a drop (no writing)."""
    if _checked_dataset(dataset) == "kuairand":
        return kuairand_to_drop(*read_kuairand(src))
    return movielens_to_drop(*read_movielens(src))


def run(dataset: str, src: Path, out: Path) -> RealDataOutputs:
    """Convert one vendored data set (``"kuairand"`` or ``"movielens"``) into a drop folder."""
    started = time.perf_counter()
    drop = convert(dataset, src)
    files = write_drop(drop, out)
    seconds = time.perf_counter() - started
    logger.info("%s: %s in %.2f s", dataset, drop.reconciliation, seconds)
    return RealDataOutputs(dataset, files, drop.reconciliation, seconds)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.data.realdata",
        description="Map a vendored real data set onto the project's drop format.",
    )
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--src", type=Path, help="data set folder (default: datasets/<name>)")
    parser.add_argument("--out", type=Path, help="drop folder (default: data/drops/<dataset>)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    src = args.src if args.src is not None else default_src(args.dataset)
    out = args.out if args.out is not None else default_out(args.dataset)
    try:
        result = run(args.dataset, src, out)
    except (ValueError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        return 1
    print(
        json.dumps(
            {
                "dataset": result.dataset,
                "out": str(result.files.out_dir),
                "seconds": round(result.seconds, 2),
                **result.reconciliation,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
