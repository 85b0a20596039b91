"""The ingestion rules every caller shares: validation bounds, reason codes and the quarantine frame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from components.core import schema
from components.core.config import IngestLimits, Params

#: Reason codes, in order of precedence when a record fails several checks.
REASON_ORDER: tuple[str, ...] = (
    "invalid_utf8",
    "truncated_line",
    "malformed_json",
    "not_an_object",
    "too_deep",
    "invalid_unicode",
    "unknown_event_type",
    "missing_field",
    "wrong_type",
    "unparsable_timestamp",
    "timestamp_before_2000",
    "timestamp_in_future",
    "negative_watch_duration",
    "absurd_watch_duration",
    "invalid_rating",
    "text_too_long",
    "id_too_long",
    "field_too_long",
)
DUPLICATE = "duplicate_event_id"


class IngestError(RuntimeError):
    """A problem that stops ingestion as a whole (configuration, reconciliation)."""


class Limits(IngestLimits):
    """Validation bounds, from ``params.yaml`` (``ingest`` section, without its overrides)."""

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> Limits:
        """The ``ingest`` section for ``data.source`` (``ingest.overrides``: MovieLens ratings
        start in 1996, before the short-video bound of 2000)."""
        section = Params.of(params).for_dataset().ingest
        return cls(**section.model_dump(exclude={"overrides"}))


def quarantine_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Quarantine records (``QUARANTINE_SCHEMA`` columns) as a frame, typed even when empty."""
    cols = [f.name for f in schema.QUARANTINE_SCHEMA]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "record_no" else "object") for c in cols})
    return pd.DataFrame.from_records(list(rows), columns=cols)
