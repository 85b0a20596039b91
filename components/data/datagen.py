"""Stage ``generate``: write a deterministic synthetic drop (users, content, events, truth).

The generator plays the producer side of the pipeline: it writes a drop folder in the format
described at the bottom of :mod:`components.core.schema` (``events/part-NNNNN.parquet``,
``users.parquet``, ``content.parquet``) plus ``truth.parquet``, the latent per-user category
interests, so later stages can be evaluated against true preferences. How the world, the
sessions and the events are drawn is described in :mod:`components.data.synthetic`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from components.core.catalog import PROJECT_ROOT, DataPaths
from components.core.config import stage_context, stage_parser
from components.core.io import atomic_write_parquet
from components.data.synthetic.params import GenParams
from components.data.synthetic.parts import iter_event_parts
from components.data.synthetic.world import make_world

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenSummary:
    """What :func:`write_drop` wrote."""

    n_events: int
    n_users: int
    n_items: int
    n_bad: int
    files: tuple[Path, ...]
    seconds: float


# --- I/O ------------------------------------------------------------------------------------------


def _write(table: pa.Table, path: Path) -> Path:
    """Write Parquet (zstd) atomically."""
    return atomic_write_parquet(path, table, compression="zstd")


def write_drop(params: GenParams | Mapping[str, Any], out_dir: Path) -> GenSummary:
    """Generate and write a drop folder: ``events/part-*.parquet``, users, content and truth."""
    p = params if isinstance(params, GenParams) else GenParams.from_params(params)
    began = time.perf_counter()
    out_dir = Path(out_dir)
    events_dir = out_dir / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(events_dir.glob("part-*.parquet")):
        stale.unlink()  # a re-run must not leave parts of a larger earlier drop behind
    world = make_world(p)
    files = [
        _write(world.users, out_dir / "users.parquet"),
        _write(world.content, out_dir / "content.parquet"),
        _write(world.truth, out_dir / "truth.parquet"),
    ]
    n_bad = n_rows = 0
    for part in iter_event_parts(world):
        files.append(_write(part.table, events_dir / f"part-{part.index:05d}.parquet"))
        n_bad += part.n_bad
        n_rows += part.table.num_rows
        logger.info("wrote part %d (%d rows, %d bad)", part.index, part.table.num_rows, part.n_bad)
    summary = GenSummary(
        n_events=n_rows,
        n_users=p.n_users,
        n_items=p.n_items,
        n_bad=n_bad,
        files=tuple(files),
        seconds=round(time.perf_counter() - began, 3),
    )
    logger.info(
        "drop %s: %d events (%d bad), %d users, %d items in %.1f s",
        out_dir, summary.n_events, summary.n_bad, summary.n_users, summary.n_items, summary.seconds,
    )  # fmt: skip
    return summary


def run(params: Mapping[str, Any], out_dir: Path, n_events: int | None = None) -> GenSummary:
    """Stage entry: params mapping in, drop folder out (``n_events`` overrides the params)."""
    p = GenParams.from_params(params)
    if n_events is not None:
        p = p.replace(n_events=n_events)
    return write_drop(p, out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m components.data.datagen --params params.yaml --out data/drops/synthetic``."""
    parser = stage_parser("Write a deterministic synthetic drop.")
    parser.prog = "python -m components.data.datagen"
    parser.add_argument(
        "--out",
        type=Path,
        default=DataPaths().of("drop_synthetic"),
        help="drop folder; relative paths are taken from the project root",
    )
    parser.add_argument("--n-events", type=int, default=None, help="override datagen.n_events")
    args = parser.parse_args(argv)
    if args.params is not None and not Path(args.params).is_absolute():
        args.params = PROJECT_ROOT / args.params
    params, _paths = stage_context(args)
    out = args.out if args.out.is_absolute() else PROJECT_ROOT / args.out
    s = run(params, out, n_events=args.n_events)
    print(
        f"datagen: {s.n_events} events ({s.n_bad} bad), {s.n_users} users, {s.n_items} items, "
        f"{len(s.files)} files -> {out} in {s.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
