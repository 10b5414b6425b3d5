"""Revocation over the Shared Signals Framework, end to end on the real stack: the broker as SSF transmitter, the
reference MCP server as receiver, and a receiver that survives being killed right after a revocation."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
from reference_mcp import INITIALIZE, mcp_server, post

from sandbox.ssf import ACCESS_ENDING, POLL, PUSH, WELL_KNOWN
from sandbox.stack.ports import free_port
from sandbox.stack_secrets import Secrets

from .conftest import Broker, Tenant
from .test_lifecycle import secret_credential, token_for

USAGE_SECRET = "usage-ingest"  # the stack secret SSF receivers present to the broker


def receiver_headers(broker: Broker) -> dict[str, str]:
    return {"Authorization": f"Bearer {Secrets(broker.settings).get(USAGE_SECRET)}"}


def agent_token(broker: Broker, tenant: Tenant, server: str) -> tuple[str, str]:
    """A fresh agent of ``tenant`` for ``server``: its id and an access token."""
    provisioned = broker.provision(tenant, tenant.admins["carol"].token(), role="log-reader", servers=[server])
    return provisioned["agent"]["id"], token_for(tenant, secret_credential(provisioned)).access_token


def revoke(broker: Broker, tenant: Tenant, agent_id: str) -> dict[str, Any]:
    revoked = broker.call("POST", f"/revoke/{agent_id}", tenant.admins["alice"].token(), {"reason": "ssf test"})
    assert revoked.status_code == 200, revoked.text
    return revoked.json()  # type: ignore[no-any-return]


def test_the_broker_describes_itself_as_an_ssf_transmitter_and_holds_the_stack_servers_stream(broker: Broker) -> None:
    settings = broker.settings
    metadata = httpx.get(f"{settings.broker_url}{WELL_KNOWN}").json()
    assert metadata["issuer"] == settings.transmitter_url
    assert metadata["jwks_uri"] == f"{settings.transmitter_url}/.well-known/jwks.json"
    assert set(metadata["delivery_methods_supported"]) == {PUSH, POLL}
    assert httpx.get(metadata["configuration_endpoint"]).status_code == 401  # receivers only
    streams = httpx.get(metadata["configuration_endpoint"], headers=receiver_headers(broker)).json()
    mine = [s for s in streams if s["aud"] == settings.mcp_url]
    assert len(mine) == 1, streams
    stream = mine[0]
    assert stream["delivery"] == {"method": PUSH, "endpoint_url": settings.mcp_server("jwt+events").events_url}
    assert set(stream["events_delivered"]) == set(ACCESS_ENDING)
    status = httpx.get(
        metadata["status_endpoint"], params={"stream_id": stream["stream_id"]}, headers=receiver_headers(broker)
    )
    assert status.json() == {"stream_id": stream["stream_id"], "status": "enabled"}


def test_a_revoked_agents_token_is_refused_through_a_standard_ssf_event(broker: Broker, tenant: Tenant) -> None:
    server = broker.settings.mcp_url
    agent_id, token = agent_token(broker, tenant, server)
    assert post(server, INITIALIZE, token=token).status_code == 200  # control
    result = revoke(broker, tenant, agent_id)
    delivered = {d["server"]: d for d in result["events"]}
    assert delivered[server]["delivered"] is True and delivered[server]["status"] == 202
    refused = post(server, INITIALIZE, token=token)
    assert refused.status_code == 401, refused.text


def test_a_revocation_survives_the_server_being_killed_and_one_made_while_it_was_down_is_caught_up(
    broker: Broker, tenant: Tenant, tmp_path: Path
) -> None:
    """Killed right after a revocation it acknowledged, the server still refuses that token when it is back; a
    revocation pushed while it was down (the push fails) it polls from its stream before it serves any token."""
    settings = broker.settings
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    operator = broker.operator_token()
    registered = broker.call("POST", "/resource-servers", operator, {"url": url, "events_url": None})
    assert registered.status_code == 201, registered.text
    issuers = [tenant.issuer]
    try:
        with mcp_server(
            settings, tmp_path, mode="jwt+events", issuers=issuers, broker_url=settings.broker_url, port=port
        ) as first:
            acknowledged_id, acknowledged = agent_token(broker, tenant, url)
            missed_id, missed = agent_token(broker, tenant, url)
            assert post(url, INITIALIZE, token=acknowledged).status_code == 200
            assert post(url, INITIALIZE, token=missed).status_code == 200
            events = revoke(broker, tenant, acknowledged_id)["events"]
            assert [e["delivered"] for e in events] == [True], events
            os.killpg(first.process.pid, signal.SIGKILL)  # no shutdown, no last write
            first.process.wait(timeout=10)
        events = revoke(broker, tenant, missed_id)["events"]
        assert [e["delivered"] for e in events] == [False], events  # nobody listening: it waits in the stream
        with mcp_server(
            settings, tmp_path, mode="jwt+events", issuers=issuers, broker_url=settings.broker_url, port=port
        ):
            first_call = post(url, INITIALIZE, token=acknowledged)
            assert first_call.status_code == 401, first_call.text
            assert post(url, INITIALIZE, token=missed).status_code == 401
            _, fresh = agent_token(broker, tenant, url)
            assert post(url, INITIALIZE, token=fresh).status_code == 200  # control: it serves the others
    finally:
        broker.call("DELETE", "/resource-servers", operator, url=url)
