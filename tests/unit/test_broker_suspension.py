"""Anomaly -> suspension in the broker: the policy's rules, suspend, resume, revoke (fake IdP, real database)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fake_idp import FakeIdentityProvider, broker_on
from sqlalchemy import select

from sandbox.broker.auth import Principal
from sandbox.broker.clock import MovableClock
from sandbox.broker.errors import BrokerError
from sandbox.broker.schemas import AgentOut
from sandbox.broker.service import BrokerService, ProvisionRequest
from sandbox.broker.store import AuditEntry
from sandbox.idp import IdpEvent

ALICE = Principal("tenant_admin", "acme", "sub-alice", "alice", mfa=True)
NO_MFA = Principal("tenant_admin", "acme", "sub-bob", "bob", mfa=False)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[BrokerService, FakeIdentityProvider, MovableClock]]:
    keycloak, clock = FakeIdentityProvider(), MovableClock()
    async with broker_on(keycloak, tmp_path, clock) as service:
        yield service, keycloak, clock


async def provision(service: BrokerService, name: str, environment: str = "production", role: str = "log-reader"):
    request = ProvisionRequest(name=name, owner="o", role=role, environment=environment)
    return (await service.agents.provision(ALICE, "acme", request)).agent


def refused_calls(service: BrokerService, agent: AgentOut, count: int, clock: MovableClock, **extra: Any):
    events = [
        {
            "issuer": service.context.settings.issuer("acme"),
            "client_id": agent.client_id,
            "tool": "invoices.create",
            "allowed": False,
            "status": 403,
            "at": clock.now().timestamp(),
            **extra,
        }
        for _ in range(count)
    ]
    return service.reporting.ingest_usage(events, service.context.settings.mcp_url)


def audit_actions(service: BrokerService, agent_id: str) -> list[str]:
    with service.context.db.session() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.agent_id == agent_id).order_by(AuditEntry.seq))
        return [e.action for e in entries]


async def test_refused_calls_up_to_the_rule_suspend_a_watched_agent_and_keep_its_identity(world: Any) -> None:
    service, keycloak, clock = world
    agent = await provision(service, "prod-logs")
    ingested = refused_calls(service, agent, 4, clock)
    assert await service.suspensions.after_usage(ingested.refused_agents) == []  # 4 of 5: not yet
    ingested = refused_calls(service, agent, 1, clock)
    (done,) = await service.suspensions.after_usage(ingested.refused_agents)
    assert done.agent.status == "suspended" and done.agent.suspended_at
    assert keycloak.clients[agent.client_id]["enabled"] is False  # the credential stops working at the IdP
    assert done.events, "a revocation event goes to the receiving servers"
    kept = service.agents.get_agent(ALICE, "acme", agent.id)
    assert kept.client_id == agent.client_id and kept.status == "suspended"
    assert agent.client_id in keycloak.clients  # the identity is kept, not deleted
    assert audit_actions(service, agent.id)[-1] == "agent.suspended"


async def test_an_agent_of_an_unwatched_environment_is_not_suspended(world: Any) -> None:
    service, _, clock = world
    agent = await provision(service, "staging-logs", environment="staging")
    ingested = refused_calls(service, agent, 10, clock)
    assert await service.suspensions.after_usage(ingested.refused_agents) == []
    assert service.agents.get_agent(ALICE, "acme", agent.id).status == "active"


async def test_refusals_older_than_the_window_do_not_count(world: Any) -> None:
    service, _, clock = world
    agent = await provision(service, "slow-prober")
    refused_calls(service, agent, 4, clock)
    clock.advance(hours=1)  # past the 120 s window
    ingested = refused_calls(service, agent, 1, clock)
    assert await service.suspensions.after_usage(ingested.refused_agents) == []


async def test_outside_zone_calls_have_their_own_rule(world: Any) -> None:
    service, keycloak, clock = world
    agent = await provision(service, "zoned", role="zoned-log-reader")
    assert agent.zone == "127.0.0.2" and keycloak.clients[agent.client_id]["zone"] == "127.0.0.2"
    ingested = refused_calls(service, agent, 3, clock, outside_zone=True, source="127.0.0.3")
    (done,) = await service.suspensions.after_usage(ingested.refused_agents)
    assert done.agent.status == "suspended"
    with service.context.db.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "agent.suspended")).one()
        after = json.loads(entry.after)
    assert after["rule"] == "outside_zone_calls" and after["counted"] == 3


async def test_failed_token_requests_suspend_on_the_scan(world: Any) -> None:
    service, keycloak, clock = world
    agent = await provision(service, "guesser")
    other = await provision(service, "bystander")
    now = clock.now()
    keycloak.failures["acme"] = [
        IdpEvent("token_refused", now - timedelta(milliseconds=i), agent.client_id) for i in range(5)
    ] + [IdpEvent("token_refused", now, other.client_id)]
    (done,) = await service.suspensions.scan_token_failures()
    assert done.agent.id == agent.id
    assert service.agents.get_agent(ALICE, "acme", other.id).status == "active"
    assert (await service.housekeeping())["suspended"] == 0  # already suspended: nothing more to do


async def test_resume_needs_mfa_gives_access_back_and_counts_anomalies_afresh(world: Any) -> None:
    service, keycloak, clock = world
    agent = await provision(service, "resumable")
    await service.suspensions.after_usage(refused_calls(service, agent, 5, clock).refused_agents)
    with pytest.raises(BrokerError, match="MFA"):
        await service.suspensions.resume(NO_MFA, "acme", agent.id)
    resumed = await service.suspensions.resume(ALICE, "acme", agent.id, "false alarm")
    assert resumed.status == "active" and resumed.suspended_at is None
    assert keycloak.clients[agent.client_id]["enabled"] is True
    # The refusals that led to the suspension are still in the window, but count no more after the resume.
    clock.advance(seconds=1)
    assert await service.suspensions.after_usage(refused_calls(service, agent, 1, clock).refused_agents) == []
    with pytest.raises(BrokerError, match="not suspended"):
        await service.suspensions.resume(ALICE, "acme", agent.id)
    assert audit_actions(service, agent.id)[-2:] == ["agent.suspended", "agent.resumed"]


async def test_a_suspended_agent_can_be_revoked(world: Any) -> None:
    service, keycloak, clock = world
    agent = await provision(service, "to-revoke")
    await service.suspensions.after_usage(refused_calls(service, agent, 5, clock).refused_agents)
    revoked = await service.revocation.revoke(ALICE, agent.id, tenant="acme", reason="confirmed misuse")
    assert revoked.agent.status == "revoked" and agent.client_id not in keycloak.clients


async def test_a_role_change_cannot_move_an_agent_into_or_out_of_a_zone(world: Any) -> None:
    service, _, _ = world
    plain = await provision(service, "plain")
    zoned = await provision(service, "zoned-too", role="zoned-log-reader")
    with pytest.raises(BrokerError, match=r"network zone 127\.0\.0\.2"):
        await service.agents.change_role(ALICE, "acme", plain.id, "zoned-log-reader")
    with pytest.raises(BrokerError, match="cannot move an agent between zones"):
        await service.agents.change_role(ALICE, "acme", zoned.id, "log-reader")
