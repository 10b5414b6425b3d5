"""Loopback only: the one check that a host or URL stays on 127.0.0.0/8 or ::1 (or ``localhost``)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import httpx

from sandbox.errors import SandboxError

#: Connection limits of a client calling the sandbox's own servers: an idle connection is dropped after 2 s,
#: before the server (uvicorn: 5 s keep-alive) could close it just as a request goes out on it (a ReadError).
KEEPALIVE = httpx.Limits(keepalive_expiry=2.0)

#: Requests that may be sent twice with one effect (RFC 9110, 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: The connection went away before any answer: nothing was read, so the request may not have been handled.
DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class Redial(httpx.AsyncBaseTransport):
    """Sends an idempotent request once more, on a new connection, when its connection dropped without an answer.

    A pooled connection can be closed by the server just as a request goes out on it; the keep-alive bound above
    makes that rare, not impossible (a busy event loop holds a connection past it). ``methods`` are those sent
    again: the idempotent ones, unless the caller knows its POSTs are safe to repeat too.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None, methods: frozenset[str] = IDEMPOTENT) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport(limits=KEEPALIVE)
        self._methods = methods

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except DROPPED:
            if request.method not in self._methods:
                raise
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address; a name or a malformed address is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    return is_loopback_host(host)


def require_loopback(url: str, what: str) -> str:
    """``url`` unchanged if it points at loopback; the sandbox never sends traffic anywhere else."""
    if not is_loopback_url(url):
        raise SandboxError(
            f"{what} {url!r} is not an http(s) URL on loopback",
            "the sandbox only talks to 127.0.0.0/8 or ::1: use a URL like http://127.0.0.1:<port>/...",
        )
    return url
