"""What the reference MCP server's end-to-end tests share: real agents in Keycloak, raw MCP requests over HTTP
(certify's prober, ``sandbox.agent.mcp_http``), extra server instances (other modes, other ports) run as
`mcp-sandbox mcp-server`, and two loopback stand-ins: an issuer whose keys the test holds, and a broker that
signs revocation events and records what it is sent.

Everything is real HTTP on 127.0.0.1; the stand-ins exist only where a test must control the other side
(forge a token a trusted issuer would sign, take keys away, record upstream traffic).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker.servers import serving
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.agent.challenge import bearer_challenge
from sandbox.agent.mcp_http import (  # noqa: F401 - re-exported for the tests
    INITIALIZE,
    LIST_TOOLS,
    call_tool,
    message,
    open_session,
    post,
    rpc_message,
    tool_names,
)
from sandbox.broker.events import SigningKey, session_revoked
from sandbox.config import Settings
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.provider import AgentClient, AgentClientSpec
from sandbox.pytest_plugin import SandboxStack
from sandbox.ssf import WELL_KNOWN, AgentSubject
from sandbox.stack.ports import free_port
from sandbox.stack.readiness import last_lines
from sandbox.toolmap import ToolMap

MCP_SANDBOX = str(Path(sys.executable).parent / "mcp-sandbox")
#: Every tool scope of the stack's tool map (the tests run with the default fixtures).
ALL_SCOPES = ToolMap.load(Path(__file__).parents[2] / "fixtures" / "tools.yaml").all_scopes()


def run(coroutine: Any) -> Any:
    """Run one Keycloak admin coroutine from a synchronous test (a fresh adapter per loop)."""
    return asyncio.run(coroutine)


# Agents ------------------------------------------------------------------------------------------------------


@dataclass
class Agent:
    settings: Settings
    realm: str
    client: AgentClient

    @property
    def client_id(self) -> str:
        return self.client.client_id

    @property
    def issuer(self) -> str:
        return self.settings.issuer(self.realm)

    def token(self, **form: str) -> str:
        """A fresh client-credentials token from Keycloak (client_secret_post)."""
        response = httpx.post(
            f"{self.issuer}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", **form},
            auth=(self.client_id, self.client.secret or ""),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


class Agents:
    """Creates agents with unique client ids in a tenant realm, and deletes them when the test ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.created: list[Agent] = []

    def create(
        self,
        scopes: list[str],
        *,
        realm: str = "acme",
        audiences: list[str] | None = None,
        lifetime: int = 300,
        attributes: dict[str, str] | None = None,
    ) -> Agent:
        client_id = f"mcp-e2e-{uuid.uuid4().hex[:10]}"
        spec = AgentClientSpec(
            client_id=client_id,
            name=client_id,
            scopes=scopes,
            audiences=[self.settings.mcp_url] if audiences is None else audiences,
            token_lifetime=lifetime,
            attributes=attributes or {},
        )
        client = run(KeycloakAdapter.from_settings(self.settings).create_agent_client(realm, spec))
        agent = Agent(self.settings, realm, client)
        self.created.append(agent)
        return agent

    def delete(self, agent: Agent) -> None:
        run(KeycloakAdapter.from_settings(self.settings).delete_client(agent.realm, agent.client.id))
        self.created.remove(agent)

    def delete_all(self) -> None:
        for agent in list(self.created):
            try:
                self.delete(agent)
            except Exception:  # already gone with its realm, or deleted by the test
                self.created.remove(agent)


def agents_for(stack: SandboxStack) -> Iterator[Agents]:
    """Body of each test module's ``agents`` fixture: the factory, and the clean-up after the test."""
    factory = Agents(stack.settings)
    yield factory
    factory.delete_all()


# Raw MCP over HTTP: the product's prober (sandbox.agent.mcp_http), plus asserting shorthands for tests ----------


def tool_result(response: httpx.Response) -> dict[str, Any]:
    """The structured result of a successful tool call (asserts HTTP 200 and no tool error)."""
    assert response.status_code == 200, (response.status_code, response.text)
    result = (rpc_message(response) or {})["result"]
    assert not result.get("isError"), result
    return dict(result["structuredContent"])


def listed_tools(url: str, token: str, session: str | None) -> set[str]:
    response = post(url, LIST_TOOLS, token=token, session=session)
    assert response.status_code == 200, response.text
    return tool_names(response)


def challenge(response: httpx.Response) -> dict[str, str]:
    """The parameters of the response's ``WWW-Authenticate: Bearer`` challenge (asserts there is one)."""
    found = bearer_challenge(response)
    assert found is not None, response.headers.get("www-authenticate")
    return found.params


def eventually(check: Callable[[], bool], *, budget: float, interval: float = 0.25) -> float:
    """Poll ``check`` until it holds; fail if it does not within ``budget`` seconds. Returns the time it took."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > budget:
            pytest.fail(f"not within the budget of {budget:.1f}s")
        time.sleep(interval)
    return time.monotonic() - began


# Extra server instances --------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    url: str  # canonical URL, http://127.0.0.1:<port>/mcp
    base: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def mcp_server(
    settings: Settings,
    directory: Path,
    *,
    mode: str,
    issuers: list[str],
    broker_url: str | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Run `mcp-sandbox mcp-server` on ``port`` (default: a free one) until the block ends."""
    port = port or free_port()
    command = [MCP_SANDBOX, "mcp-server", "--mode", mode, "--port", str(port)]
    for issuer in issuers:
        command += ["--issuer", issuer]
    if broker_url:
        command += ["--broker-url", broker_url]
    log = directory / f"mcp-server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **settings.as_environment(), **(env or {})},
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the extra MCP server did not start: {last_lines(log)}")
            time.sleep(0.1)
        yield RunningServer(f"{base}/mcp", base, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# Stand-ins on loopback ---------------------------------------------------------------------------------------


@dataclass
class FakeIssuer:
    """An issuer whose signing key the test holds: discovery, JWKS and introspection, each switchable off."""

    name: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "test-1", "use": "sig"}))
    base: str = ""
    jwks_up: bool = True
    introspection_up: bool = True

    @property
    def issuer(self) -> str:
        return f"{self.base}/realms/{self.name}"

    def app(self) -> Starlette:
        async def metadata(request: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "jwks_uri": f"{self.issuer}/jwks",
                    "introspection_endpoint": f"{self.issuer}/introspect",
                }
            )

        async def jwks(request: Request) -> Response:
            if not self.jwks_up:
                return Response(status_code=503)
            return JSONResponse({"keys": [self.key.as_dict(private=False)]})

        async def introspect(request: Request) -> Response:
            if not self.introspection_up:
                return Response(status_code=503)
            form = await request.form()
            try:
                claims = jwt.decode(str(form["token"]), self.key, algorithms=["RS256"]).claims
            except Exception:
                return JSONResponse({"active": False})
            return JSONResponse({"active": True, **claims})

        return Starlette(
            routes=[
                Route(f"/.well-known/oauth-authorization-server/realms/{self.name}", metadata),
                Route(f"/realms/{self.name}/jwks", jwks),
                Route(f"/realms/{self.name}/introspect", introspect, methods=["POST"]),
            ]
        )

    def claims(self, audience: str, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "sub": "test-service-account",
            "azp": "test-agent",
            "client_id": "test-agent",
            "scope": "mcp:tool:invoices.read",
            "iat": now,
            "exp": now + 120,
            "typ": "Bearer",
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, audience: str, *, header: dict[str, Any] | None = None, key: Any = None, **changes: Any) -> str:
        return jwt.encode(
            header or {"alg": "RS256", "kid": "test-1"}, self.claims(audience, **changes), key or self.key
        )


@contextmanager
def fake_issuer() -> Iterator[FakeIssuer]:
    issuer = FakeIssuer()
    with serving(issuer.app()) as base:
        issuer.base = base
        yield issuer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeBroker:
    """The broker's side of the contracts: a signing key at /.well-known/jwks.json, a trust list, a usage
    endpoint that records every request it gets (to check what the MCP server sends upstream), and an SSF
    transmitter of one stream per receiver whose backlog (``backlog``: SETs a receiver polls) the test fills."""

    key: SigningKey = field(default_factory=lambda: SigningKey(_broker_key()))
    issuers: dict[str, str] = field(default_factory=dict)  # the trust list: issuer -> the tenant it stands for
    base: str = ""
    requests: list[Recorded] = field(default_factory=list)
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    backlog: dict[str, str] = field(default_factory=dict)

    def app(self) -> Starlette:
        async def record(request: Request) -> None:
            self.requests.append(
                Recorded(request.method, request.url.path, dict(request.headers), await request.body())
            )

        async def jwks(request: Request) -> Response:
            await record(request)
            return JSONResponse(self.key.jwks())

        async def trust(request: Request) -> Response:
            await record(request)
            return JSONResponse({"issuers": list(self.issuers), "tenants": self.issuers})

        async def usage(request: Request) -> Response:
            await record(request)
            return Response(status_code=202)

        async def configuration(request: Request) -> Response:
            await record(request)
            return JSONResponse(
                {
                    "issuer": self.base,
                    "jwks_uri": f"{self.base}/.well-known/jwks.json",
                    "configuration_endpoint": f"{self.base}/ssf/streams",
                }
            )

        async def streams(request: Request) -> Response:
            await record(request)
            if request.method == "GET":
                return JSONResponse(list(self.streams.values()))
            stream = {**json.loads(await request.body()), "stream_id": uuid.uuid4().hex}
            stream["poll_endpoint_url"] = f"{self.base}/ssf/poll/{stream['stream_id']}"
            self.streams[stream["aud"]] = stream
            return JSONResponse(stream, status_code=201)

        async def poll(request: Request) -> Response:
            await record(request)
            for jti in json.loads(await request.body()).get("ack", []):
                self.backlog.pop(jti, None)
            return JSONResponse({"sets": dict(self.backlog), "moreAvailable": False})

        return Starlette(
            routes=[
                Route("/.well-known/jwks.json", jwks),
                Route("/trust/issuers", trust),
                Route("/usage", usage, methods=["POST"]),
                Route(WELL_KNOWN, configuration),
                Route("/ssf/streams", streams, methods=["GET", "POST"]),
                Route("/ssf/poll/{stream_id}", poll, methods=["POST"]),
            ]
        )

    def revocation(self, server_url: str, agent: Agent, revoked_at: int | None = None) -> str:
        """The SET the real broker would push for this agent (built by the broker's own code)."""
        subject = AgentSubject(agent.issuer, agent.client_id, agent.client.service_account_id)
        at = revoked_at if revoked_at is not None else int(time.time())
        return self.key.sign(
            session_revoked(transmitter=self.base, audience=server_url, subject=subject, at=at, reason="")
        )

    def usage_events(self) -> list[dict[str, Any]]:
        return [event for r in self.requests if r.path == "/usage" for event in json.loads(r.body)["events"]]


def _broker_key() -> ECKey:
    return ECKey.generate_key("P-256", {"use": "sig", "alg": "ES256"}, private=True)


@contextmanager
def fake_broker(issuers: dict[str, str] | None = None) -> Iterator[FakeBroker]:
    broker = FakeBroker(issuers=dict(issuers or {}))
    with serving(broker.app()) as base:
        broker.base = base
        yield broker


def push_event(
    server: RunningServer | str, value: str, content_type: str = "application/secevent+jwt"
) -> httpx.Response:
    base = server.base if isinstance(server, RunningServer) else server
    return httpx.post(f"{base}/events", content=value, headers={"Content-Type": content_type}, timeout=30)
