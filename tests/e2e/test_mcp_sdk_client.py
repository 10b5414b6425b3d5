"""The official MCP SDK client against the reference server, knowing only the server URL, the agent's client id
and secret (and the issuer its credentials belong to): it discovers the authorization server from the 401 and
the protected resource metadata, gets a token (RFC 8707 resource= included), lists and calls tools."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from reference_mcp import INITIALIZE, Agent, Agents, agents_for, fake_broker, mcp_server, post, push_event

from sandbox.agent.sdk import MemoryTokenStorage as MemoryStorage
from sandbox.agent.sdk import client_credentials_provider
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.pytest_plugin import SandboxStack


@pytest.fixture
def agents(sandbox_stack: SandboxStack) -> Iterator[Agents]:
    yield from agents_for(sandbox_stack)


def provider(url: str, agent: Agent, storage: MemoryStorage) -> ClientCredentialsOAuthProvider:
    assert agent.client.secret
    return client_credentials_provider(url, agent.client_id, agent.client.secret, agent.issuer, storage=storage)


async def session_calls(url: str, agent: Agent, storage: MemoryStorage, calls: list[tuple[str, dict[str, Any]]]) -> Any:
    async with (
        httpx2.AsyncClient(auth=provider(url, agent, storage), trust_env=False) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        tools = {tool.name for tool in (await client.list_tools()).tools}
        results = [await client.call_tool(name, arguments) for name, arguments in calls]
        return tools, results


def claims_of(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def test_the_sdk_client_discovers_gets_a_token_lists_and_calls(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    agent = agents.create(["mcp:tool:invoices.read", "mcp:tool:logs.read"])
    storage = MemoryStorage()
    tools, (invoices,) = asyncio.run(session_calls(url, agent, storage, [("invoices.list", {"limit": 3})]))
    assert tools == {"invoices.list", "logs.read"}
    assert not invoices.is_error and invoices.structured_content["tenant"] == "acme"
    assert len(invoices.structured_content["invoices"]) == 3
    assert storage.tokens is not None
    claims = claims_of(storage.tokens.access_token)
    assert claims["aud"] == url and claims["azp"] == agent.client_id  # resource= narrowed the audience to us


def test_the_sdk_client_cannot_step_up_to_a_scope_its_agent_lacks(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    agent = agents.create(["mcp:tool:invoices.read"])
    with pytest.raises(BaseException) as refused:  # the SDK raises from its task group
        asyncio.run(
            session_calls(url, agent, MemoryStorage(), [("invoices.create", {"customer": "x", "amount_cents": 1})])
        )
    assert "invalid_scope" in repr(refused.value) or "invalid_scope" in str(refused.getrepr())
    tools, (allowed,) = asyncio.run(session_calls(url, agent, MemoryStorage(), [("invoices.list", {})]))
    assert tools == {"invoices.list"} and not allowed.is_error  # control


def test_the_sdk_client_of_a_revoked_agent_is_refused(
    sandbox_stack: SandboxStack, agents: Agents, tmp_path: Path
) -> None:
    """jwt+events: the agent is deleted at the IdP and the event pushed; its very next call fails (budget: one
    round trip, no waiting), and the server's answer to the token it held is 401."""
    settings = sandbox_stack.settings
    acme = settings.issuer("acme")
    outcomes: list[str] = []
    with (
        fake_broker() as broker,
        mcp_server(settings, tmp_path, mode="jwt+events", issuers=[acme], broker_url=broker.base) as server,
    ):
        adapter = KeycloakAdapter.from_settings(settings)  # so that Keycloak accepts resource=<this server>
        resource_client = asyncio.run(adapter.create_resource_server_client("acme", server.url, "unused"))
        agent = agents.create(["mcp:tool:invoices.read"], audiences=[server.url])
        storage = MemoryStorage()

        async def scenario() -> None:
            async with (
                httpx2.AsyncClient(auth=provider(server.url, agent, storage), trust_env=False) as http,
                Client(streamable_http_client(server.url, http_client=http)) as client,
            ):
                first = await client.call_tool("invoices.list", {})
                outcomes.append("error" if first.is_error else "served")
                await asyncio.to_thread(agents.delete, agent)  # the IdP no longer issues it tokens ...
                pushed = await asyncio.to_thread(push_event, server, broker.revocation(server.url, agent))
                outcomes.append(f"event {pushed.status_code}")  # ... and the server no longer honours them
                try:
                    second = await asyncio.wait_for(client.call_tool("invoices.list", {}), 60)
                    outcomes.append("error" if second.is_error else "served")
                except BaseException as exc:  # the OAuth error may arrive wrapped in a group or as a cancellation
                    outcomes.append(f"refused: {type(exc).__name__}")
                    raise

        try:
            with contextlib.suppress(Exception, BaseExceptionGroup, asyncio.CancelledError):  # raised by the SDK
                asyncio.run(scenario())
        finally:
            asyncio.run(KeycloakAdapter.from_settings(settings).delete_client("acme", resource_client))
        assert outcomes[:2] == ["served", "event 202"] and len(outcomes) == 3, outcomes
        assert outcomes[2] != "served", outcomes
        assert storage.tokens is not None
        assert post(server.url, INITIALIZE, token=storage.tokens.access_token).status_code == 401
