"""Agents get real client-credentials tokens from a tenant realm, with a secret or a private key."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from sandbox.agent.tokens import (
    ClientSecretCredential,
    PrivateKeyCredential,
    TokenClient,
    TokenEndpointUnavailable,
    TokenRefused,
    fetch_token,
)
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.provider import AgentClient, AgentClientSpec
from sandbox.pytest_plugin import SandboxStack

SCOPES = ["mcp:tool:analytics.read", "mcp:tool:logs.read"]


def token_url(stack: SandboxStack, tenant: str) -> str:
    return f"{stack.issuer(tenant)}/protocol/openid-connect/token"


@pytest.fixture
async def adapter(sandbox_stack: SandboxStack) -> AsyncIterator[KeycloakAdapter]:
    yield KeycloakAdapter.from_settings(sandbox_stack.settings)


async def make_agent(adapter: KeycloakAdapter, stack: SandboxStack, **spec: object) -> AgentClient:
    client_id = f"test-agent-{uuid.uuid4().hex[:8]}"
    return await adapter.create_agent_client(
        stack.tenants[0],
        AgentClientSpec(
            client_id=client_id,
            name=client_id,
            scopes=SCOPES,
            audiences=[stack.settings.mcp_url],
            token_lifetime=120,
            **spec,  # type: ignore[arg-type]
        ),
    )


async def test_a_secret_agent_gets_exactly_its_scopes_and_audience(
    adapter: KeycloakAdapter, sandbox_stack: SandboxStack
) -> None:
    agent = await make_agent(adapter, sandbox_stack)
    try:
        assert agent.secret
        token = await fetch_token(
            token_url(sandbox_stack, sandbox_stack.tenants[0]), ClientSecretCredential(agent.client_id, agent.secret)
        )
        claims = token.claims()
        assert token.scopes == set(SCOPES)
        assert claims["aud"] == sandbox_stack.settings.mcp_url
        assert claims["azp"] == agent.client_id and claims["sub"] == agent.service_account_id
        # the agent's 120 s lifetime. Keycloak's iat and exp are whole seconds, and once, on a loaded machine (a
        # fresh-clone CI run), they were 121 apart: one second of rounding is allowed, no more
        assert claims["exp"] - claims["iat"] in (120, 121)
        with pytest.raises(TokenRefused) as refused:
            await fetch_token(
                token_url(sandbox_stack, sandbox_stack.tenants[0]), ClientSecretCredential(agent.client_id, "wrong")
            )
        assert refused.value.error == "unauthorized_client" or refused.value.error == "invalid_client"
    finally:
        await adapter.delete_client(sandbox_stack.tenants[0], agent.id)


async def test_a_private_key_agent_authenticates_with_a_signed_assertion(
    adapter: KeycloakAdapter, sandbox_stack: SandboxStack
) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "agent-key-1", "alg": "RS256", "use": "sig"})
    agent = await make_agent(
        adapter, sandbox_stack, credential="private_key_jwt", jwks={"keys": [key.as_dict(private=False)]}
    )
    try:
        assert agent.secret is None
        url = token_url(sandbox_stack, sandbox_stack.tenants[0])
        token = await fetch_token(url, PrivateKeyCredential(agent.client_id, key.as_dict(private=True)))
        assert token.claims()["azp"] == agent.client_id
        stranger = RSAKey.generate_key(2048, parameters={"kid": "agent-key-1", "alg": "RS256"})
        with pytest.raises(TokenRefused):
            await fetch_token(url, PrivateKeyCredential(agent.client_id, stranger.as_dict(private=True)))
    finally:
        await adapter.delete_client(sandbox_stack.tenants[0], agent.id)


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (ECKey.generate_key("P-256", parameters={"kid": "agent-ec-1", "use": "sig"}), "ES256"),
        (OKPKey.generate_key("Ed25519", parameters={"kid": "agent-ed-1", "use": "sig"}), "EdDSA"),
    ],
    ids=["ec-p256", "ed25519"],
)
async def test_ec_and_ed25519_agents_authenticate_with_an_assertion_for_the_issuer(
    adapter: KeycloakAdapter, sandbox_stack: SandboxStack, key: ECKey | OKPKey, alg: str
) -> None:
    public = key.as_dict(private=False) | {"alg": alg}
    agent = await make_agent(adapter, sandbox_stack, credential="private_key_jwt", jwks={"keys": [public]})
    try:
        url = token_url(sandbox_stack, sandbox_stack.tenants[0])
        async with TokenClient(url, PrivateKeyCredential(agent.client_id, key.as_dict(private=True))) as client:
            assert client.issuer == sandbox_stack.issuer(sandbox_stack.tenants[0])  # the assertion's aud
            token = await client.fetch()
        assert token.claims()["azp"] == agent.client_id and token.scopes == set(SCOPES)
    finally:
        await adapter.delete_client(sandbox_stack.tenants[0], agent.id)


async def test_a_refusal_has_its_status_and_an_outage_is_not_a_refusal(sandbox_stack: SandboxStack) -> None:
    url = token_url(sandbox_stack, sandbox_stack.tenants[0])
    with pytest.raises(TokenRefused) as refused:
        await fetch_token(url, ClientSecretCredential("no-such-agent", "wrong-secret"))
    assert refused.value.status in (400, 401) and refused.value.error in ("invalid_client", "unauthorized_client")
    with socket.socket() as closed:  # a port nobody listens on: bound, never listening
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with pytest.raises(TokenEndpointUnavailable) as unavailable:
            await fetch_token(f"http://127.0.0.1:{port}/token", ClientSecretCredential("agent", "secret"))
    assert not isinstance(unavailable.value, TokenRefused)
