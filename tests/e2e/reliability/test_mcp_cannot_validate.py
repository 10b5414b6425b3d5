"""The MCP server while it cannot validate: the issuer's keys or its introspection endpoint answer an error, no
JSON, nothing usable, or nothing in time. Whatever the way, no request is served; once they are back, it is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from broker.servers import serving
from reference_mcp import INITIALIZE, FakeIssuer, mcp_server, post
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.pytest_plugin import SandboxStack

REQUESTS_PER_FAULT = 3
FAULTS = ["503", "not json", "html page", "no keys / inactive", "another key / active as a string", "too slow"]


class BrokenIssuer(FakeIssuer):
    """The test issuer, whose JWKS and introspection answers break in the way set in ``fault``."""

    fault: str | None = None

    def app(self) -> Starlette:
        healthy = super().app()

        async def broken(request: Request) -> Response | None:
            if self.fault == "503":
                return Response(status_code=503)
            if self.fault == "not json":
                return Response(b'{"keys": [', media_type="application/json")
            if self.fault == "html page":
                return Response(b"<html>maintenance</html>", media_type="text/html")
            if self.fault == "no keys / inactive":
                return JSONResponse({"keys": []} if request.url.path.endswith("/jwks") else {"active": False})
            if self.fault == "another key / active as a string":
                stranger = FakeIssuer().key.as_dict(private=False)
                return JSONResponse({"keys": [stranger]} if request.url.path.endswith("/jwks") else {"active": "true"})
            if self.fault == "too slow":
                await asyncio.sleep(8)  # longer than the server waits (5 s)
            return None

        async def route(request: Request) -> Response:
            answer = await broken(request)
            if answer is not None:
                return answer
            scope = dict(request.scope)
            captured: list[Any] = []

            async def send(message: Any) -> None:
                captured.append(message)

            await healthy(scope, request.receive, send)
            start = next(m for m in captured if m["type"] == "http.response.start")
            body = b"".join(m.get("body", b"") for m in captured if m["type"] == "http.response.body")
            return Response(body, start["status"], headers={k.decode(): v.decode() for k, v in start["headers"]})

        return Starlette(routes=[Route("/{path:path}", route, methods=["GET", "POST"])])


@contextmanager
def broken_issuer() -> Iterator[BrokenIssuer]:
    issuer = BrokenIssuer()
    with serving(issuer.app()) as base:
        issuer.base = base
        yield issuer


@pytest.mark.reliability(
    "Faults",
    f"MCP server cannot validate: JWKS and introspection each {', '.join(FAULTS)} "
    f"({REQUESTS_PER_FAULT} requests per fault and mode, one when too slow; keys refetched for each)",
    "never served (401, or 503 with Retry-After); served again once the issuer is back",
)
@pytest.mark.parametrize("mode", ["jwt", "introspect"])
def test_no_request_is_served_while_tokens_cannot_be_validated(
    sandbox_stack: SandboxStack, tmp_path: Path, mode: str, reliability: Any
) -> None:
    env = {
        "SANDBOX_MCP_INTROSPECTION_SECRET": "unused-by-the-stand-in",
        "SANDBOX_MCP_INTROSPECTION_CACHE_TTL": "0",
        "SANDBOX_MCP_JWKS_REFETCH_INTERVAL": "0",
    }
    with (
        broken_issuer() as issuer,
        mcp_server(sandbox_stack.settings, tmp_path, mode=mode, issuers=[issuer.issuer], env=env) as server,
    ):
        for fault in FAULTS:
            issuer.fault = fault
            for attempt in range(1 if fault == "too slow" else REQUESTS_PER_FAULT):  # each waits out the timeouts
                header = {"alg": "RS256", "kid": f"unseen-{fault}-{attempt}"}  # an unknown kid: keys are refetched
                token = issuer.token(server.url, header=header if mode == "jwt" else None)
                answer = post(server.url, INITIALIZE, token=token)
                assert answer.status_code in (401, 503), (mode, fault, answer.status_code, answer.text[:200])
                if answer.status_code == 503:
                    assert answer.headers.get("retry-after")
                reliability.add()
        issuer.fault = None
        assert post(server.url, INITIALIZE, token=issuer.token(server.url)).status_code == 200  # control
