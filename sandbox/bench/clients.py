"""What the lifecycle benchmarks share: the broker's HTTP API as the platform operator, the agents it provisions,
and the one tool call every benchmark makes (through certify's raw MCP prober)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox.admin.client import BrokerClient
from sandbox.admin.operator import operator_token
from sandbox.agent import mcp_http
from sandbox.agent.tokens import ClientSecretCredential
from sandbox.bench.pacing import Threads
from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.harness.tenants import create_tenant, delete_tenant

#: The policy role benchmark agents get: one read scope, no MFA or approval needed in staging.
ROLE, ENVIRONMENT = "read-only-analytics", "staging"
#: The tool every benchmark calls, and arguments that keep its own work small.
TOOL, ARGUMENTS = "analytics.query", {"query": "daily_active_users", "days": 1}
#: Master realm access tokens live 60 s by default; the operator's is renewed well before.
OPERATOR_TOKEN_REUSE = 30.0


@dataclass
class BenchAgent:
    id: str
    tenant: str
    client_id: str
    token_url: str
    secret: str = field(repr=False)
    audience: list[str] | None = None  # asked for with audience= (an agent on Ory Hydra, which grants aud so)
    steps_ms: dict[str, float] = field(default_factory=dict)  # the broker's own timings of its provision's steps

    @property
    def credential(self) -> ClientSecretCredential:
        return ClientSecretCredential(self.client_id, self.secret)


class OperatorBroker:
    """The broker's API as the platform operator (the master realm's admin service account).

    :class:`BrokerClient` is synchronous; its calls run in a pool of threads so many can be in flight. Agents
    still live when the benchmark ends are revoked by :meth:`close`.
    """

    def __init__(self, settings: Settings, *, threads: int) -> None:
        self.settings = settings
        self._client = BrokerClient(settings.broker_url, timeout=60.0)
        self._threads = Threads(threads, "bench-broker")
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()
        self.live: dict[str, BenchAgent] = {}

    async def _authorization(self) -> dict[str, str]:
        async with self._token_lock:
            if self._token is None or time.monotonic() - self._token[1] > OPERATOR_TOKEN_REUSE:
                self._token = (await asyncio.to_thread(operator_token, self.settings), time.monotonic())
            return {"Authorization": f"Bearer {self._token[0]}"}

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        headers = await self._authorization()
        return await self._threads.run(self._client.request, "POST", path, json=body, headers=headers)

    async def get(self, path: str, **params: Any) -> Any:
        headers = await self._authorization()
        query = {key: value for key, value in params.items() if value is not None}
        return await self._threads.run(self._client.request, "GET", path, params=query, headers=headers)

    async def provision(
        self, tenant: str, *, servers: list[str] | None = None, lifetime: int | None = None, audience: bool = False
    ) -> BenchAgent:
        """An agent of ``tenant``; ``audience``: its tokens are asked for with its servers as ``audience=``."""
        body: dict[str, Any] = {
            "name": f"bench-{uuid.uuid4().hex[:12]}",
            "owner": "mcp-sandbox bench",
            "role": ROLE,
            "environment": ENVIRONMENT,
            "metadata": {"purpose": "mcp-sandbox bench"},
        }
        if servers is not None:
            body["servers"] = servers
        if lifetime is not None:
            body["token_lifetime"] = lifetime
        answer = await self.call(f"/tenants/{tenant}/agents", body)
        credential = answer["credential"]
        agent = BenchAgent(
            id=answer["agent"]["id"],
            tenant=tenant,
            client_id=credential["client_id"],
            token_url=credential["token_endpoint"],
            secret=credential["client_secret"],
            audience=list(answer["agent"]["audiences"]) if audience else None,
            steps_ms=dict(answer.get("steps_ms") or {}),
        )
        self.live[agent.id] = agent
        return agent

    async def revoke(self, agent: BenchAgent) -> dict[str, Any]:
        """The broker's answer (its ``steps_ms``: when each step of the revocation's work ended)."""
        answer: dict[str, Any] = await self.call(
            f"/tenants/{agent.tenant}/agents/{agent.id}/revoke", {"reason": "mcp-sandbox bench"}
        )
        self.live.pop(agent.id, None)
        return answer

    async def rotate(self, agent: BenchAgent, grace_seconds: int) -> str:
        """Rotate the agent's secret with a grace for the old one; the new secret."""
        path = f"/tenants/{agent.tenant}/agents/{agent.id}/rotate"
        answer = await self.call(path, {"grace_seconds": grace_seconds, "reason": "mcp-sandbox bench"})
        return str(answer["credential"]["client_secret"])

    async def end_grace(self, agent: BenchAgent) -> None:
        await self.call(f"/tenants/{agent.tenant}/agents/{agent.id}/rotation/end", {"reason": "mcp-sandbox bench"})

    async def close(self) -> None:
        """Revoke every agent still live (a benchmark that failed halfway), then let go of the threads."""
        try:
            for agent in list(self.live.values()):
                with contextlib.suppress(SandboxError):  # the broker's housekeeping resumes what was interrupted
                    await self.revoke(agent)
        finally:
            self._threads.close()
            self._client.close()


class McpCaller:
    """Tool calls over one kept-alive connection pool, with certify's raw prober (every status visible)."""

    def __init__(self, threads: int) -> None:
        limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
        self._http = httpx.Client(timeout=30.0, limits=limits)
        self._threads = Threads(threads, "bench-mcp")

    async def open_session(self, url: str, token: str) -> str | None:
        return await self._threads.run(mcp_http.open_session, url, token, client=self._http)

    async def call(self, url: str, token: str, session: str | None) -> httpx.Response:
        return await self._threads.run(mcp_http.call_tool, url, token, session, TOOL, ARGUMENTS, client=self._http)

    def call_blocking(self, url: str, token: str, session: str | None) -> httpx.Response:
        """The same call on the caller's own thread: for sequential latency, with no thread hop to measure."""
        return mcp_http.call_tool(url, token, session, TOOL, ARGUMENTS, client=self._http)

    def close(self) -> None:
        self._threads.close()
        self._http.close()


@contextlib.contextmanager
def tenant_on_hydra(settings: Settings) -> Iterator[str | None]:
    """A tenant made through the broker whose agents are on a pool Hydra (its people on Keycloak), for the
    benchmark's run, deleted after; None when the stack lends no Hydra (``SANDBOX_HYDRA_POOL``)."""
    if not settings.hydra_pool:
        yield None
        return
    tenant = create_tenant(settings, {"bench-owner": False}, prefix="bench-hydra", idp="hydra")
    try:
        yield tenant.name
    finally:
        delete_tenant(settings, tenant.name)
