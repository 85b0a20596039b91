"""Pseudonymisation: user ids are replaced by a keyed HMAC at ingestion; no raw id goes further."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping

import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc

from components.core.frames import arrow_text
from components.core.settings import Settings
from components.data.ingestion.rules import IngestError

log = logging.getLogger(__name__)


HMAC_ENV = "RECO_HMAC_KEY"
#: Only for ``RECO_DEMO=1`` runs on generated or public data; never for real users.
DEMO_HMAC_KEY = b"demo-key-not-secret"


def hmac_key_from_env(env: Settings | Mapping[str, str] | None = None) -> bytes:
    """The pseudonymisation key from ``RECO_HMAC_KEY``; the demo key only when ``RECO_DEMO=1``."""
    settings = env if isinstance(env, Settings) else Settings.from_env(env)
    if settings.hmac_key is not None:
        return settings.hmac_key.get_secret_value().encode("utf-8")
    if settings.demo:
        log.warning("%s not set: using the built-in demo key (RECO_DEMO=1); not for real users", HMAC_ENV)
        return DEMO_HMAC_KEY
    raise IngestError(
        f"{HMAC_ENV} is not set. User ids are pseudonymised with a keyed HMAC at ingestion; "
        f"set {HMAC_ENV} to a secret (e.g. `export {HMAC_ENV}=$(openssl rand -hex 32)`), "
        "or set RECO_DEMO=1 to use the built-in demo key on generated or public data."
    )


def pseudonym(raw: str, key: bytes) -> str:
    """``u_`` + the first 24 hex digits of HMAC-SHA256(key, raw id)."""
    return "u_" + hmac.new(key, raw.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


def pseudonymise_arrow(
    ids: pa_arrow.Array | pa_arrow.ChunkedArray, key: bytes, cache: dict[str, str] | None = None
) -> pa_arrow.Array:
    """Pseudonymise an Arrow text column, hashing each distinct id once (cost ~ users, not events).

    ``cache`` (raw id → pseudonym) carries work over between files of one run.
    """
    memo: dict[str, str] = {} if cache is None else cache
    enc = pc.dictionary_encode(ids)
    if isinstance(enc, pa_arrow.ChunkedArray):
        enc = enc.combine_chunks() if enc.num_chunks else pa_arrow.array([], type=pa_arrow.dictionary(pa_arrow.int32(), pa_arrow.string()))
    values = enc.dictionary.to_pylist()
    for u in values:
        if u not in memo:
            memo[u] = pseudonym(u, key)
    mapped = pa_arrow.array([memo[u] for u in values], type=pa_arrow.string())
    return pc.take(mapped, enc.indices)


def pseudonymise(ids: pd.Series, key: bytes) -> pd.Series:
    """Pseudonymise a pandas column of ids (nulls stay null)."""
    arr = arrow_text(ids)
    if arr is None:
        arr = pa_arrow.chunked_array([pa_arrow.array(ids.to_numpy(dtype=object), type=pa_arrow.string(), from_pandas=True)])
    out = pseudonymise_arrow(arr, key)
    return pd.Series(pd.arrays.ArrowStringArray(out), index=ids.index)


#: ``"user_id": <text or number>`` in a quarantined record's raw text (JSON, or a line that did
#: not decode: the pattern finds the id without parsing the whole line)
_RAW_USER_ID = re.compile(r'("user_id"\s*:\s*)("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)')


def pseudonymise_raw(raw: pd.Series, key: bytes, cache: dict[str, str] | None = None) -> pd.Series:
    """Quarantine ``raw`` texts with each user id replaced by its pseudonym, so no raw id is
    ever written, even for records that failed validation or did not decode."""
    memo: dict[str, str] = {} if cache is None else cache

    def swap(m: re.Match[str]) -> str:
        text = m.group(2)
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        raw_id = value if isinstance(value, str) else text
        if raw_id not in memo:
            memo[raw_id] = pseudonym(raw_id, key)
        return f'{m.group(1)}"{memo[raw_id]}"'

    if raw.empty:
        return raw
    return raw.astype(str).map(lambda t: _RAW_USER_ID.sub(swap, t) if '"user_id"' in t else t)
