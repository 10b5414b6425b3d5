"""The agent lifecycle through the broker's HTTP API against the real stack: provision, role change,
rotation with grace, approval, revocation, tenant isolation, and each error path."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey
from openapi_spec_validator import validate

from sandbox.agent.tokens import ClientSecretCredential, PrivateKeyCredential, Token, TokenRefused, fetch_token
from sandbox.ssf import SESSION_REVOKED, AgentSubject
from sandbox.stack_secrets import RESOURCE_SERVER_SECRET, Secrets

from .conftest import Broker, Tenant
from .servers import ProbeResourceServer, serving


def token_for(tenant: Tenant, credential: Any) -> Token:
    return asyncio.run(fetch_token(tenant.token_url(), credential))


def secret_credential(provisioned: dict[str, Any], secret: str | None = None) -> ClientSecretCredential:
    credential = provisioned["credential"]
    return ClientSecretCredential(credential["client_id"], secret or credential["client_secret"])


def refused(tenant: Tenant, credential: Any) -> TokenRefused:
    with pytest.raises(TokenRefused) as caught:
        token_for(tenant, credential)
    return caught.value


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, {"kid": kid, "alg": "RS256", "use": "sig"}, private=True)


def public(key: RSAKey) -> dict[str, Any]:
    return {**key.as_dict(private=False), "kid": key.kid, "alg": "RS256"}


def test_openapi_document_is_served_and_valid(broker: Broker) -> None:
    document = broker.call("GET", "/openapi.json").json()
    validate(document)
    assert "/tenants/{tenant}/agents" in document["paths"]
    assert "/revoke/{agent_id}" in document["paths"]


def test_public_trust_and_signing_keys(broker: Broker, tenant: Tenant) -> None:
    issuers = broker.call("GET", "/trust/issuers").json()["issuers"]
    assert tenant.issuer in issuers
    assert broker.settings.issuer("master") not in issuers
    keys = broker.call("GET", "/.well-known/jwks.json").json()["keys"]
    assert keys and all("d" not in key for key in keys)


def test_provision_gives_a_least_privilege_identity_and_shows_the_secret_once(broker: Broker, tenant: Tenant) -> None:
    carol = tenant.admins["carol"].token()
    provisioned = broker.provision(tenant, carol, role="read-only-analytics", metadata={"ticket": "OPS-1"})
    agent = provisioned["agent"]
    assert provisioned["status"] == agent["status"] == "active"
    assert agent["scopes"] == ["mcp:tool:analytics.read"]
    token = token_for(tenant, secret_credential(provisioned))
    assert token.scopes == {"mcp:tool:analytics.read"}
    assert broker.settings.mcp_url in token.claims()["aud"]
    assert token.claims()["azp"] == agent["client_id"]
    shown_again = broker.call("GET", f"/tenants/{tenant.name}/agents/{agent['id']}", carol).text
    assert provisioned["credential"]["client_secret"] not in shown_again


def test_provision_with_a_private_key(broker: Broker, tenant: Tenant) -> None:
    key = rsa_key("agent-key-1")
    provisioned = broker.provision(
        tenant, tenant.admins["alice"].token(), role="log-reader", credential_type="private_key_jwt", jwk=public(key)
    )
    assert provisioned["credential"]["client_secret"] is None
    token = token_for(tenant, PrivateKeyCredential(provisioned["credential"]["client_id"], key.as_dict(private=True)))
    assert token.scopes == {"mcp:tool:logs.read"}


def test_error_paths_are_refused_before_anything_changes(broker: Broker, tenant: Tenant) -> None:
    carol, alice = tenant.admins["carol"].token(), tenant.admins["alice"].token()
    path = f"/tenants/{tenant.name}/agents"
    unknown_role = broker.call(
        "POST", path, carol, {"name": "x1", "owner": "o", "role": "root", "environment": "staging"}
    )
    assert unknown_role.status_code == 422 and "unknown role 'root'" in unknown_role.json()["detail"]
    private = ECKey.generate_key("P-256", private=True).as_dict(private=True)
    for bad in ({"kty": "RSA", "n": "not-base64!", "e": "AQAB"}, private, {"kty": "oct", "k": "c2VjcmV0"}, "junk"):
        response = broker.call(
            "POST",
            path,
            alice,
            {
                "name": "x2",
                "owner": "o",
                "role": "log-reader",
                "environment": "staging",
                "credential_type": "private_key_jwt",
                "jwk": bad,
            },
        )
        assert response.status_code in (400, 422), response.text
    no_mfa = broker.call(
        "POST", path, carol, {"name": "x3", "owner": "o", "role": "log-reader", "environment": "production"}
    )
    assert no_mfa.status_code == 401
    assert no_mfa.json()["error"] == "insufficient_user_authentication"
    assert 'error="insufficient_user_authentication"' in no_mfa.headers["www-authenticate"]
    assert broker.call("GET", path).status_code == 401
    assert broker.call("GET", path, "not-a-token").status_code == 401
    names = {agent["name"] for agent in broker.call("GET", path, carol).json()}
    assert not names & {"x1", "x2", "x3"}


def test_an_agent_token_is_not_an_admin_token(broker: Broker, tenant: Tenant) -> None:
    provisioned = broker.provision(tenant, tenant.admins["carol"].token(), role="log-reader")
    agent_token = token_for(tenant, secret_credential(provisioned)).access_token
    assert broker.call("GET", f"/tenants/{tenant.name}/agents", agent_token).status_code == 401


def test_another_tenants_resources_are_404(broker: Broker, tenant: Tenant) -> None:
    provisioned = broker.provision(tenant, tenant.admins["carol"].token(), role="log-reader")
    agent_id = provisioned["agent"]["id"]
    outsider = broker.sandbox_admin(broker.stack.tenants[0]).token()
    assert broker.call("GET", f"/tenants/{tenant.name}/agents", outsider).status_code == 404
    assert broker.call("GET", f"/tenants/{tenant.name}/agents/{agent_id}", outsider).status_code == 404
    assert broker.call("POST", f"/revoke/{agent_id}", outsider, {"reason": "hostile"}).status_code == 404
    own_tenant = broker.stack.tenants[0]
    assert broker.call("GET", f"/tenants/{own_tenant}/agents/{agent_id}", outsider).status_code == 404
    still = broker.call("GET", f"/tenants/{tenant.name}/agents/{agent_id}", tenant.admins["carol"].token())
    assert still.json()["status"] == "active"


def test_role_change_shows_in_the_next_token(broker: Broker, tenant: Tenant) -> None:
    carol = tenant.admins["carol"].token()
    provisioned = broker.provision(tenant, carol, role="read-only-analytics")
    credential = secret_credential(provisioned)
    assert token_for(tenant, credential).scopes == {"mcp:tool:analytics.read"}
    agent_id = provisioned["agent"]["id"]
    changed = broker.call(
        "POST", f"/tenants/{tenant.name}/agents/{agent_id}/role", carol, {"role": "invoice-writer", "reason": "new job"}
    )
    assert changed.status_code == 200, changed.text
    assert token_for(tenant, credential).scopes == {"mcp:tool:invoices.read", "mcp:tool:invoices.write"}
    needs_approval = broker.call(
        "POST", f"/tenants/{tenant.name}/agents/{agent_id}/role", carol, {"role": "production-deployer"}
    )
    assert needs_approval.status_code in (401, 422)
    entries = broker.call("GET", f"/tenants/{tenant.name}/audit", carol, agent_id=agent_id).json()
    change = next(e for e in entries if e["action"] == "agent.role_changed")
    assert change["before"]["role"] == "read-only-analytics" and change["after"]["role"] == "invoice-writer"
    assert change["reason"] == "new job" and "carol" in change["actor"]


@pytest.mark.capability("keycloak", "disable_without_delete")
def test_high_privilege_agent_waits_for_a_second_admin(broker: Broker, tenant: Tenant) -> None:
    alice, bob = tenant.admins["alice"].token(), tenant.admins["bob"].token()
    provisioned = broker.provision(
        tenant, alice, role="production-deployer", environment="production", credential_type="client_secret"
    )
    agent_id = provisioned["agent"]["id"]
    assert provisioned["status"] == "pending_approval"
    refused(tenant, secret_credential(provisioned))
    approve = f"/tenants/{tenant.name}/agents/{agent_id}/approve"
    by_requester = broker.call("POST", approve, alice, {"reason": "me"})
    assert by_requester.status_code == 403 and "cannot approve" in by_requester.json()["detail"]
    without_mfa = broker.call("POST", approve, tenant.admins["carol"].token(), {})
    assert without_mfa.status_code == 401
    approved = broker.call("POST", approve, bob, {"reason": "change ticket CHG-7"})
    assert approved.status_code == 200 and approved.json()["status"] == "active"
    assert "bob" in approved.json()["approved_by"]
    token = token_for(tenant, secret_credential(provisioned))
    assert token.scopes == {"mcp:tool:deploy.read", "mcp:tool:deploy.production.write"}


@pytest.mark.capability("keycloak", "dual_secret_rotation")
def test_rotation_keeps_both_secrets_during_grace_and_reports_dependencies(broker: Broker, tenant: Tenant) -> None:
    carol = tenant.admins["carol"].token()
    provisioned = broker.provision(tenant, carol, role="log-reader")
    agent = provisioned["agent"]
    old = secret_credential(provisioned)
    config = broker.call(
        "POST", f"/tenants/{tenant.name}/agents/{agent['id']}/mcp-config", carol, {"path": "/srv/agent/mcp.json"}
    )
    assert config.status_code == 200
    report_usage(broker, tenant, agent["client_id"], "logs.read", allowed=True)
    rotated = broker.call(
        "POST", f"/tenants/{tenant.name}/agents/{agent['id']}/rotate", carol, {"grace_seconds": 600}
    ).json()
    assert rotated["agent"]["status"] == "rotating"
    assert rotated["dependencies"]["configs"][0]["path"] == "/srv/agent/mcp.json"
    assert [s["server"] for s in rotated["dependencies"]["servers_used"]] == [broker.settings.mcp_url]
    new = secret_credential(provisioned, rotated["credential"]["client_secret"])
    assert new.secret != old.secret
    assert token_for(tenant, old).scopes == token_for(tenant, new).scopes == {"mcp:tool:logs.read"}
    ended = broker.call("POST", f"/tenants/{tenant.name}/agents/{agent['id']}/rotation/end", carol, {})
    assert ended.json()["status"] == "active"
    assert refused(tenant, old).error in ("unauthorized_client", "invalid_client")
    token_for(tenant, new)


def test_rotation_grace_runs_out_by_itself(broker: Broker, tenant: Tenant) -> None:
    carol = tenant.admins["carol"].token()
    provisioned = broker.provision(tenant, carol, role="log-reader")
    agent_id = provisioned["agent"]["id"]
    rotate = broker.call("POST", f"/tenants/{tenant.name}/agents/{agent_id}/rotate", carol, {"grace_seconds": 2})
    old, new = (
        secret_credential(provisioned),
        secret_credential(provisioned, rotate.json()["credential"]["client_secret"]),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = broker.call("GET", f"/tenants/{tenant.name}/agents/{agent_id}", carol).json()["status"]
        if status == "active":
            break
        time.sleep(0.5)
    assert status == "active"
    refused(tenant, old)
    token_for(tenant, new)


@pytest.mark.capability("keycloak", "key_rotation")
def test_private_key_rotation_accepts_both_keys_during_grace(broker: Broker, tenant: Tenant) -> None:
    alice = tenant.admins["alice"].token()
    first, second = rsa_key("k1"), rsa_key("k2")
    provisioned = broker.provision(
        tenant, alice, role="log-reader", credential_type="private_key_jwt", jwk=public(first)
    )
    client_id, agent_id = provisioned["credential"]["client_id"], provisioned["agent"]["id"]
    rotate = broker.call(
        "POST", f"/tenants/{tenant.name}/agents/{agent_id}/rotate", alice, {"grace_seconds": 600, "jwk": public(second)}
    )
    assert rotate.status_code == 200, rotate.text
    old, new = (PrivateKeyCredential(client_id, k.as_dict(private=True)) for k in (first, second))
    token_for(tenant, old)
    token_for(tenant, new)
    broker.call("POST", f"/tenants/{tenant.name}/agents/{agent_id}/rotation/end", alice, {})
    refused(tenant, old)
    token_for(tenant, new)


def report_usage(
    broker: Broker, tenant: Tenant, client_id: str, tool: str, *, allowed: bool, at: float | None = None
) -> None:
    secret = Secrets(broker.settings).get("usage-ingest")
    response = httpx.post(
        f"{broker.url}/usage",
        json={
            "events": [
                {
                    "issuer": tenant.issuer,
                    "client_id": client_id,
                    "tool": tool,
                    "allowed": allowed,
                    "status": 200 if allowed else 403,
                    "at": at or time.time(),
                }
            ]
        },
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 202, response.text


def test_usage_reports_need_the_ingest_secret(broker: Broker) -> None:
    response = httpx.post(f"{broker.url}/usage", json={"events": []}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


def introspect(broker: Broker, tenant: Tenant, token: str) -> dict[str, Any]:
    response = httpx.post(
        f"{tenant.issuer}/protocol/openid-connect/token/introspect",
        data={
            "token": token,
            "client_id": broker.settings.mcp_url,
            "client_secret": Secrets(broker.settings).get(RESOURCE_SERVER_SECRET),
        },
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def test_revocation_kills_credentials_and_tokens_everywhere(broker: Broker, tenant: Tenant) -> None:
    probe = ProbeResourceServer(f"{broker.url}/.well-known/jwks.json")
    with serving(probe.app()) as base:
        probe.url = f"{base}/mcp"
        operator = broker.operator_token()
        registered = broker.call(
            "POST", "/resource-servers", operator, {"url": probe.url, "events_url": f"{base}/events"}
        )
        assert registered.status_code == 201, registered.text
        carol, alice = tenant.admins["carol"].token(), tenant.admins["alice"].token()
        provisioned = broker.provision(tenant, carol, role="log-reader", servers=[broker.settings.mcp_url, probe.url])
        agent_id = provisioned["agent"]["id"]
        credential = secret_credential(provisioned)
        old_token = token_for(tenant, credential).access_token
        assert introspect(broker, tenant, old_token)["active"] is True
        assert httpx.post(probe.url, headers={"Authorization": f"Bearer {old_token}"}).status_code == 200

        before = time.time()
        revoked = broker.call(
            "POST", f"/revoke/{agent_id}", alice, {"reason": "incident 42", "verify_token": old_token}
        )
        assert revoked.status_code == 200, revoked.text
        result = revoked.json()
        assert result["agent"]["status"] == "revoked" and result["already_revoked"] is False
        refused(tenant, credential)
        assert introspect(broker, tenant, old_token)["active"] is False
        delivered = {d["server"]: d for d in result["events"]}
        assert delivered[probe.url]["delivered"] is True and delivered[probe.url]["status"] == 202
        event = probe.events[-1]
        assert list(event["events"]) == [SESSION_REVOKED] and event["iss"] == broker.settings.transmitter_url
        subject = AgentSubject.from_sub_id(event["sub_id"])
        assert subject is not None and subject.subject  # the agent's service account
        assert (subject.issuer, subject.client_id) == (tenant.issuer, provisioned["credential"]["client_id"])
        verification = {v["server"]: v for v in result["verification"]}
        assert verification[probe.url] == {"server": probe.url, "status": 401, "rejected": True}
        if "mcp-server" in broker.stack.state.components:  # the reference MCP server, when the stack runs one
            assert verification[broker.settings.mcp_url]["rejected"] is True
            assert delivered[broker.settings.mcp_url]["delivered"] is True

        entries = broker.call("GET", f"/tenants/{tenant.name}/audit", alice, agent_id=agent_id).json()
        revocation = [e for e in entries if e["action"] == "agent.revoked"]
        assert len(revocation) == 1
        assert "alice" in revocation[0]["actor"] and revocation[0]["reason"] == "incident 42"
        assert datetime.fromisoformat(revocation[0]["at"]).timestamp() >= before - 5
        assert revocation[0]["before"]["status"] == "active" and revocation[0]["after"]["status"] == "revoked"

        broker.call("DELETE", "/resource-servers", operator, url=probe.url)
        again = broker.call("POST", f"/tenants/{tenant.name}/agents/{agent_id}/revoke", alice, {"reason": "twice"})
        assert again.status_code == 200 and again.json()["already_revoked"] is True
        entries_after = broker.call("GET", f"/tenants/{tenant.name}/audit", alice, agent_id=agent_id).json()
        assert len(entries_after) == len(entries)


@pytest.mark.capability("keycloak", "event_emission")
def test_monitoring_shows_failures_denials_and_unused_scopes(broker: Broker, tenant: Tenant) -> None:
    carol = tenant.admins["carol"].token()
    provisioned = broker.provision(tenant, carol, role="invoice-writer")
    agent = provisioned["agent"]
    refused(tenant, ClientSecretCredential(agent["client_id"], "wrong-secret"))
    token_for(tenant, secret_credential(provisioned))
    report_usage(broker, tenant, agent["client_id"], "invoices.list", allowed=True)
    report_usage(broker, tenant, agent["client_id"], "deploy.trigger", allowed=False)
    report = broker.call("GET", f"/tenants/{tenant.name}/agents/{agent['id']}/monitoring", carol).json()
    assert report["failed_token_requests"] >= 1 and report["tokens_issued"] >= 1
    assert report["denied_tool_calls"] == 1 and report["recent_denied_tool_calls"][0]["tool"] == "deploy.trigger"
    assert report["unused_scopes"] == ["mcp:tool:invoices.write"]
    everyone = broker.call("GET", f"/tenants/{tenant.name}/monitoring", carol).json()
    assert agent["id"] in {entry["agent_id"] for entry in everyone}


def test_mcp_config_names_the_credential_and_never_contains_it(broker: Broker, tenant: Tenant) -> None:
    carol = tenant.admins["carol"].token()
    provisioned = broker.provision(tenant, carol, role="staging-deployer")
    agent = provisioned["agent"]
    response = broker.call(
        "POST",
        f"/tenants/{tenant.name}/agents/{agent['id']}/mcp-config",
        carol,
        {"credential_source": "env", "credential_reference": "DEPLOYER_SECRET"},
    )
    config = response.json()
    assert provisioned["credential"]["client_secret"] not in response.text
    servers = {entry["url"]: entry for entry in config["mcpServers"].values()}
    # every server the broker knows; other tests register and remove their own servers meanwhile
    assert {server.url for server in broker.settings.mcp_servers} <= set(servers)
    server = servers[broker.settings.mcp_url]
    assert server["allowedTools"] == ["deploy.status", "deploy.trigger"]
    assert server["auth"]["credential"] == {"type": "client_secret", "env": "DEPLOYER_SECRET"}
    assert server["auth"]["tokenEndpoint"] == tenant.token_url()
