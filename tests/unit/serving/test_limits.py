"""The body guard in front of the app: size bound and API key before any body is read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from components.serving.limits import BodyGuard

KEYS = {"secret": "test"}
LIMIT = 1000


def _app(reads: list[int], refused: list[tuple[str, int]]) -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodyGuard, max_bytes=LIMIT, api_keys=KEYS, keyed_paths={"/keyed"},
                       on_refused=lambda path, status: refused.append((path, status)))

    @app.post("/keyed")
    async def keyed(request: Request) -> dict[str, int]:
        reads.append(len(await request.body()))
        return {"read": reads[-1]}

    @app.post("/open")
    async def open_(request: Request) -> dict[str, int]:
        reads.append(len(await request.body()))
        return {"read": reads[-1]}

    return app


def _post(app: FastAPI, path: str, content: bytes | AsyncIterator[bytes], headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.post(path, content=content, headers=headers or {})

    return asyncio.run(go())


async def _chunks(n: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(n):
        yield b"x" * size


def test_within_the_bound_the_body_reaches_the_app_whole() -> None:
    reads: list[int] = []
    refused: list[tuple[str, int]] = []
    app = _app(reads, refused)
    assert _post(app, "/keyed", b"x" * LIMIT, {"X-API-Key": "secret"}).json() == {"read": LIMIT}
    assert _post(app, "/open", _chunks(4, 250)).json() == {"read": LIMIT}  # chunked, no length
    assert refused == []


def test_an_oversize_body_is_413_before_the_key_check_and_unread() -> None:
    reads: list[int] = []
    refused: list[tuple[str, int]] = []
    app = _app(reads, refused)
    r = _post(app, "/keyed", b"x" * (LIMIT + 1))  # no key at all: the size answers first
    assert r.status_code == 413 and "over the limit of 1000" in r.json()["error"]
    r = _post(app, "/open", _chunks(50, 100))  # chunked: refused once past the bound
    assert r.status_code == 413
    assert reads == [] and refused == [("/keyed", 413), ("/open", 413)]


@pytest.mark.parametrize("key", [None, "wrong"])
def test_a_keyed_route_without_a_valid_key_is_401_without_reading_the_body(key: str | None) -> None:
    reads: list[int] = []
    refused: list[tuple[str, int]] = []
    r = _post(_app(reads, refused), "/keyed", b"{}", {"X-API-Key": key} if key else {})
    assert r.status_code == 401 and "API key" in r.json()["error"]
    assert reads == [] and refused == [("/keyed", 401)]


def test_a_malformed_length_is_400() -> None:
    reads: list[int] = []
    r = _post(_app(reads, []), "/open", b"abc", {"Content-Length": "abc"})
    assert r.status_code == 400 and "malformed Content-Length" in r.json()["error"]
    assert reads == []
