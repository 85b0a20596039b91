"""The building blocks of the typed ``params.yaml`` (:mod:`components.core.config`): the
:class:`Section` base every section model derives from, the annotated types they share, the
error a bad file raises and the line format of its messages."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)


class ConfigError(ValueError):
    """``params.yaml`` (or the environment) does not match its model; the message names each key."""


def _iso_date(value: Any) -> Any:
    """YAML reads an unquoted date as a ``date``: keep it as the ISO string the file shows."""
    return value.isoformat() if isinstance(value, dt.date) else value


def _is_iso_date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"must be an ISO date, got {value!r}") from None
    return value


IsoDate = Annotated[str, BeforeValidator(_iso_date), AfterValidator(_is_iso_date)]
#: ``base.seed``, and the seed a stage's settings carry from it.
Seed = Annotated[int, Field(ge=0)]
#: Partial mappings laid over a section for one data set, checked against the section's model.
Overrides = dict[str, dict[str, Any]]


class Section(BaseModel):
    """A params.yaml mapping: frozen, every key required, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields (by name) changed, validated again like a new one
        (``model_copy(update=...)`` does not validate)."""
        aliases = {name: f.alias for name, f in type(self).model_fields.items() if f.alias}
        values = {**dict(self), **changes}
        return type(self).model_validate({aliases.get(k, k): v for k, v in values.items()})


def error_lines(err: ValidationError, source: str, prefix: tuple[str | int, ...] = ()) -> list[str]:
    """One ``file: dotted.key: problem`` line per Pydantic error."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in (*prefix, *e["loc"])) or "(top level)"
        problem = {"extra_forbidden": "unknown key", "missing": "missing key"}.get(e["type"], e["msg"])
        problem = problem.removeprefix("Value error, ")  # a validator's own message
        lines.append(f"{source}: {where}: {problem}")
    return lines
