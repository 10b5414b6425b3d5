"""The plugin's agents through their lifecycle, as a user's suite drives them: keys, role changes, rotation,
revocation, a refused tool as a clear refusal, and a server named by URL."""

from __future__ import annotations

import pytest

from sandbox.agent.session import McpRefused
from sandbox.agent.tokens import TokenRefused, fetch_token
from sandbox.errors import SandboxError


async def test_a_private_key_agent_on_a_server_named_by_url(sandbox_agent, sandbox_mcp_client, sandbox_settings):
    agent = sandbox_agent(role="log-reader", credential="private_key_jwt")
    async with sandbox_mcp_client(agent, url=sandbox_settings.mcp_server("introspect").url) as mcp:
        assert [tool.name for tool in (await mcp.list_tools()).tools] == ["logs.read"]


async def test_a_forbidden_tool_is_a_clear_403_refusal(sandbox_agent, sandbox_mcp_client):
    agent = sandbox_agent(role="read-only-analytics")
    with pytest.raises(McpRefused) as refused:
        async with sandbox_mcp_client(agent) as mcp:
            await mcp.call_tool("invoices.create", {"customer": "x", "amount_cents": 1})
    assert refused.value.status == 403 and 'error="insufficient_scope"' in refused.value.challenge
    assert "\n" not in str(refused.value)


async def test_change_role_rotate_and_revoke(sandbox_agent, sandbox_mcp_client):
    agent = sandbox_agent(role="read-only-analytics")
    agent.change_role("log-reader")
    async with sandbox_mcp_client(agent) as mcp:
        assert [tool.name for tool in (await mcp.list_tools()).tools] == ["logs.read"]
    old = agent.credential
    agent.rotate(grace_seconds=0)
    assert agent.credential != old
    with pytest.raises(TokenRefused):
        await fetch_token(agent.tenant.token_url, old)
    async with sandbox_mcp_client(agent) as mcp:
        assert not (await mcp.call_tool("logs.read", {})).is_error
    agent.revoke(reason="test over")
    assert agent.status == "revoked"
    with pytest.raises(SandboxError, match="no authorization server"):
        async with sandbox_mcp_client(agent):
            pass
