"""DPoP-bound agents through the plugin's fixtures and the official SDK client: Keycloak binds their tokens to
the agent's own key, the SDK client sends a proof with every request, and a copy of the token is refused."""

from __future__ import annotations

import pytest

from sandbox.agent.dpop import DPoPKey
from sandbox.agent.session import McpRefused, mcp_session
from sandbox.agent.tokens import ClientSecretCredential, TokenRefused, fetch_token


async def test_a_dpop_agent_calls_with_its_proofs_and_its_token_names_its_key(sandbox_agent, sandbox_mcp_client):
    agent = sandbox_agent(role="read-only-analytics", binding="dpop")
    assert agent.dpop is not None
    token = await agent.token()
    assert token.token_type == "DPoP"
    assert token.claims()["cnf"]["jkt"] == agent.dpop.thumbprint  # Keycloak adds kc-jkt-type: DPoP
    async with sandbox_mcp_client(agent) as mcp:
        assert [tool.name for tool in (await mcp.list_tools()).tools] == ["analytics.query"]
        result = await mcp.call_tool("analytics.query", {"query": "daily_active_users", "days": 3})
        assert not result.is_error


@pytest.mark.parametrize("mode", ["jwt+events", "introspect", "jwt"])
async def test_a_copied_dpop_token_is_refused_without_the_key_and_with_another(sandbox_agent, sandbox_settings, mode):
    agent = sandbox_agent(role="read-only-analytics", binding="dpop")
    token = await agent.token()
    url = sandbox_settings.mcp_server(mode).url
    with pytest.raises(McpRefused) as as_bearer:
        async with mcp_session(url, token.access_token) as mcp:
            await mcp.list_tools()
    assert as_bearer.value.status == 401
    assert as_bearer.value.challenge.startswith('DPoP error="invalid_token"'), as_bearer.value.challenge
    with pytest.raises(McpRefused) as other_key:
        async with mcp_session(url, token.access_token, DPoPKey.generate()) as mcp:
            await mcp.list_tools()
    assert other_key.value.status == 401
    assert other_key.value.challenge.startswith('DPoP error="invalid_dpop_proof"'), other_key.value.challenge
    assert "another key" in other_key.value.challenge


async def test_keycloak_refuses_a_dpop_agent_a_token_without_a_proof(sandbox_agent):
    agent = sandbox_agent(role="read-only-analytics", binding="dpop")
    assert isinstance(agent.credential, ClientSecretCredential)
    with pytest.raises(TokenRefused) as refused:
        await fetch_token(agent.tenant.token_url, agent.credential)  # no DPoP key: no proof
    assert (refused.value.status, refused.value.error) == (400, "invalid_request"), refused.value
    assert refused.value.description == "DPoP proof is missing"


async def test_a_bearer_agent_still_gets_an_unbound_token_served_as_bearer(sandbox_agent, sandbox_mcp_client):
    agent = sandbox_agent(role="read-only-analytics")
    token = await agent.token()
    assert token.token_type.lower() == "bearer" and "cnf" not in token.claims()
    async with sandbox_mcp_client(agent) as mcp:
        assert [tool.name for tool in (await mcp.list_tools()).tools] == ["analytics.query"]
