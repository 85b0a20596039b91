"""The process environment: the one reader of the ``RECO_*`` variables (and ``HOST`` / ``PORT``).

Secrets and deployment choices that do not belong in ``params.yaml``; a bad value is a
:class:`~components.core.config.ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from components.core.config import ConfigError, error_lines


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


class Settings(BaseModel):
    """The process environment (``RECO_*``, ``HOST`` / ``PORT``): secrets and deployment choices
    that do not belong in params.yaml. ``None`` means "not set": the reader falls back to
    params.yaml (or refuses, for secrets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    demo: bool  # RECO_DEMO: the embedded demo, which allows a built-in HMAC key
    hmac_key: SecretStr | None  # RECO_HMAC_KEY: pseudonymisation key
    online_store: Literal["sqlite", "redis"] | None  # RECO_ONLINE_STORE over feast.online_store
    redis_url: str | None  # RECO_REDIS_URL
    project_root: Path | None  # RECO_PROJECT_ROOT
    params_file: Path | None  # RECO_PARAMS
    workers: int  # RECO_WORKERS: server processes (below 1 counts as 1)
    online_update: bool  # RECO_ONLINE_UPDATE=0 turns the in-process online update off
    api_keys: SecretStr  # RECO_API_KEYS: name:secret,...
    rate_limit_per_s: float | None  # RECO_RATE_LIMIT_PER_S
    rate_limit_burst: float | None  # RECO_RATE_LIMIT_BURST
    rate_limit_store: Literal["memory", "sqlite", "redis"] | None  # RECO_RATE_LIMIT_STORE over serving.rate_limit_store
    host: str  # HOST
    port: int  # PORT
    simulation: bool = False  # RECO_SIMULATION=1: feed requests may carry a simulated time (``at``)
    tracemalloc_s: float | None = None  # RECO_TRACEMALLOC_S: log the memory growth by source line this often

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment (``os.environ`` unless ``env`` is given)."""
        e = os.environ if env is None else env

        def get(name: str, strip: bool = True) -> str | None:
            value = e.get(name, "")
            return (value.strip() if strip else value) or None

        store = get("RECO_ONLINE_STORE")
        values: dict[str, Any] = {
            "demo": _flag(get("RECO_DEMO")),
            "hmac_key": get("RECO_HMAC_KEY", strip=False),
            "online_store": store.lower() if store else None,
            "redis_url": get("RECO_REDIS_URL"),
            "project_root": get("RECO_PROJECT_ROOT"),
            "params_file": get("RECO_PARAMS"),
            "workers": get("RECO_WORKERS") or 1,
            "online_update": get("RECO_ONLINE_UPDATE") != "0",
            "api_keys": get("RECO_API_KEYS", strip=False) or "",
            "rate_limit_per_s": get("RECO_RATE_LIMIT_PER_S"),
            "rate_limit_burst": get("RECO_RATE_LIMIT_BURST"),
            "rate_limit_store": (get("RECO_RATE_LIMIT_STORE") or "").lower() or None,
            "host": get("HOST") or "127.0.0.1",
            "port": get("PORT") or 8000,
            "simulation": _flag(get("RECO_SIMULATION")),
            "tracemalloc_s": get("RECO_TRACEMALLOC_S"),
        }
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise ConfigError("\n".join(error_lines(err, "environment"))) from None
