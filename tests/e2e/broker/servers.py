"""Real HTTP servers the broker tests run beside the stack, on loopback: an extra broker with its own
clock or its own view of Keycloak, a resource server that receives revocation events, and a proxy that
makes chosen Keycloak Admin REST calls fail (to break an operation halfway)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.stack.ports import free_port, is_free


@contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 in a thread; yield its base URL; stop it afterwards (and wait until it has).

    Bounds are generous: on a loaded machine a server takes seconds to start or stop, and a caller serving one app
    after another on one port needs the last one gone before the next binds."""
    port = port or free_port()
    deadline = time.monotonic() + 60
    while not is_free("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} is still taken after 60 s: the test server cannot start")
        time.sleep(0.1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the test server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=120)
    if thread.is_alive():  # said only when the body itself did not fail
        raise RuntimeError(f"the test server on port {port} did not stop within 120 s")


class ProbeResourceServer:
    """A resource server in jwt+events mode: verifies tokens with the tenant's keys and audience, and
    refuses tokens of an agent a verified revocation event named (RFC 8417 SET signed by the broker)."""

    def __init__(self, broker_jwks_url: str) -> None:
        self.broker_jwks_url = broker_jwks_url
        self.events: list[dict[str, Any]] = []
        self.revoked: dict[tuple[str, str], int] = {}
        self.url = ""  # canonical URL, set once serving

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/events", self.receive, methods=["POST"]), Route("/mcp", self.call, methods=["POST"])]
        )

    async def receive(self, request: Request) -> Response:
        if request.headers.get("content-type") != "application/secevent+jwt":
            return Response(status_code=400)
        async with httpx.AsyncClient() as http:
            keys = KeySet.import_key_set((await http.get(self.broker_jwks_url)).json())
        try:
            token = jwt.decode(await request.body(), keys, algorithms=["ES256"])
        except Exception:
            return JSONResponse({"err": "invalid_key"}, status_code=400)
        if token.header.get("typ") != "secevent+jwt" or token.claims.get("aud") != self.url:
            return JSONResponse({"err": "invalid_audience"}, status_code=400)
        self.events.append(token.claims)
        subject = token.claims["sub_id"]  # an agent: RFC 9493 complex subject, tenant (issuer) + application (client)
        for event in token.claims["events"].values():
            self.revoked[(subject["tenant"]["uri"], subject["application"]["id"])] = event["event_timestamp"]
        return Response(status_code=202)

    async def call(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        token = header[7:]
        try:
            issuer = _claims(token)["iss"]
            async with httpx.AsyncClient() as http:
                keys = KeySet.import_key_set((await http.get(f"{issuer}/protocol/openid-connect/certs")).json())
            claims = jwt.decode(token, keys, algorithms=["RS256"]).claims
            jwt.JWTClaimsRegistry(exp={"essential": True}).validate(claims)
        except Exception:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        revoked_at = self.revoked.get((claims["iss"], claims.get("azp", "")))
        if self.url not in audiences or (revoked_at is not None and claims["iat"] <= revoked_at):
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return JSONResponse({"jsonrpc": "2.0", "id": 1, "result": {"ok": True}})


def _claims(token: str) -> dict[str, Any]:
    import base64
    import json

    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Hold:
    """The first request matching a rule waits at the proxy until released (to stop something mid-operation)."""

    def __init__(self, method: str, pattern: str) -> None:
        self.method, self.pattern = method, re.compile(pattern)
        self.arrived, self.released = threading.Event(), threading.Event()
        self.forward = True

    def release(self, *, forward: bool = True) -> None:
        """Let the held request go on to Keycloak, or (forward=False) answer it 503 without sending it."""
        self.forward = forward
        self.released.set()


class FlakyKeycloak:
    """A reverse proxy to Keycloak that answers 503 to the requests matching the rules set now, and holds the
    first request matching a hold until the test releases it. A Keycloak that does not answer is a 502."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.failing: list[tuple[str, re.Pattern[str]]] = []
        self.holds: list[Hold] = []

    def fail(self, method: str, path_pattern: str) -> None:
        self.failing.append((method, re.compile(path_pattern)))

    def hold(self, method: str, path_pattern: str) -> Hold:
        hold = Hold(method, path_pattern)
        self.holds.append(hold)
        return hold

    def heal(self) -> None:
        self.failing.clear()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST", "PUT", "DELETE"])])

    async def forward(self, request: Request) -> Response:
        path = request.url.path
        if any(method == request.method and pattern.search(path) for method, pattern in self.failing):
            return JSONResponse({"error": "injected failure"}, status_code=503)
        for hold in self.holds:
            if hold.method == request.method and hold.pattern.search(path) and not hold.arrived.is_set():
                hold.arrived.set()
                await asyncio.to_thread(hold.released.wait, 300)
                if not hold.forward:
                    return JSONResponse({"error": "dropped by the test"}, status_code=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        try:
            async with httpx.AsyncClient() as http:
                answer = await http.request(
                    request.method,
                    f"{self.upstream}{path}",
                    params=request.query_params,
                    headers=headers,
                    content=await request.body(),
                )
        except httpx.TransportError:
            return JSONResponse({"error": "Keycloak does not answer"}, status_code=502)
        drop = ("content-length", "content-encoding", "transfer-encoding", "connection")
        return Response(
            answer.content, answer.status_code, {k: v for k, v in answer.headers.items() if k.lower() not in drop}
        )
