"""The registry's rules: the stages, the one step forward from each, the invariants a valid
registry keeps, and the errors it raises when it refuses.

``candidate → shadow → canary → production``, one step at a time; any stage but ``archived`` may
go to ``archived`` (rejection or retirement, with a reason). Shadow, canary and production hold at
most one version each. ``archived`` is final except for a rollback.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from components.deploy.records import HistoryEntry, ModelRecord

CANDIDATE, SHADOW, CANARY, PRODUCTION, ARCHIVED = (
    "candidate",
    "shadow",
    "canary",
    "production",
    "archived",
)
STAGES: tuple[str, ...] = (CANDIDATE, SHADOW, CANARY, PRODUCTION, ARCHIVED)
#: stages that hold at most one version
SLOT_STAGES: tuple[str, ...] = (SHADOW, CANARY, PRODUCTION)
#: the one forward step allowed from each stage (besides archiving)
PROMOTIONS: dict[str, str] = {CANDIDATE: SHADOW, SHADOW: CANARY, CANARY: PRODUCTION}


class RegistryError(Exception):
    """Anything the registry refuses; the state is unchanged."""


class NotFoundError(RegistryError):
    """The version is not registered."""


class TransitionError(RegistryError):
    """A stage change that the rules do not allow (or a rollback with nothing to restore)."""


class ArtefactError(RegistryError):
    """A model artefact that is missing, does not load, or does not match its version."""


def allowed_targets(stage: str) -> tuple[str, ...]:
    """The stages a version in ``stage`` may move to (rollback aside)."""
    if stage == ARCHIVED:
        return ()
    return (PROMOTIONS[stage], ARCHIVED) if stage in PROMOTIONS else (ARCHIVED,)


def check_transition(version: str, from_stage: str, to_stage: str) -> None:
    """Raise :class:`TransitionError` unless ``from_stage → to_stage`` is allowed."""
    if to_stage not in STAGES:
        raise TransitionError(f"unknown stage {to_stage!r}; stages: {', '.join(STAGES)}")
    if from_stage == to_stage:
        raise TransitionError(f"{version} is already {to_stage}")
    if to_stage not in allowed_targets(from_stage):
        allowed = " or ".join(allowed_targets(from_stage)) or "nothing (only rollback restores)"
        raise TransitionError(
            f"{version}: {from_stage} -> {to_stage} is not allowed; from {from_stage}: {allowed}"
        )


def find_problems(records: Sequence[ModelRecord], history: Sequence[HistoryEntry]) -> list[str]:
    """Invariant violations of a registry's rows (empty when valid): one version per slot, and
    every version's history a chain from its registration to its current stage."""
    problems: list[str] = []
    for stage in SLOT_STAGES:
        holders = sorted(r.version for r in records if r.stage == stage)
        if len(holders) > 1:
            problems.append(f"{len(holders)} versions in {stage}: {', '.join(holders)}")
    rows_of: dict[str, list[HistoryEntry]] = {}
    for h in sorted(history, key=lambda h: h.id):
        rows_of.setdefault(h.version, []).append(h)
    for r in sorted(records, key=lambda r: r.version):
        if r.stage not in STAGES:
            problems.append(f"{r.version}: unknown stage {r.stage!r}")
        rows = rows_of.get(r.version, [])
        if not rows:
            problems.append(f"{r.version}: no history")
            continue
        if rows[0].from_stage is not None or rows[0].to_stage != CANDIDATE:
            problems.append(f"{r.version}: history does not start with its registration")
        for prev, cur in itertools.pairwise(rows):
            if cur.from_stage != prev.to_stage:
                problems.append(
                    f"{r.version}: history row {cur.id} leaves {cur.from_stage} "
                    f"but the version was {prev.to_stage}"
                )
        if rows[-1].to_stage != r.stage:
            problems.append(
                f"{r.version}: stage is {r.stage} but its last history row says {rows[-1].to_stage}"
            )
    for v in sorted(set(rows_of) - {r.version for r in records}):
        problems.append(f"history rows of an unregistered version {v}")
    return problems

