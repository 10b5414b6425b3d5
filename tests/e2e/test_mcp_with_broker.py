"""The stack's MCP server and the stack's broker meet only through the contracts in docs/architecture.md: the
broker's agent calls the server, the server reports usage to the broker, the broker revokes the agent and its
signed event makes the server refuse the agent's next call at once (jwt+events, the stack's mode)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from reference_mcp import call_tool, challenge, eventually, open_session, tool_result

from sandbox.admin.client import BrokerClient
from sandbox.admin.login import admin_login
from sandbox.pytest_plugin import SandboxStack
from sandbox.stack_secrets import SANDBOX_ADMIN, Secrets, admin_secret_names, otp_base32


def tenant_admin_token(stack: SandboxStack, tenant: str) -> str:
    secrets = Secrets(stack.settings)
    password, otp = (secrets.get(name) for name in admin_secret_names(tenant))
    assert password and otp, "the stack's broker creates one admin per tenant"
    tokens = asyncio.run(admin_login(stack.issuer(tenant), SANDBOX_ADMIN, password, otp_base32(otp)))
    return tokens.access_token


def agent_token(provisioned: dict[str, Any]) -> str:
    credential = provisioned["credential"]
    response = httpx.post(
        credential["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=(credential["client_id"], credential["client_secret"]),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_a_broker_agent_is_served_reported_and_refused_right_after_revocation(sandbox_stack: SandboxStack) -> None:
    """Budget for the refusal: one round trip (the broker pushes the event before it answers the revoke)."""
    url = sandbox_stack.settings.mcp_url
    with BrokerClient(sandbox_stack.settings.broker_url, tenant_admin_token(sandbox_stack, "acme")) as broker:
        provisioned = broker.post(
            "/tenants/acme/agents",
            {
                "name": f"mcp-e2e-{uuid.uuid4().hex[:8]}",
                "owner": "e2e@acme.example",
                "role": "invoice-writer",
                "environment": "staging",
            },
        )
        agent = provisioned["agent"]
        assert url in agent["audiences"]
        token = agent_token(provisioned)
        session = open_session(url, token)
        assert tool_result(call_tool(url, token, session, "invoices.list"))["tenant"] == "acme"
        denied = call_tool(url, token, session, "logs.read", {"service": "any"})
        assert denied.status_code == 403

        def reported() -> bool:
            report = broker.get(f"/tenants/acme/agents/{agent['id']}/monitoring")
            return bool(report["tool_calls"] >= 2)

        eventually(reported, budget=15)  # usage reports reach the broker off the request path

        revoked = broker.post(
            f"/tenants/acme/agents/{agent['id']}/revoke", {"reason": "e2e: revocation reaches the MCP server"}
        )
        deliveries = {event["server"]: event for event in revoked["events"]}
        assert deliveries[url]["delivered"] and deliveries[url]["status"] == 202
        refused = call_tool(url, token, session, "invoices.list")
        assert refused.status_code == 401
        assert "revoked" in challenge(refused)["error_description"]
