"""A loopback forwarder that adds an agent's bearer token to every request, for clients that cannot send one.

The conformance suite's server scenarios have no way to send a token; pointed at this forwarder, every request
reaches the reference server as the agent's. Answers stream back unchanged (SSE included). A ``Host`` naming the
forwarder becomes the server's; any other ``Host`` (a DNS-rebinding probe) and every ``Origin`` pass as sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
from broker.servers import serving
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from sandbox.stack.ports import free_port

HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "authorization"}


def forwarder_app(target_origin: str, token: str, own_hosts: set[str]) -> Starlette:
    client = httpx.AsyncClient(timeout=httpx.Timeout(60.0), trust_env=False)

    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        host = request.headers.get("host", "")
        if host not in own_hosts:
            headers["host"] = host  # not ours: the server must see it as sent
        headers["authorization"] = f"Bearer {token}"
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        upstream = client.build_request(
            request.method, target_origin + path, headers=headers, content=await request.body()
        )
        answer = await client.send(upstream, stream=True)

        async def body() -> AsyncIterator[bytes]:
            async for chunk in answer.aiter_raw():
                yield chunk

        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        return StreamingResponse(body(), answer.status_code, kept, background=BackgroundTask(answer.aclose))

    methods = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])


@contextmanager
def bearer_forwarder(target_url: str, token: str) -> Iterator[str]:
    """Serve the forwarder on a free loopback port until the block ends; yields the URL matching ``target_url``."""
    parts = urlsplit(target_url)
    port = free_port()
    own = {f"127.0.0.1:{port}", f"localhost:{port}"}
    with serving(forwarder_app(f"{parts.scheme}://{parts.netloc}", token, own), port) as base:
        yield base + parts.path
