"""The reference MCP server against shared/MCP-AUTH-REQUIREMENTS.md: one test per row, each with its positive
control (the same request, made acceptable, succeeds). Real Keycloak tokens on the stack's server unless a row
needs a token no honest issuer would sign; those come from a loopback issuer whose key the test holds."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from reference_mcp import (
    ALL_SCOPES,
    INITIALIZE,
    Agents,
    FakeBroker,
    agents_for,
    call_tool,
    challenge,
    eventually,
    fake_broker,
    fake_issuer,
    listed_tools,
    mcp_server,
    message,
    open_session,
    post,
    push_event,
    tool_result,
)

from sandbox.certify import forge
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.realm import load_realm_template
from sandbox.pytest_plugin import SandboxStack
from sandbox.toolmap import ToolMap


@pytest.fixture
def agents(sandbox_stack: SandboxStack) -> Iterator[Agents]:
    yield from agents_for(sandbox_stack)


def metadata_url(stack: SandboxStack) -> str:
    return stack.settings.mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")


# prm-served, prm-content ---------------------------------------------------------------------------------------


def test_prm_served_at_the_path_inserted_and_the_root_well_known_urls(sandbox_stack: SandboxStack) -> None:
    base = sandbox_stack.settings.mcp_url.removesuffix("/mcp")
    documents = [
        httpx.get(url) for url in (metadata_url(sandbox_stack), f"{base}/.well-known/oauth-protected-resource")
    ]
    assert [d.status_code for d in documents] == [200, 200]
    assert all(d.headers["content-type"].startswith("application/json") for d in documents)
    assert documents[0].json() == documents[1].json()
    # control: only those paths are metadata; the server is not a catch-all
    assert httpx.get(f"{base}/.well-known/oauth-protected-resource/other").status_code == 404


def test_prm_content_names_this_resource_and_the_tenants_authorization_servers(sandbox_stack: SandboxStack) -> None:
    settings = sandbox_stack.settings
    document = httpx.get(metadata_url(sandbox_stack)).json()
    assert document["resource"] == settings.mcp_url
    tenants = [settings.issuer(t) for t in sandbox_stack.tenants]
    assert set(tenants) <= set(document["authorization_servers"])
    assert settings.issuer("master") not in document["authorization_servers"]
    assert document["bearer_methods_supported"] == ["header"]
    assert set(ToolMap.load(settings.tools_file).all_scopes()) <= set(document["scopes_supported"])
    for issuer in document["authorization_servers"]:  # control: each is a real issuer that says so
        assert httpx.get(f"{issuer}/.well-known/openid-configuration").json()["issuer"] == issuer


# 401-no-token, 401-www-authenticate, 401-scope-hint ---------------------------------------------------------


def test_401_no_token(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    assert post(url, INITIALIZE).status_code == 401
    assert httpx.get(url, headers={"Accept": "text/event-stream"}).status_code == 401
    assert httpx.delete(url).status_code == 401
    token = agents.create(["mcp:tool:invoices.read"]).token()
    assert post(url, INITIALIZE, token=token).status_code == 200  # control


def test_401_www_authenticate_names_the_resource_metadata(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    refused = post(url, INITIALIZE)
    params = challenge(refused)
    assert params["resource_metadata"] == metadata_url(sandbox_stack)
    assert "error" not in params  # RFC 6750 §3.1: no error code when no credentials were sent
    assert httpx.get(params["resource_metadata"]).json()["resource"] == url
    accepted = post(url, INITIALIZE, token=agents.create(["mcp:tool:invoices.read"]).token())
    assert accepted.status_code == 200 and "www-authenticate" not in accepted.headers  # control


def test_401_scope_hint_names_what_the_request_needs_and_that_is_enough(
    sandbox_stack: SandboxStack, agents: Agents
) -> None:
    url = sandbox_stack.settings.mcp_url
    assert challenge(post(url, INITIALIZE))["scope"] == "basic"
    call = message("tools/call", {"name": "invoices.list", "arguments": {}})
    hint = challenge(post(url, call))["scope"]
    assert hint == "basic mcp:tool:invoices.read"
    # control: a token requested with exactly the hinted scope makes that very request succeed
    agent = agents.create(["mcp:tool:invoices.read", "mcp:tool:logs.read"])
    token = agent.token(scope=hint)
    session = open_session(url, token)
    assert tool_result(call_tool(url, token, session, "invoices.list"))["tenant"] == "acme"


# 401-invalid ------------------------------------------------------------------------------------------------


def test_401_invalid_for_malformed_garbage_and_truncated_tokens(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    token = agents.create(["mcp:tool:invoices.read"]).token()
    bad = [
        "garbage",
        "a.b.c",
        token[: len(token) // 2],
        token[:-10],
        token.rsplit(".", 1)[0],
        token + ".extra",
        "eyJhbGciOiJSUzI1NiJ9." + "A" * 40 + ".sig",
        "Zm9v" * 3000,
    ]
    for value in bad:
        response = post(url, INITIALIZE, token=value)
        assert response.status_code == 401, (value[:30], response.status_code)
        assert challenge(response)["error"] == "invalid_token"
    for header in ("Bearer", "Basic dXNlcjpwYXNz", token, f"Token {token}"):  # no bearer token at all: 401 too
        assert post(url, INITIALIZE, headers={"Authorization": header}).status_code == 401
    assert post(url, INITIALIZE, token=token).status_code == 200  # control


# 401-expired -------------------------------------------------------------------------------------------------


def test_401_expired_real_keycloak_token(sandbox_stack: SandboxStack, agents: Agents) -> None:
    """Budget: the token's lifetime (5 s) + the server's leeway (5 s) + 5 s of slack."""
    settings = sandbox_stack.settings
    url = settings.mcp_url
    token = agents.create(["mcp:tool:invoices.read"], lifetime=5).token()
    assert post(url, INITIALIZE, token=token).status_code == 200  # control: accepted while valid
    eventually(lambda: post(url, INITIALIZE, token=token).status_code == 401, budget=5 + settings.mcp_leeway + 5)
    assert "expired" in challenge(post(url, INITIALIZE, token=token))["error_description"]


def test_401_expired_and_not_yet_valid_tokens_of_a_trusted_issuer(sandbox_stack: SandboxStack, tmp_path: Path) -> None:
    settings = sandbox_stack.settings
    with fake_issuer() as issuer, mcp_server(settings, tmp_path, mode="jwt", issuers=[issuer.issuer]) as server:
        now = int(time.time())
        for changes in ({"exp": now - 60, "iat": now - 120}, {"nbf": now + 120}, {"iat": now + 120, "exp": now + 180}):
            response = post(server.url, INITIALIZE, token=issuer.token(server.url, **changes))
            assert response.status_code == 401, changes
        assert post(server.url, INITIALIZE, token=issuer.token(server.url, nbf=now)).status_code == 200  # control


# 401-audience ------------------------------------------------------------------------------------------------


def test_401_audience_other_server_or_none(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    other = agents.create(["mcp:tool:invoices.read"], audiences=["http://127.0.0.1:9/mcp"]).token()
    missing = agents.create(["mcp:tool:invoices.read"], audiences=[]).token()
    for token in (other, missing):
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert url not in ([claims["aud"]] if isinstance(claims.get("aud"), str) else claims.get("aud", []))
        response = post(url, INITIALIZE, token=token)
        assert response.status_code == 401 and "audience" in challenge(response)["error_description"]
    assert post(url, INITIALIZE, token=agents.create(["mcp:tool:invoices.read"]).token()).status_code == 200


@pytest.mark.capability("keycloak", "resource_indicators")
def test_401_audience_narrowed_by_resource_indicator(sandbox_stack: SandboxStack, agents: Agents) -> None:
    """RFC 8707: a token requested with resource=<this server> carries exactly this audience, and is accepted."""
    url = sandbox_stack.settings.mcp_url
    agent = agents.create(
        ["mcp:tool:invoices.read"],
        audiences=[url, "http://127.0.0.1:9/mcp"],
    )
    token = agent.token(resource=url)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == url
    assert post(url, INITIALIZE, token=token).status_code == 200


# 401-issuer --------------------------------------------------------------------------------------------------


def test_401_issuer_a_realm_nobody_trusts(sandbox_stack: SandboxStack, agents: Agents) -> None:
    settings = sandbox_stack.settings
    url = settings.mcp_url
    realm = f"foreign-{int(time.time() * 1000) % 10**9}"
    adapter = KeycloakAdapter.from_settings(settings)
    asyncio.run(
        adapter.create_tenant_realm(
            realm, load_realm_template(settings.fixtures_dir), scopes=["mcp:tool:invoices.read"], resource_servers={}
        )
    )
    try:
        foreign = agents.create(["mcp:tool:invoices.read"], realm=realm).token()
        response = post(url, INITIALIZE, token=foreign)
        assert response.status_code == 401 and "not trusted" in challenge(response)["error_description"]
        assert post(url, INITIALIZE, token=agents.create(["mcp:tool:invoices.read"]).token()).status_code == 200
    finally:
        agents.created = [a for a in agents.created if a.realm != realm]
        asyncio.run(KeycloakAdapter.from_settings(settings).delete_realm(realm))


def test_401_issuer_well_formed_token_from_an_issuer_this_server_does_not_trust(
    sandbox_stack: SandboxStack, tmp_path: Path
) -> None:
    settings = sandbox_stack.settings
    with (
        fake_issuer() as trusted,
        fake_issuer() as stranger,
        mcp_server(settings, tmp_path, mode="jwt", issuers=[trusted.issuer]) as server,
    ):
        assert post(server.url, INITIALIZE, token=stranger.token(server.url)).status_code == 401
        assert post(server.url, INITIALIZE, token=trusted.token(server.url)).status_code == 200  # control


# 401-signature ----------------------------------------------------------------------------------------------


def test_401_signature_tampered_unknown_key_alg_none_and_hmac_with_the_public_key(
    sandbox_stack: SandboxStack, agents: Agents
) -> None:
    settings = sandbox_stack.settings
    url = settings.mcp_url
    token = agents.create(["mcp:tool:invoices.read"]).token()
    parts = forge.unverified(token)
    assert parts is not None
    header, claims = parts
    signature = token.rsplit(".", 1)[1]
    escalated = {**claims, "scope": " ".join(ALL_SCOPES)}
    jwks = httpx.get(f"{settings.issuer('acme')}/protocol/openid-connect/certs").json()
    public = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    stranger = forge.Signer()  # a key acme does not publish, with acme's issuer and this audience
    current = forge.fresh_times(claims)
    forged = {
        "tampered payload": forge.tampered(token, escalated),
        "flipped signature": forge.flipped_signature(token),
        "unknown kid": stranger.sign(current, kid="not-acme"),
        "acme's kid, another key": stranger.sign(current, kid=header["kid"]),
        "alg none": forge.unsigned(claims),
        "alg none, signature kept": forge.unsigned(claims, signature=signature),
        **{
            f"HS256 with {form}": forge.hmac_signed(claims, secret, kid=header["kid"])
            for form, secret in forge.public_key_secrets(public).items()
        },
    }
    for name, value in forged.items():
        assert post(url, INITIALIZE, token=value).status_code == 401, name
    assert post(url, INITIALIZE, token=token).status_code == 200  # control: the untouched token


# no-query-token ---------------------------------------------------------------------------------------------


def test_no_query_token_is_ignored(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    token = agents.create(["mcp:tool:invoices.read"]).token()
    assert post(url, INITIALIZE, params={"access_token": token}).status_code == 401
    assert post(url, INITIALIZE, params={"access_token": token}, token="garbage").status_code == 401
    form = post(url, f"access_token={token}".encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code in (400, 401, 415)
    assert post(url, INITIALIZE, token=token).status_code == 200  # control: the same token in the header


# 403-scope, tool-scope -------------------------------------------------------------------------------------


def test_403_scope_names_the_scope_the_tool_needs(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    token = agents.create(["mcp:tool:invoices.read"]).token()
    session = open_session(url, token)
    refused = call_tool(url, token, session, "invoices.create", {"customer": "x", "amount_cents": 100})
    assert refused.status_code == 403
    params = challenge(refused)
    assert params["error"] == "insufficient_scope" and params["scope"] == "mcp:tool:invoices.write"
    assert params["resource_metadata"] == metadata_url(sandbox_stack)
    assert tool_result(call_tool(url, token, session, "invoices.list"))["invoices"]  # control


def test_tool_scope_each_tool_needs_its_own_scope_and_tools_list_shows_only_those(
    sandbox_stack: SandboxStack, agents: Agents
) -> None:
    url = sandbox_stack.settings.mcp_url
    narrow = agents.create(["mcp:tool:invoices.read", "mcp:tool:deploy.staging.write"]).token()
    session = open_session(url, narrow)
    assert listed_tools(url, narrow, session) == {"invoices.list", "deploy.trigger"}
    service = tool_result(call_tool(url, narrow, session, "invoices.list"))  # just to prove the session works
    assert service["tenant"] == "acme"
    full = agents.create(ALL_SCOPES).token()  # control: an agent with every scope may call every tool
    full_session = open_session(url, full)
    assert listed_tools(url, full, full_session) == set(ToolMap.load(sandbox_stack.settings.tools_file).tools)
    deployments = tool_result(call_tool(url, full, full_session, "deploy.status"))["deployments"]
    service_name = deployments[0]["service"]
    trigger = {"service": service_name, "version": "9.9.9"}
    assert tool_result(call_tool(url, narrow, session, "deploy.trigger", {**trigger, "environment": "staging"}))
    expected = {
        ("deploy.trigger", "production"): "mcp:tool:deploy.production.write",
        ("invoices.create", None): "mcp:tool:invoices.write",
        ("analytics.query", None): "mcp:tool:analytics.read",
        ("logs.read", None): "mcp:tool:logs.read",
        ("deploy.status", None): "mcp:tool:deploy.read",
    }
    arguments = {
        "deploy.trigger": {**trigger, "environment": "production"},
        "invoices.create": {"customer": "x", "amount_cents": 100},
        "analytics.query": {"query": "daily_active_users"},
        "logs.read": {"service": service_name},
        "deploy.status": {},
    }
    for (tool, _), scope in expected.items():
        refused = call_tool(url, narrow, session, tool, arguments[tool])
        assert refused.status_code == 403 and challenge(refused)["scope"] == scope, tool
        assert tool_result(call_tool(url, full, full_session, tool, arguments[tool]))["tenant"] == "acme"  # control
    unknown_environment = call_tool(url, full, full_session, "deploy.trigger", {**trigger, "environment": "dev"})
    assert unknown_environment.status_code == 400


# session-binding ---------------------------------------------------------------------------------------------


def test_session_binding_a_session_is_only_usable_by_the_principal_that_created_it(
    sandbox_stack: SandboxStack, agents: Agents
) -> None:
    url = sandbox_stack.settings.mcp_url
    owner = agents.create(["mcp:tool:invoices.read"])
    token = owner.token()
    session = open_session(url, token)
    intruders = [
        agents.create(["mcp:tool:invoices.read"]).token(),
        agents.create(["mcp:tool:invoices.read"], realm="globex").token(),
    ]
    for intruder in intruders:
        response = call_tool(url, intruder, session, "invoices.list")
        assert response.status_code == 404, response.text
    assert tool_result(call_tool(url, token, session, "invoices.list"))  # control: the owner
    assert tool_result(call_tool(url, owner.token(), session, "invoices.list"))  # and the owner's next token


# no-passthrough ---------------------------------------------------------------------------------------------


def test_no_passthrough_the_callers_token_never_goes_upstream(
    sandbox_stack: SandboxStack, agents: Agents, tmp_path: Path
) -> None:
    settings = sandbox_stack.settings
    acme = settings.issuer("acme")
    with fake_broker(issuers={acme: "acme"}) as broker:
        env = {"SANDBOX_MCP_USAGE_FLUSH_INTERVAL": "0.2"}
        with mcp_server(settings, tmp_path, mode="jwt", issuers=[], broker_url=broker.base, env=env) as server:
            agent = agents.create(["mcp:tool:invoices.read", "mcp:tool:logs.read"], audiences=[server.url])
            token = agent.token()
            session = open_session(server.url, token)
            result = call_tool(server.url, token, session, "invoices.list")
            assert token not in result.text and tool_result(result)["tenant"] == "acme"
            assert call_tool(server.url, token, session, "invoices.create", {"customer": "x", "amount_cents": 1})
            # control: upstream traffic happened and carried the calls (usage reports to the broker)
            eventually(lambda: len(broker.usage_events()) >= 2, budget=10)
            events = broker.usage_events()
            assert {(e["client_id"], e["tool"], e["allowed"]) for e in events} >= {
                (agent.client_id, "invoices.list", True),
                (agent.client_id, "invoices.create", False),
            }
            signature = token.split(".")[2]
            for request in broker.requests:
                seen = json.dumps(request.headers) + request.body.decode(errors="replace")
                assert token not in seen and signature not in seen, request.path
            assert any(r.path == "/trust/issuers" for r in broker.requests)
        log = server.log_text()
        assert token not in log and signature not in log
        assert agent.client_id in log  # control: the log does record the calls


# revocation --------------------------------------------------------------------------------------------------


def test_revocation_jwt_events_mode_the_next_call_is_refused(
    sandbox_stack: SandboxStack, agents: Agents, tmp_path: Path
) -> None:
    """Budget: one network round trip. The call right after the event's 202 is refused; no waiting."""
    settings = sandbox_stack.settings
    with fake_broker() as broker:
        acme = settings.issuer("acme")
        with mcp_server(settings, tmp_path, mode="jwt+events", issuers=[acme], broker_url=broker.base) as server:
            revoked = agents.create(["mcp:tool:invoices.read"], audiences=[server.url])
            bystander = agents.create(["mcp:tool:invoices.read"], audiences=[server.url])
            token, other = revoked.token(), bystander.token()
            session, other_session = open_session(server.url, token), open_session(server.url, other)
            assert tool_result(call_tool(server.url, token, session, "invoices.list"))

            impostor = FakeBroker(base=broker.base)  # signs like the broker, with a key the broker does not publish
            forged = impostor.revocation(server.url, revoked)
            assert push_event(server, forged).status_code == 400  # a SET the broker did not sign changes nothing
            assert tool_result(call_tool(server.url, token, session, "invoices.list"))

            assert push_event(server, broker.revocation(server.url, revoked)).status_code == 202
            refused = call_tool(server.url, token, session, "invoices.list")
            assert refused.status_code == 401 and "revoked" in challenge(refused)["error_description"]
            assert post(server.url, INITIALIZE, token=token).status_code == 401
            assert tool_result(call_tool(server.url, other, other_session, "invoices.list"))  # control: others


@pytest.mark.capability("keycloak", "introspection")
@pytest.mark.capability("keycloak", "token_revocation")
def test_revocation_introspect_mode_refused_within_the_cache_ttl(
    sandbox_stack: SandboxStack, agents: Agents, tmp_path: Path
) -> None:
    """Budget: the introspection cache TTL (2 s here) + 5 s of slack, after the agent is deleted in Keycloak."""
    settings = sandbox_stack.settings
    secret = secrets.token_urlsafe(24)
    env = {"SANDBOX_MCP_INTROSPECTION_SECRET": secret, "SANDBOX_MCP_INTROSPECTION_CACHE_TTL": "2"}
    with mcp_server(settings, tmp_path, mode="introspect", issuers=[settings.issuer("acme")], env=env) as server:
        adapter = KeycloakAdapter.from_settings(settings)
        client = asyncio.run(adapter.create_resource_server_client("acme", server.url, secret))
        try:
            agent = agents.create(["mcp:tool:invoices.read"], audiences=[server.url])
            token = agent.token()
            session = open_session(server.url, token)
            assert tool_result(call_tool(server.url, token, session, "invoices.list"))  # control: active
            agents.delete(agent)
            eventually(lambda: call_tool(server.url, token, session, "invoices.list").status_code == 401, budget=2 + 5)
        finally:
            asyncio.run(KeycloakAdapter.from_settings(settings).delete_client("acme", client))


def test_revocation_jwt_mode_refused_once_the_token_expires(
    sandbox_stack: SandboxStack, agents: Agents, tmp_path: Path
) -> None:
    """Budget: the token's remaining lifetime (8 s) + the leeway (5 s) + 5 s of slack, after the agent is deleted."""
    settings = sandbox_stack.settings
    with mcp_server(settings, tmp_path, mode="jwt", issuers=[settings.issuer("acme")]) as server:
        agent = agents.create(["mcp:tool:invoices.read"], audiences=[server.url], lifetime=8)
        token = agent.token()
        session = open_session(server.url, token)
        assert tool_result(call_tool(server.url, token, session, "invoices.list"))  # control: valid
        agents.delete(agent)
        eventually(
            lambda: call_tool(server.url, token, session, "invoices.list").status_code == 401,
            budget=8 + settings.mcp_leeway + 5,
        )


# tenant -----------------------------------------------------------------------------------------------------


def test_tenant_each_token_sees_only_its_own_tenants_data(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    scopes = ["mcp:tool:invoices.read", "mcp:tool:invoices.write", "mcp:tool:deploy.read"]
    views = {}
    for tenant in ("acme", "globex"):
        token = agents.create(scopes, realm=tenant).token()
        session = open_session(url, token)
        views[tenant] = (token, session, tool_result(call_tool(url, token, session, "invoices.list", {"limit": 100})))
    acme, globex = views["acme"][2], views["globex"][2]
    assert acme["tenant"] == "acme" and globex["tenant"] == "globex" and acme["company"] != globex["company"]
    assert all(i["tenant"] == "acme" for i in acme["invoices"])
    assert all(i["tenant"] == "globex" for i in globex["invoices"])
    assert not {i["id"] for i in acme["invoices"]} & {i["id"] for i in globex["invoices"]}
    token, session, _ = views["acme"]
    created = tool_result(
        call_tool(url, token, session, "invoices.create", {"customer": "Tenant Probe", "amount_cents": 4242})
    )["invoice"]
    token_g, session_g, _ = views["globex"]
    seen_by_globex = tool_result(call_tool(url, token_g, session_g, "invoices.list", {"limit": 100}))
    assert created["id"] not in {i["id"] for i in seen_by_globex["invoices"]}
    asking_for_acme = call_tool(url, token_g, session_g, "invoices.list", {"limit": 100, "tenant": "acme"})
    if asking_for_acme.status_code == 200 and not asking_for_acme.json()["result"].get("isError"):
        assert asking_for_acme.json()["result"]["structuredContent"]["tenant"] == "globex"
    seen_by_acme = tool_result(call_tool(url, token, session, "invoices.list", {"limit": 100}))
    assert created["id"] in {i["id"] for i in seen_by_acme["invoices"]}  # control: the owner sees it


# positive ---------------------------------------------------------------------------------------------------


def test_positive_a_valid_token_with_the_right_scope_is_served(sandbox_stack: SandboxStack, agents: Agents) -> None:
    url = sandbox_stack.settings.mcp_url
    token = agents.create(["mcp:tool:analytics.read"], realm="globex").token()
    session = open_session(url, token)
    rows = tool_result(call_tool(url, token, session, "analytics.query", {"query": "daily_active_users", "days": 3}))
    assert rows["tenant"] == "globex" and len(rows["rows"]) == 3
