"""The simulator's HTTP client of the serving API, on 127.0.0.1 only.

Feed requests carry the simulated request time (``at``; the server accepts it only with
``RECO_SIMULATION=1``). Event batches are retried on 429 / 503 and on a refused connection
(a server being restarted), with the same event ids, so the server's duplicate rule keeps a
retried batch from being stored twice; a batch that never got an answer is reported as such.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@dataclass(frozen=True)
class Posted:
    """The server's answer to one event batch (``status`` 0: no answer after every retry)."""

    status: int
    body: dict[str, Any]


class ApiClient:
    """``GET /v1/recommend`` and ``POST /v1/events`` against a local server."""

    def __init__(self, base: str, api_key: str, *, timeout_s: float = 30.0, tries: int = 20) -> None:
        host = urlsplit(base).hostname
        if host not in LOCAL_HOSTS:
            raise ValueError(f"the simulator talks to 127.0.0.1 only, not {host!r}")
        self.base = base.rstrip("/")
        self.tries = tries
        self.http = httpx.Client(base_url=self.base, timeout=timeout_s, headers={"X-API-Key": api_key})

    def close(self) -> None:
        self.http.close()

    def feed(self, user_id: str, k: int, at_s: int, ctx: dict[str, str]) -> dict[str, Any]:
        """One feed (the response body); retried while the server is unreachable."""
        params = {"user_id": user_id, "k": k, "at": at_s, "device_type": ctx.get("device_type"), "network": ctx.get("network")}
        r = self._send("GET", "/v1/recommend", params=params)
        if r is None or r.status_code != 200:
            raise RuntimeError(f"feed for {user_id} failed: {None if r is None else (r.status_code, r.text[:200])}")
        body: dict[str, Any] = r.json()
        return body

    def post_events(self, events: list[dict[str, Any]]) -> Posted:
        r = self._send("POST", "/v1/events", json={"events": events})
        if r is None:
            return Posted(0, {})
        return Posted(r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else {})

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response | None:
        wait = 0.2
        for _ in range(self.tries):
            try:
                r = self.http.request(method, path, **kw)
            except httpx.TransportError:
                time.sleep(wait)
                wait = min(wait * 2, 3.0)
                continue
            if r.status_code in (429, 503):
                time.sleep(min(float(r.headers.get("Retry-After", wait) or wait), 3.0))
                continue
            return r
        return None
