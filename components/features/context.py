"""Request-time features: context (local hour, weekday, device, network) and user recency.

The on-demand feature views call these, and so does the serving fast path, so training rows,
Feast online lookups and serving compute them with the same code. Pure numpy: no Feast, no
pandas on the per-request path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.core.schema import DEVICE_ALIASES, NETWORK_ALIASES

#: Nominal downlink per network type (Mb/s) and an ordinal tier; unknown -> NaN / 0.
NETWORK_MBPS: dict[str, float] = {"2g": 0.1, "3g": 2.0, "4g": 20.0, "wifi": 50.0, "5g": 100.0}
NETWORK_TIER: dict[str, int] = {"2g": 1, "3g": 2, "4g": 3, "wifi": 4, "5g": 5}


@dataclass(frozen=True)
class RequestContext:
    """The request fields the context and recency features are computed from."""

    request_ts_s: int
    utc_offset_min: int = 0
    device_type: str | None = None
    network: str | None = None


def _normalised(values: Sequence[Any] | np.ndarray, aliases: Mapping[str, str]) -> np.ndarray:
    return np.array(
        [aliases.get(v.strip().lower(), "other") if isinstance(v, str) else None for v in values],
        dtype=object,
    )


def _floats(values: Any) -> np.ndarray:
    """Numbers as float64 (None / NA / non-numbers -> NaN); the fast path skips pandas."""
    try:
        return np.asarray(values, dtype="float64").reshape(-1)
    except (TypeError, ValueError):
        return pd.to_numeric(
            pd.Series(np.asarray(values, dtype=object).reshape(-1)), errors="coerce"
        ).to_numpy(dtype="float64")


def context_arrays(
    request_ts_s: Sequence[Any] | np.ndarray,
    utc_offset_min: Sequence[Any] | np.ndarray,
    device_type: Sequence[Any] | np.ndarray,
    network: Sequence[Any] | np.ndarray,
) -> dict[str, np.ndarray]:
    """Context features from request fields: hour as sin/cos(2*pi*hour/24), weekday, device, network.

    ``hour`` is the integer local hour (UTC + ``utc_offset_min``); weekday 0 = Monday.
    """
    ts = _floats(request_ts_s)
    off = np.nan_to_num(_floats(utc_offset_min), nan=0.0)
    local = ts + off * 60.0
    hour = np.floor(local / 3600.0) % 24.0
    angle = 2.0 * np.pi * hour / 24.0
    dow = (np.floor(local / 86400.0) + 3.0) % 7.0  # 1970-01-01 was a Thursday
    ok = np.isfinite(dow)
    dow = np.where(ok, dow, -1.0)
    dev = _normalised(device_type, DEVICE_ALIASES)
    net = _normalised(network, NETWORK_ALIASES)
    return {
        "ctx_hour_sin": np.sin(angle),
        "ctx_hour_cos": np.cos(angle),
        "ctx_day_of_week": dow.astype("int64"),
        "ctx_is_weekend": (dow >= 5).astype("int64"),
        "ctx_device_ios": (dev == "ios").astype("int64"),
        "ctx_device_android": (dev == "android").astype("int64"),
        "ctx_device_web": (dev == "web").astype("int64"),
        "ctx_network_mbps": np.array(
            [NETWORK_MBPS.get(n, np.nan) if n else np.nan for n in net], dtype="float64"
        ),
        "ctx_network_tier": np.array(
            [NETWORK_TIER.get(n, 0) if n else 0 for n in net], dtype="int64"
        ),
    }


def context_frame(inputs: pd.DataFrame) -> pd.DataFrame:
    """The context on-demand view: request columns in, ``CONTEXT_COLUMNS`` out."""
    n = len(inputs)
    col = inputs.get
    arrays = context_arrays(
        col("request_ts_s", pd.Series([np.nan] * n)).to_numpy(dtype=object),
        col("utc_offset_min", pd.Series([0] * n)).to_numpy(dtype=object),
        col("device_type", pd.Series([None] * n)).to_numpy(dtype=object),
        col("network", pd.Series([None] * n)).to_numpy(dtype=object),
    )
    return pd.DataFrame(arrays, index=inputs.index)


def recency_hours(request_ts_s: Any, last_event_ts_s: Any) -> np.ndarray:
    """Hours from the user's last event to the request (NaN when either is unknown)."""
    return (_floats(request_ts_s) - _floats(last_event_ts_s)) / 3600.0


def recency_frame(inputs: pd.DataFrame) -> pd.DataFrame:
    """The user-recency on-demand view: request time minus the (pushed) last event time."""
    return pd.DataFrame(
        {
            "rt_hours_since_last_event": recency_hours(
                inputs["request_ts_s"], inputs["rt_last_event_ts_s"]
            )
        },
        index=inputs.index,
    )
