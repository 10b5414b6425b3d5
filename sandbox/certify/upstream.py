"""The upstream certify watches: a loopback HTTP endpoint the server under test is configured to call.

It records every request (method, path, headers, body) and, given ``forward_to``, passes it on and returns
the answer, so the server works as usual while certify sees whether a caller's token ever leaves it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.errors import SandboxError
from sandbox.stack.ports import ensure_free

HOP_BY_HOP = ("host", "content-length", "connection", "transfer-encoding", "content-encoding", "keep-alive")


@dataclass(frozen=True)
class Recorded:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        headers = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}\n{headers}\n\n{self.body.decode('utf-8', errors='replace')}"


@dataclass
class UpstreamWatch:
    forward_to: str | None = None
    requests: list[Recorded] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def since(self, moment: float) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.at >= moment]

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            body = await request.body()
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            with self._lock:
                self.requests.append(Recorded(time.time(), request.method, path, dict(request.headers), body))
            if self.forward_to is None:
                return JSONResponse({})
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
                try:
                    answer = await client.request(
                        request.method, self.forward_to.rstrip("/") + path, headers=headers, content=body
                    )
                except httpx.HTTPError:
                    return JSONResponse({"error": "upstream unreachable"}, status_code=502)
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return Response(answer.content, answer.status_code, kept)

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        return Starlette(routes=[Route("/{path:path}", handle, methods=methods)])


@contextmanager
def watching(port: int, forward_to: str | None, host: str = "127.0.0.1") -> Iterator[UpstreamWatch]:
    """Serve an :class:`UpstreamWatch` on ``host:port`` (loopback) until the block ends."""
    ensure_free(host, port, "certify's upstream watch", "upstream.port in the manifest")
    watch = UpstreamWatch(forward_to)
    server = uvicorn.Server(uvicorn.Config(watch.app(), host=host, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="certify-upstream", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SandboxError(f"certify's upstream watch did not start on {host}:{port}", "pick another port")
        time.sleep(0.02)
    try:
        yield watch
    finally:
        server.should_exit = True
        thread.join(timeout=10)
