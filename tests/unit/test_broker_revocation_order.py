"""Revocation pushes its first event while the IdP disables the client, and a closing event after: servers
refuse the agent's tokens without waiting for Keycloak, and tokens issued meanwhile are covered before the answer."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_idp import FakeIdentityProvider, service_of

from sandbox.broker.auth import Principal
from sandbox.broker.clock import MovableClock
from sandbox.broker.errors import IdpFailed
from sandbox.broker.service import BrokerService, ProvisionRequest
from sandbox.broker.store import Database
from sandbox.config import load_settings

ALICE = Principal("tenant_admin", "acme", "sub-alice", "alice", mfa=True)
EVENTS_URL = "http://127.0.0.1:1/events"


class SlowKeycloak(FakeIdentityProvider):
    """Disabling a client waits until a revocation event has reached the server (or fails after a while)."""

    def __init__(self, log: list[str], pushed: asyncio.Event) -> None:
        super().__init__()
        self.log = log
        self.pushed = pushed

    async def set_client_enabled(self, realm: str, internal_id: str, enabled: bool) -> None:
        if not enabled:
            self.log.append("disable requested")
            await asyncio.wait_for(self.pushed.wait(), timeout=10)  # never answered if the push waited for this
        await super().set_client_enabled(realm, internal_id, enabled)
        self.log.append("disabled" if not enabled else "enabled")


def _timestamp(request: httpx.Request) -> int:
    payload = request.content.decode().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    (event,) = claims["events"].values()
    return int(event["event_timestamp"])


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[BrokerService, SlowKeycloak, list[str], list[int]]]:
    settings = load_settings(state_dir=tmp_path, broker_movable_clock=True)
    log: list[str] = []
    stamps: list[int] = []
    pushed = asyncio.Event()

    async def receiver(request: httpx.Request) -> httpx.Response:
        if str(request.url) != EVENTS_URL:
            return httpx.Response(404)
        stamps.append(_timestamp(request))
        log.append("event pushed")
        pushed.set()
        return httpx.Response(202)

    keycloak = SlowKeycloak(log, pushed)
    db = Database(f"sqlite:///{tmp_path / 'broker.db'}")
    db.create_schema()
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        service = service_of(settings, db, keycloak, http, MovableClock())
        service.tenants.register_resource_server(None, settings.mcp_url, EVENTS_URL)
        await service.tenants.adopt_tenant("acme")
        yield service, keycloak, log, stamps
        db.dispose()


def request(name: str) -> ProvisionRequest:
    return ProvisionRequest(name=name, owner="o", role="read-only-analytics", environment="staging")


async def test_the_first_event_goes_out_while_the_idp_disables_and_a_closing_one_after(world: Any) -> None:
    service, keycloak, log, stamps = world
    agent = (await service.agents.provision(ALICE, "acme", request("leaving"))).agent
    answer = await service.revocation.revoke(ALICE, agent.id, reason="offboarding")
    # The IdP's disable could only finish once an event had reached the server: they ran side by side.
    assert log == ["disable requested", "event pushed", "disabled", "event pushed"]
    assert len(stamps) == 2 and stamps[0] <= stamps[1]  # the closing event covers what was issued meanwhile
    assert [event["delivered"] for event in answer.events] == [True]
    assert answer.agent.status == "revoked" and keycloak.clients == {}
    steps = answer.steps_ms
    assert set(steps) == {"first_event_answered", "idp_disabled", "closing_event_answered_and_client_removed"}
    assert steps["first_event_answered"] <= steps["idp_disabled"] <= steps["closing_event_answered_and_client_removed"]


async def test_when_the_idp_fails_the_revocation_stays_in_progress_and_no_closing_event_is_sent(world: Any) -> None:
    service, keycloak, log, _ = world
    agent = (await service.agents.provision(ALICE, "acme", request("stuck"))).agent
    keycloak.fail = {"set_client_enabled"}
    with pytest.raises(IdpFailed, match="in progress"):
        await service.revocation.revoke(ALICE, agent.id)
    assert log.count("event pushed") == 1  # the first event refuses the tokens issued so far; nothing claims more
    assert service.agents.get_agent(ALICE, "acme", agent.id).status == "revoking"
