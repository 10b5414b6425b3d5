"""Size limits every sandbox HTTP server applies before its application reads a request (ASGI middleware).

A header block over the limit is answered 431 before anything reads it; a body over the limit (declared, or
counted as it streams in) is answered 413, whatever the application would have made of the truncated body.
The reference MCP server and the broker use the same limits through this one module.
"""

from __future__ import annotations

import contextlib

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024


class TooLarge(Exception):
    """The request body is over the limit."""


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The whole body, or :class:`TooLarge` as soon as it (or its declared length) exceeds ``limit``."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body.extend(message.get("body", b""))
        if len(body) > limit:
            raise TooLarge
        if not message.get("more_body", False):
            break
    return bytes(body)


class HeaderSizeLimit:
    """431 for a request whose header block exceeds ``limit`` bytes, before anything reads it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and sum(len(k) + len(v) + 4 for k, v in scope["headers"]) > self.limit:
            response = JSONResponse({"error": "request header fields too large"}, status_code=431)
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


class BodySizeLimit:
    """413 for a request whose body exceeds ``limit`` bytes: refused at once when its Content-Length says so,
    else counted while the application reads it (whatever the application answers then is replaced)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = JSONResponse({"error": "request body too large"}, status_code=413)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await refusal(scope, receive, send)
        received = 0
        over = started = False

        async def counting() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise TooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over:
                return  # the application's answer to a cut-off body is dropped: 413 is sent instead
            started = True
            await send(message)

        with contextlib.suppress(TooLarge):
            await self.app(scope, counting, guarded)
        if over and not started:
            await refusal(scope, receive, send)
