"""The drop every adapter builds: frames of events, users and content, and the checks ingestion needs.

KuaiRand and MovieLens drops: device, OS and network are null (not in the data). Event ids are deterministic,
``"<kr|ml>-<row>-<event_type>"`` with ``row`` the 0-based data row of the interactions / ratings
file, so a re-run yields the same ids and ingestion deduplicates re-delivered drops. User and
content ids are the data sets' own, prefixed (``kr_u``/``kr_v``, ``ml_u``/``ml_m``) so the two
sets can share one store; ingestion pseudonymises user ids as for any producer.

Input checks use pandera; the mapping itself is a few vectorised pandas steps, for which no
library exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pandera.errors as pandera_errors
import pandera.pandas as pdv
import pyarrow as pa

from components.core.schema import (
    CONTENT_SCHEMA,
    DROP_EVENT_SCHEMA,
    EVENT_TYPES,
    REQUIRED_FIELDS,
    STRING_FIELDS,
    USER_SCHEMA,
)

#: Sentinel for a categorical value the data set does not have (creator, category, share platform).
UNKNOWN = "unknown"


_FLOAT_EVENT_COLUMNS = frozenset({"watch_duration_s", "rating"})


@dataclass(frozen=True, eq=False)
class Drop:
    """One drop: events (DROP_EVENT_SCHEMA), users (USER_SCHEMA), content (CONTENT_SCHEMA).

    ``reconciliation`` accounts for every event: input rows, events per type, their total
    (``events``), and the sizes of the user and content tables. ``eq=False`` because frames
    have no single truth value.
    """

    events: pd.DataFrame
    users: pd.DataFrame
    content: pd.DataFrame
    reconciliation: dict[str, int]


def validated(schema: pdv.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """Check an input frame against its pandera schema; any failure is a ValueError."""
    try:
        checked = schema.validate(frame, lazy=True)
    except (pandera_errors.SchemaErrors, pandera_errors.SchemaError) as exc:
        raise ValueError(f"{schema.name}: invalid input: {exc}") from exc
    return checked.reset_index(drop=True)


def utc_ms(values: pd.Series, unit: Literal["s", "ms"]) -> pd.Series:
    """Epoch numbers → ``datetime64[ms, UTC]`` (the drop's timestamp type)."""
    return pd.to_datetime(values, unit=unit, utc=True).astype("datetime64[ms, UTC]")


def null_timestamps(n: int) -> pd.Series:
    """``n`` unknown timestamps of the drop's timestamp type."""
    return pd.Series(pd.NaT, index=pd.RangeIndex(n), dtype="datetime64[ms, UTC]")


def base_events(
    user_id: pd.Series | np.ndarray,
    content_id: pd.Series | np.ndarray,
    timestamp: pd.Series | np.ndarray,
) -> pd.DataFrame:
    """One row per input row: its 0-based number ``_row`` and the ids and time its events share."""
    return pd.DataFrame(
        {
            "_row": np.arange(len(user_id), dtype=np.int64),
            "user_id": user_id,
            "content_id": content_id,
            "timestamp": timestamp,
        }
    )


def emit(
    base: pd.DataFrame, event_type: str, mask: pd.Series | None = None, **cols: pd.Series | str
) -> pd.DataFrame:
    """The events of one type: the rows of ``base`` selected by ``mask``, plus extra columns."""
    part = base if mask is None else base.loc[mask.to_numpy()]
    part = part.assign(event_type=event_type)
    for name, value in cols.items():
        part[name] = value.loc[part.index] if isinstance(value, pd.Series) else value
    return part


def assemble_events(parts: list[pd.DataFrame], prefix: str) -> pd.DataFrame:
    """All events in time order (ties: input row, then position in ``parts``), with ids."""
    events = pd.concat(
        [part.assign(_rank=rank) for rank, part in enumerate(parts)], ignore_index=True
    )
    events = events.sort_values(["timestamp", "_row", "_rank"], kind="stable", ignore_index=True)
    events["event_id"] = prefix + "-" + events["_row"].astype(str) + "-" + events["event_type"]
    for name in DROP_EVENT_SCHEMA.names:
        if name not in events.columns:
            events[name] = np.nan if name in _FLOAT_EVENT_COLUMNS else None
    return events[list(DROP_EVENT_SCHEMA.names)]


def type_counts(events: pd.DataFrame, types: Sequence[str]) -> dict[str, int]:
    counts = events["event_type"].value_counts()
    return {t: int(counts.get(t, 0)) for t in types}


def empty_users(user_ids: pd.Series) -> pd.DataFrame:
    """A users table with only ids known (no demographics, preferences or sign-up date)."""
    users = pd.DataFrame({"user_id": user_ids.reset_index(drop=True)})
    for name in USER_SCHEMA.names[1:]:
        users[name] = None
    users["signup_timestamp"] = null_timestamps(len(users))
    return users[list(USER_SCHEMA.names)]


def complete_content(content: pd.DataFrame) -> pd.DataFrame:
    """Add the content columns a data set lacks (audio, embeddings) as nulls, in schema order."""
    for name in CONTENT_SCHEMA.names:
        if name not in content.columns:
            content[name] = np.nan if name == "duration_s" else None
    return content[list(CONTENT_SCHEMA.names)].reset_index(drop=True)


def to_arrow(frame: pd.DataFrame, schema: pa.Schema, what: str) -> pa.Table:
    """A frame as an Arrow table of exactly ``schema`` (types, nullability, no pandas metadata)."""
    if list(frame.columns) != schema.names:
        raise ValueError(f"{what}: columns {list(frame.columns)} != schema {schema.names}")
    try:
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ValueError(f"{what}: does not conform to its schema: {exc}") from exc
    return table.replace_schema_metadata(None)


def validate_drop(drop: Drop) -> None:
    """Raise ValueError unless the drop is one ingestion accepts in full.

    Checks: each table converts to its Arrow schema; event types are known; every event carries
    its type's required fields (non-null, and non-blank for text); event, user and content ids
    are unique; the reconciliation's per-type counts add up to ``events``.
    """
    to_arrow(drop.events, DROP_EVENT_SCHEMA, "events")
    to_arrow(drop.users, USER_SCHEMA, "users")
    to_arrow(drop.content, CONTENT_SCHEMA, "content")
    events = drop.events
    unknown = sorted(set(events["event_type"]) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"events: unknown event types {unknown}")
    for event_type, fields in REQUIRED_FIELDS.items():
        of_type = events.loc[events["event_type"] == event_type]
        for field in fields:
            values = of_type[field]
            missing = values.isna()
            if field in STRING_FIELDS:
                missing |= values.astype(str).str.strip() == ""
            if missing.any():
                raise ValueError(f"events: {int(missing.sum())} {event_type} events lack {field}")
    for frame, key, what in (
        (events, "event_id", "events"),
        (drop.users, "user_id", "users"),
        (drop.content, "content_id", "content"),
    ):
        if frame[key].duplicated().any():
            raise ValueError(f"{what}: duplicate {key}")
    rec = drop.reconciliation
    if rec.get("events") != len(events) or sum(rec.get(t, 0) for t in EVENT_TYPES) != len(events):
        raise ValueError(f"reconciliation does not account for the {len(events)} events: {rec}")
