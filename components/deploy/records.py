"""What the registry returns: a version's record, its stage history, the deployment (who is
production, canary and shadow) and a rollback's result, with their JSON forms."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from components.deploy.transitions import CANARY, PRODUCTION, SHADOW, RegistryError


@dataclass(frozen=True)
class ModelRecord:
    """One registered version."""

    version: str
    stage: str
    stage_changed_at: datetime
    registered_at: datetime
    artefact: str  # relative to the registry folder: models/<version>
    backend: str
    objective: str
    feature_service: str
    data_version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class HistoryEntry:
    """One stage change (``from_stage`` is None for the registration)."""

    id: int
    version: str
    from_stage: str | None
    to_stage: str
    at: datetime
    reason: str
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Deployment:
    """What serving should run, as of ``revision``."""

    production: ModelRecord | None
    canary: ModelRecord | None
    shadow: ModelRecord | None
    revision: int

    def slots(self) -> dict[str, ModelRecord | None]:
        return {PRODUCTION: self.production, CANARY: self.canary, SHADOW: self.shadow}


@dataclass(frozen=True)
class RollbackResult:
    """The version taken out of production and the one restored, with the new revision."""

    archived: ModelRecord
    restored: ModelRecord
    revision: int


def stamp(now: datetime) -> str:
    """``now`` as the ISO text the database stores (UTC; a naive time is refused)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC).isoformat()


def _clean_json(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf become None (metrics of a degenerate split)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_json(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    """A copy with datetimes as ISO text (for ``to_dict``)."""
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """Canonical JSON of metrics / params (NaN and inf as null)."""
    try:
        return json.dumps(_clean_json(obj), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"not JSON-serialisable: {exc}") from exc

