"""Ory Hydra for real: built once (cached), started on loopback with its own SQLite database, issuing JWT access
tokens whose ``scp`` array and ``aud`` the reference MCP server honours; and :class:`HydraProvider` keeping (or
plainly refusing) each lifecycle promise on it.

The first run on a machine builds Hydra from its Go module (minutes); later runs find it in the cache.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from reference_mcp import call_tool, mcp_server, open_session
from rich.console import Console

from sandbox.agent.tokens import (
    ClientSecretCredential,
    Credential,
    PrivateKeyCredential,
    Token,
    TokenRefused,
    fetch_token,
)
from sandbox.config import Settings, load_settings
from sandbox.harness.provisioning import new_key
from sandbox.idp.hydra import HydraProvider, NotSupported, PeopleElsewhere
from sandbox.idp.provider import AgentClient, AgentClientSpec, IdpConflict, IdpNotFound
from sandbox.issued import remember_answer
from sandbox.oidc import discover
from sandbox.stack.launcher import ComponentStatus, Stack, hydra_components
from sandbox.stack.ports import free_port, free_port_block

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("hydra")]


@pytest.fixture(scope="module")
def hydra_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Stack]]:
    """One tenant's Hydra (tenant `acme`) in a state directory of its own, stopped after the module."""
    settings = load_settings(
        state_dir=tmp_path_factory.mktemp("hydra-state"),
        idp="hydra",
        tenants=["acme"],
        hydra_port=free_port_block(2),
        hydra_pool=0,  # its one Hydra on the two ports found free (the session's environment asks for a pool)
        postgres_port=free_port(),
        startup_timeout=600,
    )
    stack = Stack(settings, hydra_components(settings), console=Console(quiet=True))
    stack.up()
    try:
        yield settings, stack
    finally:
        stack.down()


def status_of(stack: Stack, name: str) -> ComponentStatus:
    (entry,) = [entry for entry in stack.status() if entry.name == name]
    return entry


def admin(settings: Settings) -> httpx.Client:
    return httpx.Client(base_url=settings.hydra("acme").admin_url, timeout=30, trust_env=False)


def make_client(settings: Settings, scopes: list[str], audience: list[str]) -> ClientSecretCredential:
    with admin(settings) as api:
        made = api.post(
            "/admin/clients",
            json={
                "client_id": f"agent-{uuid.uuid4().hex[:8]}",
                "grant_types": ["client_credentials"],
                "response_types": ["token"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": " ".join(scopes),
                "audience": audience,
            },
        )
    assert made.status_code == 201, made.text
    remember_answer(made.json())  # the secret scan after the suite looks for it
    return ClientSecretCredential(made.json()["client_id"], made.json()["client_secret"])


def test_hydra_serves_its_own_issuer_on_loopback_only(hydra_stack: tuple[Settings, Stack]) -> None:
    settings, stack = hydra_stack
    address = settings.hydra("acme")
    metadata = discover(address.issuer)
    # The issuer Hydra's metadata names is the very string the stack trusts (a root issuer ends in "/").
    document = httpx.get(f"{address.issuer}.well-known/openid-configuration", timeout=30, trust_env=False).json()
    assert document["issuer"] == address.issuer and address.issuer.endswith("/")
    assert metadata.token_endpoint == f"{address.issuer}oauth2/token"
    entry = status_of(stack, "hydra-acme")
    assert entry.state == "running" and entry.pid is not None
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for member in [psutil.Process(entry.pid), *psutil.Process(entry.pid).children(recursive=True)]
        for conn in member.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }
    assert {port for _, port in listening} == {address.public_port, address.admin_port}
    assert {ip for ip, _ in listening} == {"127.0.0.1"}


def test_a_second_up_reuses_the_cached_build_and_the_running_hydra(hydra_stack: tuple[Settings, Stack]) -> None:
    settings, stack = hydra_stack
    lines: list[str] = []
    for component in hydra_components(settings):
        component.prepare(lines.append)
    assert lines == []  # built once: nothing to fetch or build
    before = {entry.name: entry.pid for entry in stack.status()}
    stack.up()
    assert {entry.name: entry.pid for entry in stack.status()} == before


def test_a_hydra_token_carries_scp_and_aud_and_the_mcp_server_honours_them(
    hydra_stack: tuple[Settings, Stack], tmp_path: Path
) -> None:
    settings, _ = hydra_stack
    issuer = settings.hydra("acme").issuer
    token_url = discover(issuer).token_endpoint
    with mcp_server(settings, tmp_path, mode="jwt", issuers=[issuer]) as server:
        credential = make_client(settings, ["basic", "mcp:tool:invoices.read"], [server.url])
        token = asyncio.run(fetch_token(token_url, credential, audience=[server.url]))
        claims = token.claims()
        assert claims["iss"] == issuer
        assert sorted(claims["scp"]) == ["basic", "mcp:tool:invoices.read"] and "scope" not in claims
        assert claims["aud"] == [server.url]
        assert claims["client_id"] == credential.client_id

        session = open_session(server.url, token.access_token)
        allowed = call_tool(server.url, token.access_token, session, "invoices.list", {})
        assert allowed.status_code == 200, allowed.text
        refused = call_tool(server.url, token.access_token, session, "invoices.create", {"customer": "x", "amount": 1})
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]

        # Without the audience the token names no MCP server, and the server refuses it.
        unnamed = asyncio.run(fetch_token(token_url, credential))
        assert unnamed.claims().get("aud") in (None, [])
        assert call_tool(server.url, unnamed.access_token, None, "invoices.list", {}).status_code == 401


@pytest.mark.capability("hydra", "resource_indicators")
def test_hydra_takes_no_resource_indicator_so_the_token_names_no_server(hydra_stack: tuple[Settings, Stack]) -> None:
    settings, _ = hydra_stack
    credential = make_client(settings, ["basic"], [AUDIENCE])
    answer = httpx.post(
        discover(settings.hydra("acme").issuer).token_endpoint,
        data={
            "grant_type": "client_credentials",
            "resource": AUDIENCE,  # RFC 8707: Hydra ignores it; only audience= narrows aud
        },
        auth=(credential.client_id, credential.secret),  # client_secret_basic, as the client is registered
        timeout=30,
        trust_env=False,
    )
    assert answer.status_code == 200
    remember_answer(answer.json())
    assert Token(answer.json()["access_token"], 0, "").claims()["aud"] == []


def test_hydra_grants_no_scope_or_audience_the_client_is_not_allowed(hydra_stack: tuple[Settings, Stack]) -> None:
    settings, _ = hydra_stack
    issuer = settings.hydra("acme").issuer
    credential = make_client(settings, ["basic", "mcp:tool:invoices.read"], ["http://127.0.0.1:1/mcp"])
    token_url = discover(issuer).token_endpoint
    with pytest.raises(TokenRefused) as caught:
        asyncio.run(fetch_token(token_url, credential, scope="mcp:tool:invoices.write"))
    assert caught.value.error == "invalid_scope"
    with pytest.raises(TokenRefused) as wrong_audience:
        asyncio.run(fetch_token(token_url, credential, audience=["http://127.0.0.1:2/mcp"]))
    assert wrong_audience.value.error == "invalid_request"
    assert "http://127.0.0.1:2/mcp" in wrong_audience.value.description


# HydraProvider: the agents' side of the IdentityProvider on the real Hydra ------------------------------------

AUDIENCE = "http://127.0.0.1:9/mcp"


def spec(**changes: Any) -> AgentClientSpec:
    base = AgentClientSpec(
        client_id=f"agent-{uuid.uuid4().hex[:8]}",
        name="test agent",
        scopes=["mcp:tool:invoices.read"],
        audiences=[AUDIENCE],
        token_lifetime=120,
    )
    return replace(base, **changes)


@pytest.fixture
def hydra(hydra_stack: tuple[Settings, Stack]) -> HydraProvider:
    return HydraProvider.from_settings(hydra_stack[0])


@pytest.fixture
async def agent(hydra: HydraProvider) -> AsyncIterator[tuple[AgentClient, ClientSecretCredential]]:
    """A client-secret agent of tenant `acme`, deleted after the test unless the test did."""
    made = await hydra.create_agent_client("acme", spec())
    assert made.secret is not None
    yield made, ClientSecretCredential(made.client_id, made.secret)
    if await hydra.find_client("acme", made.client_id):
        await hydra.delete_client("acme", made.id)


async def token_for(hydra: HydraProvider, credential: Credential) -> Token:
    return await fetch_token(await hydra.token_endpoint("acme"), credential, audience=[AUDIENCE])


async def test_an_agent_is_a_hydra_client_whose_tokens_carry_its_scopes_audience_and_lifetime_and_a_role_change(
    hydra: HydraProvider, agent: tuple[AgentClient, ClientSecretCredential]
) -> None:
    made, credential = agent
    assert made.client_id == made.id == made.service_account_id
    assert await hydra.find_client("acme", made.client_id) == made.client_id
    claims = (await token_for(hydra, credential)).claims()
    assert sorted(claims["scp"]) == ["basic", "mcp:tool:invoices.read"]
    assert claims["aud"] == [AUDIENCE] and claims["sub"] == made.client_id
    assert claims["exp"] - claims["iat"] <= 120  # the agent's own token lifetime

    await hydra.set_default_scopes("acme", made.id, ["mcp:tool:invoices.write"])
    changed = (await token_for(hydra, credential)).claims()
    assert sorted(changed["scp"]) == ["basic", "mcp:tool:invoices.write"]  # the next token, same agent
    with pytest.raises(IdpConflict):
        await hydra.create_agent_client("acme", spec(client_id=made.client_id))


@pytest.mark.capability("hydra", "key_rotation")
async def test_key_rotation_keeps_the_old_and_the_new_key_through_the_grace(hydra: HydraProvider) -> None:
    old, new = new_key("k-old"), new_key("k-new")

    def jwks(*keys: Any) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in keys]}

    made = await hydra.create_agent_client("acme", spec(credential="private_key_jwt", jwks=jwks(old)))
    assert made.secret is None
    with_old = PrivateKeyCredential(made.client_id, old.as_dict(private=True))
    with_new = PrivateKeyCredential(made.client_id, new.as_dict(private=True))
    await token_for(hydra, with_old)
    with pytest.raises(TokenRefused):
        await token_for(hydra, with_new)

    await hydra.set_client_jwks("acme", made.id, jwks(old, new))  # the grace: both keys
    await token_for(hydra, with_old)
    await token_for(hydra, with_new)

    await hydra.set_client_jwks("acme", made.id, jwks(new))  # the grace ends
    with pytest.raises(TokenRefused) as caught:
        await token_for(hydra, with_old)
    assert "kid 'k-old'" in caught.value.description  # Hydra: invalid_request, the key "could not be found"
    await token_for(hydra, with_new)
    await hydra.delete_client("acme", made.id)


@pytest.mark.capability("hydra", "dual_secret_rotation")
async def test_a_secret_rotates_with_no_grace_and_a_grace_is_refused_as_not_supported(
    hydra: HydraProvider, agent: tuple[AgentClient, ClientSecretCredential]
) -> None:
    made, old = agent
    fresh = await hydra.rotate_client_secret("acme", made.id, 60)
    await token_for(hydra, ClientSecretCredential(made.client_id, fresh))
    with pytest.raises(TokenRefused) as caught:  # one secret per client: the old one ended at once
        await token_for(hydra, old)
    assert caught.value.error == "invalid_client"
    with pytest.raises(NotSupported, match=r"^not supported by hydra: a Hydra client has exactly one secret"):
        await hydra.keep_rotated_secret("acme", made.id, 60)


@pytest.mark.capability("hydra", "disable_without_delete")
@pytest.mark.capability("hydra", "token_revocation")
@pytest.mark.capability("hydra", "introspection")
async def test_disable_revokes_tokens_and_refuses_new_ones_enable_gives_them_back_delete_ends_it(
    hydra: HydraProvider, agent: tuple[AgentClient, ClientSecretCredential]
) -> None:
    made, credential = agent
    token = await token_for(hydra, credential)
    assert (await hydra.introspect("acme", token.access_token))["active"] is True

    await hydra.set_client_enabled("acme", made.id, False)
    assert (await hydra.introspect("acme", token.access_token))["active"] is False
    with pytest.raises(TokenRefused):
        await token_for(hydra, credential)
    assert await hydra.find_client("acme", made.client_id) == made.client_id  # kept its identity

    await hydra.set_client_enabled("acme", made.id, True)
    again = await token_for(hydra, credential)
    assert (await hydra.introspect("acme", again.access_token))["active"] is True

    await hydra.delete_client("acme", made.id)
    assert (await hydra.introspect("acme", again.access_token))["active"] is False
    with pytest.raises(TokenRefused):
        await token_for(hydra, credential)


@pytest.mark.capability("hydra", "token_exchange")
@pytest.mark.capability("hydra", "event_emission")
async def test_what_hydra_lacks_is_refused_naming_the_reason(hydra: HydraProvider) -> None:
    with pytest.raises(NotSupported, match=r"^not supported by hydra: Hydra has no RFC 8693"):
        await hydra.create_agent_client("acme", spec(token_exchange=True))
    with pytest.raises(NotSupported, match=r"^not supported by hydra: Hydra keeps no event log"):
        await hydra.client_events("acme", "any", ("token_issued",))
    with pytest.raises(PeopleElsewhere, match=r"people .* are on Keycloak"):
        await hydra.create_tenant_user("acme", "alice", "pw", None, roles=[])
    with pytest.raises(IdpNotFound, match="no Hydra for tenant 'globex'"):
        await hydra.revoke_tokens("globex", "any")
