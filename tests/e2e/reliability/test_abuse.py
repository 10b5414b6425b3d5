"""One agent or one person trying again and again: wrong client secrets at Keycloak's token endpoint, wrong
passwords at the admin login, and tool calls the agent may not make at the MCP server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from broker.conftest import Broker, Tenant
from broker.test_lifecycle import secret_credential, token_for
from reference_mcp import call_tool, open_session

from sandbox.admin.login import LoginFailed, admin_login
from sandbox.idp.keycloak import KeycloakAdapter

from .conftest import wait_for

WRONG_SECRETS = 30
WRONG_PASSWORDS = 10  # the tenant template's failureFactor


@pytest.mark.reliability(
    "Abuse",
    f"{WRONG_SECRETS} token requests with a wrong client secret for one agent",
    "each 401 `unauthorized_client`; all counted in the agent's monitoring. Not rate limited: Keycloak's brute-force "
    "detection covers user logins only (a secret is 256 random bits); the right secret still works",
)
def test_failed_token_requests_are_refused_and_visible(broker: Broker, tenant: Tenant, reliability: Any) -> None:
    alice = tenant.admins["alice"].token()
    agent = broker.provision(tenant, alice, role="log-reader")
    for attempt in range(WRONG_SECRETS):
        answer = httpx.post(
            tenant.token_url(),
            data={"grant_type": "client_credentials"},
            auth=(agent["credential"]["client_id"], f"wrong-secret-{attempt}"),
            timeout=30,
        )
        assert answer.status_code == 401 and answer.json()["error"] == "unauthorized_client", answer.text
        reliability.add()
    token_for(tenant, secret_credential(agent))  # Keycloak locks no client out: the right secret works
    monitoring = f"/tenants/{tenant.name}/agents/{agent['agent']['id']}/monitoring"
    seen = wait_for(
        lambda: (m := broker.call("GET", monitoring, alice).json())["failed_token_requests"] >= WRONG_SECRETS and m,
        budget=30,
        what="the failed token requests in the agent's monitoring",
    )
    assert seen["failed_token_requests"] == WRONG_SECRETS and seen["tokens_issued"] >= 1
    assert seen["recent_failed_token_requests"][0]["error"]  # Keycloak's reason, for whoever looks


@pytest.mark.reliability(
    "Abuse",
    f"{WRONG_PASSWORDS} wrong passwords for one admin at the real login form",
    "the admin is locked out (the right password is refused next) and Keycloak's brute-force detection "
    "shows it (disabled; quick successive failures lock at once)",
)
def test_repeated_wrong_passwords_lock_an_admin_out(broker: Broker, tenant: Tenant, reliability: Any) -> None:
    carol = tenant.admins["carol"]  # password only: the lock-out is about the password
    for attempt in range(WRONG_PASSWORDS):
        with pytest.raises(LoginFailed):
            asyncio.run(admin_login(tenant.issuer, carol.username, f"wrong-{attempt}"))
        reliability.add()
    with pytest.raises(LoginFailed):
        asyncio.run(admin_login(tenant.issuer, carol.username, carol.password))

    async def status() -> dict[str, Any]:
        admin = KeycloakAdapter.from_settings(broker.settings).admin(tenant.name)
        user_id = await admin.a_get_user_id(carol.username)
        response = await admin.connection.a_raw_get(
            f"admin/realms/{tenant.name}/attack-detection/brute-force/users/{user_id}"
        )
        return response.json()  # type: ignore[no-any-return]

    detected = asyncio.run(status())
    # Quick successive failures lock the user at once (Keycloak's quick-login check), before the tenth.
    assert detected["disabled"] is True and detected["numFailures"] >= 1, detected


@pytest.mark.reliability(
    "Abuse",
    "One agent calling a tool it may not use, again and again (limit 20 in 60 s)",
    "403 until the limit, then 429 with Retry-After for all its tool calls; other agents unaffected; "
    "every refusal in the agent's monitoring",
)
def test_repeated_denied_calls_are_rate_limited_and_visible(broker: Broker, tenant: Tenant, reliability: Any) -> None:
    settings = broker.settings
    alice = tenant.admins["alice"].token()
    pushy = broker.provision(tenant, alice, role="read-only-analytics")
    calm = broker.provision(tenant, alice, role="read-only-analytics")
    url = settings.mcp_url
    limit = settings.mcp_denied_call_limit
    pushy_token = token_for(tenant, secret_credential(pushy)).access_token
    session = open_session(url, pushy_token)
    for _ in range(limit):
        assert call_tool(url, pushy_token, session, "invoices.list").status_code == 403
        reliability.add()
    limited = call_tool(url, pushy_token, session, "invoices.list")
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= settings.mcp_denied_call_window
    reliability.add()
    allowed_but_limited = call_tool(url, pushy_token, session, "analytics.query", {"query": "daily-active-agents"})
    assert allowed_but_limited.status_code == 429
    reliability.add()
    calm_token = token_for(tenant, secret_credential(calm)).access_token
    calm_session = open_session(url, calm_token)
    served = call_tool(url, calm_token, calm_session, "analytics.query", {"query": "daily-active-agents"})
    assert served.status_code == 200, served.text

    monitoring = f"/tenants/{tenant.name}/agents/{pushy['agent']['id']}/monitoring"
    seen = wait_for(
        lambda: (m := broker.call("GET", monitoring, alice).json())["denied_tool_calls"] >= limit + 2 and m,
        budget=30,
        what="the refused and throttled calls in the agent's monitoring",
    )
    statuses = {call["status"] for call in seen["recent_denied_tool_calls"]}
    assert statuses == {403, 429}, seen["recent_denied_tool_calls"]
