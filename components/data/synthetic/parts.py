"""The event log in parts: simulate batches of planned units, cut at ``n_events``, corrupt a few rows.

Exactly ``n_events`` rows are written: sessions are planned with a margin (every impression
yields at least its ``view``), visited in a seeded random order and the stream is cut at
``n_events``, which thins sessions uniformly instead of cutting off the end of the period.
Each part is sorted by timestamp. A share ``bad_event_rate`` of rows is then made invalid in one
of five ways (negative watch time, far-future timestamp, duplicate ``event_id`` of an earlier
row, event type ``zap``, unknown content id) while keeping the Parquet types valid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.core.schema import DROP_EVENT_SCHEMA, EVENT_TIMESTAMP
from components.data.synthetic.arrays import id_width, number_strings, seeded_rng, take_codes
from components.data.synthetic.constants import (
    BAD_KINDS,
    COMMENTS,
    DEVICES,
    EVENT_FIELDS,
    FAR_FUTURE_MS,
    NETWORKS,
    OS_NAMES,
    REPORT_REASONS,
    SHARE_PLATFORMS,
    T_COMMENT,
    T_REPORT,
    T_SHARE,
    T_UPLOAD,
    T_VIEW,
    T_ZAP,
    TYPE_NAMES,
    Events,
)
from components.data.synthetic.plan import plan_sessions
from components.data.synthetic.simulate import simulate_units
from components.data.synthetic.world import World


@dataclass(frozen=True, eq=False)
class EventPart:
    """One output part of the event log and how many deliberately invalid rows it holds."""

    index: int
    table: pa.Table
    n_bad: int


def _inject_bad(
    world: World, ev: Events, eid: np.ndarray, rng: np.random.Generator
) -> tuple[Events, np.ndarray, np.ndarray, int]:
    """Turn a ``bad_event_rate`` share of rows invalid.

    Returns the events, their id numbers, the replacement number of rows given an unknown
    content id (-1 elsewhere; the event keeps its item for everything else) and the bad count.
    """
    p = world.params
    n = len(ev["ts"])
    unknown = np.full(n, -1, dtype=np.int64)
    if p.bad_event_rate <= 0 or n < 2:
        return ev, eid, unknown, 0
    n_bad = min(int(rng.binomial(n, p.bad_event_rate)), n - 1)
    if n_bad == 0:
        return ev, eid, unknown, 0
    pos = np.sort(rng.choice(n - 1, n_bad, replace=False) + 1)  # row 0 stays valid
    # a kind per row (index into BAD_KINDS); only views get a negative watch time (kind 0)
    is_view = ev["etype"][pos] == T_VIEW
    n_kinds = len(BAD_KINDS)
    kind = np.where(is_view, rng.integers(0, n_kinds, n_bad), rng.integers(1, n_kinds, n_bad))
    bad = np.zeros(n, dtype=bool)
    bad[pos] = True
    good = np.flatnonzero(~bad)

    # duplicate id: reuse the id of a valid earlier row
    dup = pos[kind == BAD_KINDS.index("duplicate_id")]
    n_before = np.searchsorted(good, dup)  # >= 1 because row 0 is valid
    src = good[np.floor(rng.random(len(dup)) * n_before).astype(np.int64)]
    eid = eid.copy()
    eid[dup] = eid[src]

    ev = {f: v.copy() for f, v in ev.items()}
    neg = pos[kind == BAD_KINDS.index("negative_watch")]
    ev["watch"][neg] = -(ev["watch"][neg] + 0.5 + rng.random(len(neg)))
    fut = pos[kind == BAD_KINDS.index("future_timestamp")]
    ev["ts"][fut] += FAR_FUTURE_MS
    ev["etype"][pos[kind == BAD_KINDS.index("unknown_type")]] = T_ZAP
    unk = pos[kind == BAD_KINDS.index("unknown_content")]
    digits = id_width(p.n_items, 6) + 1  # one digit more than any catalogue id
    unknown[unk] = rng.integers(10 ** (digits - 1), 10**digits, len(unk))
    return ev, eid, unknown, n_bad


def _to_table(world: World, ev: Events, eid: np.ndarray, unknown: np.ndarray) -> pa.Table:
    """Materialise numeric event columns as a ``DROP_EVENT_SCHEMA`` table."""
    p = world.params
    n = len(eid)
    etype = ev["etype"]
    item = ev["item"]
    has_item = item >= 0
    content = take_codes(world.item_ids, np.maximum(item, 0), has_item)
    is_unknown = unknown >= 0
    if is_unknown.any():
        missing = number_strings("video_", unknown[is_unknown], id_width(p.n_items, 6) + 1)
        content = pc.replace_with_mask(content, pa.array(is_unknown), missing)
    watch = ev["watch"]
    aux = ev["aux"]
    creator = ev["creator"]
    is_upload = etype == T_UPLOAD
    return pa.Table.from_arrays(
        [
            number_strings("e", eid, id_width(p.n_events, 9)),
            take_codes(pa.array(TYPE_NAMES), etype),
            take_codes(world.user_ids, ev["user"]),
            content,
            pa.array(ev["ts"]).cast(EVENT_TIMESTAMP),
            pa.array(watch, pa.float64(), mask=np.isnan(watch)),
            pa.nulls(n, pa.float64()),
            take_codes(pa.array(COMMENTS), np.maximum(aux, 0), etype == T_COMMENT),
            take_codes(pa.array(SHARE_PLATFORMS), np.maximum(aux, 0), etype == T_SHARE),
            take_codes(world.creator_ids, np.maximum(creator, 0), creator >= 0),
            take_codes(pa.array(REPORT_REASONS), np.maximum(aux, 0), etype == T_REPORT),
            take_codes(world.metadata, np.where(is_upload, item, 0), is_upload),
            take_codes(pa.array(DEVICES), ev["device"]),
            take_codes(pa.array(OS_NAMES), ev["os"]),
            take_codes(pa.array(NETWORKS), ev["net"]),
        ],
        schema=DROP_EVENT_SCHEMA,
    )


def iter_event_parts(world: World) -> Iterator[EventPart]:
    """Yield the event log in parts of ``chunk_events`` rows (the last truncated to ``n_events``)."""
    p = world.params
    plan = plan_sessions(world)
    n_units = len(plan.order)
    batch_weight = int(np.clip(p.chunk_events // 2, 5_000, 200_000))
    emitted = part = batch = pos = 0
    buf: list[Events] = []
    buffered = 0
    while emitted < p.n_events:
        need = min(p.chunk_events, p.n_events - emitted)
        while buffered < need:
            if pos >= n_units:
                raise RuntimeError("session plan exhausted before n_events; this is a bug")
            done = int(plan.cum_weight[pos - 1]) if pos else 0
            stop = max(pos + 1, int(np.searchsorted(plan.cum_weight, done + batch_weight)))
            ev = simulate_units(world, plan, plan.order[pos:stop], seeded_rng(p.seed, 3, batch))
            buf.append(ev)
            buffered += len(ev["ts"])
            pos, batch = stop, batch + 1
        merged = {f: np.concatenate([b[f] for b in buf]) for f in EVENT_FIELDS}
        head = {f: v[:need] for f, v in merged.items()}
        buf = [{f: v[need:] for f, v in merged.items()}]
        buffered -= need
        order = np.argsort(head["ts"], kind="stable")
        head = {f: v[order] for f, v in head.items()}
        eid = emitted + np.arange(need, dtype=np.int64)
        head, eid, unknown, n_bad = _inject_bad(world, head, eid, seeded_rng(p.seed, 4, part))
        yield EventPart(index=part, table=_to_table(world, head, eid, unknown), n_bad=n_bad)
        emitted += need
        part += 1
