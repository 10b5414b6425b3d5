"""Delegated access against the real stack: a user logs in through Keycloak's real form and consents to an agent,
the agent exchanges the user's token (Keycloak standard token exchange), the MCP server serves it with at most the
user's permissions, and the broker's audit names the user who authorized it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from sandbox.admin.login import LoginFailed, user_login
from sandbox.agent.mcp_http import call_tool, open_session, served
from sandbox.agent.tokens import TokenRefused, exchange_token

from .conftest import Broker, Tenant
from .test_lifecycle import secret_credential, token_for

READ, WRITE, LOGS = "mcp:tool:invoices.read", "mcp:tool:invoices.write", "mcp:tool:logs.read"


def add_user(broker: Broker, tenant: Tenant, admin: str, scopes: list[str]) -> dict[str, Any]:
    response = broker.call(
        "POST", f"/tenants/{tenant.name}/users", admin, {"username": f"user-{uuid.uuid4().hex[:6]}", "scopes": scopes}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def login(tenant: Tenant, user: dict[str, Any], agents: list[str]) -> str:
    return asyncio.run(user_login(tenant.issuer, user["username"], user["password"], delegate_to=agents)).access_token


def exchanged(tenant: Tenant, provisioned: dict[str, Any], user_token: str, scope: str | None = None) -> Any:
    return asyncio.run(exchange_token(tenant.token_url(), secret_credential(provisioned), user_token, scope=scope))


@pytest.mark.capability("keycloak", "token_exchange")
def test_an_agent_acting_for_a_user_gets_at_most_the_users_permissions(broker: Broker, tenant: Tenant) -> None:
    admin = tenant.admins["alice"].token()
    helper = broker.provision(tenant, admin, role="invoice-writer", mode="delegated")
    client_id = helper["agent"]["client_id"]
    assert helper["agent"]["delegation_scope"] == f"delegate:{client_id}"
    assert token_for(tenant, secret_credential(helper)).scopes == {READ, WRITE}  # its own token: its role's scopes

    dana = add_user(broker, tenant, admin, [READ, LOGS])
    assert dana["login_client"] == "sandbox-user-login" and dana["scopes"] == [READ, LOGS]
    user_token = login(tenant, dana, [client_id])
    with pytest.raises(TokenRefused, match="invalid_scope"):
        exchanged(tenant, helper, user_token, f"{READ} {LOGS}")  # the user has LOGS, the agent does not
    acting = exchanged(tenant, helper, user_token, f"{READ} {WRITE}")
    claims = acting.claims()
    assert acting.scopes == {READ}  # the agent has WRITE, the user does not
    assert claims["azp"] == client_id and claims["sub"] != helper["agent"]["id"]
    user_sub = claims["sub"]
    assert broker.settings.mcp_url in claims["aud"]

    url = broker.settings.mcp_url
    session = open_session(url, acting.access_token)
    assert served(call_tool(url, acting.access_token, session, "invoices.list"))
    assert (
        call_tool(url, acting.access_token, session, "invoices.create", {"customer": "x", "amount": 1}).status_code
        == 403
    )

    delegations = broker.call("GET", f"/tenants/{tenant.name}/agents/{helper['agent']['id']}/delegations", admin).json()
    assert [(d["user"], d["user_id"], d["scopes"]) for d in delegations["delegations"]] == [
        (dana["username"], user_sub, [READ])
    ]
    assert delegations["delegations"][0]["consented_at"] is not None
    entries = broker.call("GET", f"/tenants/{tenant.name}/audit", admin, agent_id=helper["agent"]["id"]).json()
    granted = [e for e in entries if e["action"] == "agent.delegation_granted"]
    assert len(granted) == 1
    assert granted[0]["actor"] == f"{dana['username']} (user, {tenant.name}, sub {user_sub})"
    assert granted[0]["after"]["scopes"] == [READ] and granted[0]["after"]["client_id"] == client_id
    exchanged(tenant, helper, user_token, READ)  # the same delegation again: no second audit entry
    entries = broker.call("GET", f"/tenants/{tenant.name}/audit", admin, agent_id=helper["agent"]["id"]).json()
    assert [e["action"] for e in entries].count("agent.delegation_granted") == 1
    report = broker.call("GET", f"/tenants/{tenant.name}/agents/{helper['agent']['id']}/monitoring", admin).json()
    assert report["token_exchanges"] >= 2 and report["delegations"][0]["exchanges"] >= 2
    assert report["recent_token_exchanges"][0]["user"] == dana["username"]

    revoked = broker.call("POST", f"/revoke/{helper['agent']['id']}", admin, {"reason": "done"})
    assert revoked.status_code == 200
    with pytest.raises(TokenRefused):
        exchanged(tenant, helper, user_token)
    with pytest.raises(LoginFailed, match="invalid_scope"):  # its delegation scope is gone with it
        login(tenant, dana, [client_id])


def test_delegation_needs_the_users_consent_to_that_agent_and_a_delegated_agent(broker: Broker, tenant: Tenant) -> None:
    admin = tenant.admins["alice"].token()
    helper = broker.provision(tenant, admin, role="invoice-writer", mode="delegated")
    other = broker.provision(tenant, admin, role="invoice-writer", mode="delegated")
    autonomous = broker.provision(tenant, admin, role="invoice-writer")
    assert autonomous["agent"]["delegation_scope"] is None
    erin = add_user(broker, tenant, admin, [READ, WRITE])

    with pytest.raises(LoginFailed, match="consent"):
        asyncio.run(
            user_login(
                tenant.issuer,
                erin["username"],
                erin["password"],
                delegate_to=[helper["agent"]["client_id"]],
                consent=False,
            )
        )
    for_other = login(tenant, erin, [other["agent"]["client_id"]])
    refused = pytest.raises(TokenRefused, match="audience")
    with refused:
        exchanged(tenant, helper, for_other)  # erin let `other` act for her, not `helper`
    assert exchanged(tenant, other, for_other).scopes == {READ, WRITE}
    report = broker.call("GET", f"/tenants/{tenant.name}/agents/{helper['agent']['id']}/monitoring", admin).json()
    assert report["failed_token_exchanges"] >= 1 and report["token_exchanges"] == 0 and report["delegations"] == []

    for_autonomous = login(tenant, erin, [helper["agent"]["client_id"]])
    with pytest.raises(TokenRefused):  # no standard token exchange for an autonomous agent, whatever the audience
        exchanged(tenant, autonomous, for_autonomous)


def test_users_are_added_by_the_tenants_admins_with_known_scopes(broker: Broker, tenant: Tenant) -> None:
    admin = tenant.admins["carol"].token()  # no OTP needed to add a user
    path = f"/tenants/{tenant.name}/users"
    unknown = broker.call("POST", path, admin, {"username": "frank", "scopes": ["mcp:tool:nothing.read"]})
    assert unknown.status_code == 400 and "unknown scope" in unknown.json()["detail"]
    user = add_user(broker, tenant, admin, [READ])
    again = broker.call("POST", path, admin, {"username": user["username"], "scopes": [READ]})
    assert again.status_code == 409
    stranger = broker.new_tenant("deleg")
    foreign = broker.call("POST", path, stranger.admins["carol"].token(), {"username": "gina", "scopes": [READ]})
    assert foreign.status_code == 404
    actions = [e["action"] for e in broker.call("GET", f"/tenants/{tenant.name}/audit", admin).json()]
    assert "tenant.user_added" in actions
