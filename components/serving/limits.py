"""Checks that run before the app reads a request body: its size, and the API key of the
routes that need one.

A plain ASGI middleware (:class:`BodyGuard`) rather than a FastAPI dependency, because FastAPI
reads and parses the whole body (building every event's model) before any dependency runs: a
9 MB body of empty events became 216 MB in memory without a key. Here, in order:

1. a ``Content-Length`` above ``serving.max_body_bytes`` is answered 413 (a malformed one
   400) before anything is read, key or no key;
2. on a keyed route, a missing or unknown ``X-API-Key`` is answered 401 without reading the
   body at all (the route's dependency then checks the key's rate limit as before);
3. a body without a length (chunked) is counted as it streams and refused with 413 as soon as
   it passes the bound; a body within the bound is buffered here and handed to the app whole,
   so no more than the bound is ever held.

Answers are the app's error shape (``{"error": ...}``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from typing import Any

from components.serving.ratelimit import key_name

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class BodyGuard:
    """ASGI middleware: bound every request body to ``max_bytes`` and check the API key of
    ``keyed_paths`` before the body is read (module docstring). ``on_refused(path, status)`` is
    told of every refusal (the app counts them in its metrics)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        api_keys: Mapping[str, str],
        keyed_paths: Collection[str],
        on_refused: Callable[[str, int], None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.api_keys = api_keys
        self.keyed_paths = frozenset(keyed_paths)
        self.on_refused = on_refused

    async def _refuse(self, scope: Scope, send: Send, status: int, error: str) -> None:
        if self.on_refused is not None:
            self.on_refused(str(scope.get("path", "")), status)
        await _answer(send, status, error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await self._refuse(scope, send, 400, f"malformed Content-Length {length!r}")
                return
            if int(length) > self.max_bytes:
                await self._refuse(scope, send, 413, f"request body of {int(length)} bytes is over the limit of {self.max_bytes}")
                return
        if scope.get("path") in self.keyed_paths and key_name(self.api_keys, _header(scope, b"x-api-key")) is None:
            await self._refuse(scope, send, 401, "missing or unknown API key (header X-API-Key)")
            return
        await self._bounded(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body up to the bound (413 past it), then hand it to the app in one piece.
        (Raising from the app's own reads would not do: FastAPI turns any error while reading a
        body into a 400.)"""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = bytes(message.get("body", b""))
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(scope, send, 413, f"request body is over the limit of {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
