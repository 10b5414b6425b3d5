"""Clients of the sandbox's own servers drop an idle connection before the server would close it, and resend an
idempotent request whose connection dropped unanswered (a real loopback server that hangs up)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from sandbox.loopback import KEEPALIVE, Redial


def test_idle_connections_are_dropped_before_uvicorn_closes_them() -> None:
    # uvicorn closes a connection idle for its keep-alive timeout; a request sent on it just then fails with a
    # ReadError (seen as "security event not delivered" in the broker's log during a long benchmark).
    server_side = uvicorn.Config(app=None).timeout_keep_alive  # type: ignore[arg-type]
    assert KEEPALIVE.keepalive_expiry is not None and KEEPALIVE.keepalive_expiry < server_side


class _DropsFirst:
    """A loopback HTTP server that reads the first request and closes its connection unanswered; then answers 204."""

    def __init__(self) -> None:
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        if self.requests > 1:
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        async with server:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/thing"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_an_idempotent_request_whose_connection_dropped_is_sent_again(method: str) -> None:
    server = _DropsFirst()
    async with server.serving() as url, httpx.AsyncClient(transport=Redial()) as client:
        response = await client.request(method, url, content=b"{}" if method == "PUT" else None)
    assert response.status_code == 204
    assert server.requests == 2


async def test_a_post_whose_connection_dropped_is_not_sent_again() -> None:
    server = _DropsFirst()
    async with server.serving() as url, httpx.AsyncClient(transport=Redial()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"{}")
    assert server.requests == 1


async def test_a_request_dropped_twice_fails_with_the_second_error() -> None:
    server = _DropsFirst()
    server.requests = -1  # drops the first two
    async with server.serving() as url, httpx.AsyncClient(transport=Redial()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.delete(url)
    assert server.requests == 1


async def test_a_post_is_sent_again_when_the_caller_says_its_posts_are_safe_to_repeat() -> None:
    server = _DropsFirst()
    transport = Redial(methods=frozenset({"POST"}))
    async with server.serving() as url, httpx.AsyncClient(transport=transport) as client:
        response = await client.post(url, content=b"a SET")
    assert response.status_code == 204
    assert server.requests == 2
