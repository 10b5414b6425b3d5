"""The lifecycle service with a stand-in for Keycloak: dormancy on a movable clock, and what a
Keycloak failure halfway leaves behind (compensated, or marked for clean-up; never a half-made agent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fake_idp import FakeIdentityProvider, broker_on

from sandbox.broker.auth import Principal
from sandbox.broker.clock import MovableClock
from sandbox.broker.errors import IdpFailed, StorageFailed
from sandbox.broker.service import BrokerService, ProvisionRequest
from sandbox.idp import IdpEvent

ALICE = Principal("tenant_admin", "acme", "sub-alice", "alice", mfa=True)


class FakeKeycloak(FakeIdentityProvider):
    """The fake IdP, with a way to record a token exchange the way the IdP's records hold one."""

    def exchange(self, client_id: str, at: datetime, user: str, scope: str) -> None:
        scopes = tuple(scope.split())
        event = IdpEvent("token_exchanged", at, client_id, user_id=f"id-{user}", username=user, scopes=scopes)
        self.exchanges.setdefault(client_id, []).insert(0, event)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[BrokerService, FakeKeycloak, MovableClock]]:
    keycloak, clock = FakeKeycloak(), MovableClock()
    async with broker_on(keycloak, tmp_path, clock) as service:
        yield service, keycloak, clock


def request(name: str, role: str = "read-only-analytics") -> ProvisionRequest:
    return ProvisionRequest(name=name, owner="o", role=role, environment="staging")


async def test_idle_agents_become_dormant_only_after_their_period(world: Any) -> None:
    service, keycloak, clock = world
    logs = (await service.agents.provision(ALICE, "acme", request("logs", "log-reader"))).agent
    analytics = (await service.agents.provision(ALICE, "acme", request("analytics"))).agent
    clock.advance(days=13, hours=23)
    assert (await service.dormancy.scan_dormancy(ALICE, "acme")).dormant == []
    clock.advance(hours=2)
    assert [a.id for a in (await service.dormancy.scan_dormancy(ALICE, "acme")).dormant] == [logs.id]
    assert keycloak.clients[logs.client_id]["enabled"] is False
    keycloak.logins[analytics.client_id] = clock.now()  # a token today
    clock.advance(days=29)
    assert (await service.dormancy.scan_dormancy(ALICE, "acme")).dormant == []
    clock.advance(days=2)
    assert [a.id for a in (await service.dormancy.scan_dormancy(ALICE, "acme")).dormant] == [analytics.id]
    assert {a.id for a in service.access_reviews.queue(ALICE, "acme")} == {logs.id, analytics.id}
    kept = await service.dormancy.review(ALICE, "acme", logs.id, "keep", "still needed")
    assert kept.status == "active" and keycloak.clients[logs.client_id]["enabled"] is True


async def test_tool_calls_count_as_activity(world: Any) -> None:
    service, _, clock = world
    agent = (await service.agents.provision(ALICE, "acme", request("caller"))).agent
    clock.advance(days=25)
    service.reporting.ingest_usage(
        [
            {
                "issuer": service.context.settings.issuer("acme"),
                "client_id": agent.client_id,
                "tool": "analytics.query",
                "allowed": True,
                "status": 200,
                "at": clock.now().timestamp(),
            }
        ],
        None,
    )
    clock.advance(days=25)
    assert (await service.dormancy.scan_dormancy(ALICE, "acme")).dormant == []


async def test_keycloak_failing_after_creating_the_client_is_compensated(world: Any) -> None:
    service, keycloak, _ = world
    keycloak.fail = {"after_create"}
    with pytest.raises(IdpFailed, match="nothing was left in Keycloak"):
        await service.agents.provision(ALICE, "acme", request("half"))
    assert keycloak.clients == {}
    assert [(a.name, a.status) for a in service.agents.list_agents(ALICE, "acme")] == [("half", "failed")]


async def test_keycloak_gone_entirely_marks_the_leftover_for_cleanup(world: Any) -> None:
    service, keycloak, _ = world
    keycloak.fail = {"after_create", "find_client", "delete_client"}
    with pytest.raises(IdpFailed, match="removed once Keycloak answers"):
        await service.agents.provision(ALICE, "acme", request("orphan"))
    assert len(keycloak.clients) == 1
    keycloak.fail = set()
    assert (await service.housekeeping())["cleanups"] == 1
    assert keycloak.clients == {}


async def test_storage_failing_after_keycloak_removes_the_client_again(world: Any, monkeypatch: Any) -> None:
    service, keycloak, _ = world
    from sandbox.broker import audit

    def broken(*_: Any, **__: Any) -> None:
        from sqlalchemy.exc import OperationalError

        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(StorageFailed, match="the Keycloak client was removed again"):
        await service.agents.provision(ALICE, "acme", request("unrecorded"))
    assert keycloak.clients == {}


async def test_interrupted_revocation_resumes(world: Any) -> None:
    service, keycloak, _ = world
    agent = (await service.agents.provision(ALICE, "acme", request("leaving"))).agent
    keycloak.fail = {"delete_client"}
    with pytest.raises(IdpFailed, match="removal is pending"):
        await service.revocation.revoke(ALICE, agent.id, reason="offboarding")
    assert keycloak.clients[agent.client_id]["enabled"] is False
    assert service.agents.get_agent(ALICE, "acme", agent.id).status == "revoking"
    keycloak.fail = set()
    assert (await service.housekeeping())["revocations_resumed"] == 1
    assert service.agents.get_agent(ALICE, "acme", agent.id).status == "revoked"
    assert keycloak.clients == {}
    again = await service.revocation.revoke(ALICE, agent.id)
    assert again.already_revoked is True


async def test_concurrent_revocations_revoke_once(world: Any) -> None:
    service, _, _ = world
    agent = (await service.agents.provision(ALICE, "acme", request("twice"))).agent
    first, second = await asyncio.gather(
        service.revocation.revoke(ALICE, agent.id), service.revocation.revoke(ALICE, agent.id)
    )
    assert sorted([first.already_revoked, second.already_revoked]) == [False, True]
    actions = [entry.action for entry in service.reporting.audit_entries(ALICE, "acme", agent.id)]
    assert actions == ["agent.provisioned", "agent.revoked"]


async def test_a_delegated_agent_has_a_delegation_scope_until_it_is_revoked(world: Any) -> None:
    service, keycloak, _ = world
    helper = (await service.agents.provision(ALICE, "acme", replace(request("helper"), mode="delegated"))).agent
    plain = (await service.agents.provision(ALICE, "acme", request("plain"))).agent
    assert helper.delegation_scope == f"delegate:{helper.client_id}" and plain.delegation_scope is None
    assert keycloak.delegation_scopes == {helper.client_id}
    await service.revocation.revoke(ALICE, helper.id)
    assert keycloak.delegation_scopes == set()


async def test_each_users_delegation_is_audited_once_with_the_user_as_actor(world: Any) -> None:
    service, keycloak, clock = world
    helper = (await service.agents.provision(ALICE, "acme", replace(request("helper"), mode="delegated"))).agent
    keycloak.exchange(helper.client_id, clock.now(), "dana", "mcp:tool:analytics.read")
    keycloak.exchange(helper.client_id, clock.now(), "dana", "mcp:tool:analytics.read")
    await service.reporting.audit_log(ALICE, "acme")
    keycloak.exchange(helper.client_id, clock.now(), "erin", "")
    entries = await service.reporting.audit_log(ALICE, "acme", helper.id)
    granted = [e for e in entries if e.action == "agent.delegation_granted"]
    assert [(e.actor, e.after["scopes"]) for e in granted] == [
        ("dana (user, acme, sub id-dana)", ["mcp:tool:analytics.read"]),
        ("erin (user, acme, sub id-erin)", []),
    ]
    found = (await service.delegation.delegations(ALICE, "acme", helper.id)).delegations
    assert [(d.user, d.exchanges) for d in found] == [("dana", 2), ("erin", 1)]
    assert all(d.consented_at for d in found)


async def test_a_moved_tenant_clock_spares_agents_active_after_the_move(world: Any) -> None:
    service, keycloak, clock = world
    idle = (await service.agents.provision(ALICE, "acme", request("idle"))).agent
    active = (await service.agents.provision(ALICE, "acme", replace(request("active"), mode="delegated"))).agent
    keycloak.logins[idle.client_id] = clock.now()  # before the move
    service.tenant_clock.advance(ALICE, "acme", timedelta(days=31))
    keycloak.exchange(active.client_id, clock.now() + timedelta(seconds=1), "dana", "")  # after it
    scan = await service.dormancy.scan_dormancy(ALICE, "acme")
    assert [a.id for a in scan.dormant] == [idle.id]
    assert datetime.fromisoformat(scan.as_of) - clock.now() >= timedelta(days=31) - timedelta(seconds=1)
    assert service.tenant_clock.show(ALICE, "acme").offset_seconds == 31 * 86400
    assert datetime.fromisoformat(service.agents.get_agent(ALICE, "acme", idle.id).dormant_since) > datetime.now(UTC)


async def test_a_dpop_agent_is_made_a_dpop_bound_client_and_shows_its_binding(world: Any) -> None:
    service, keycloak, _ = world
    bound = (await service.agents.provision(ALICE, "acme", replace(request("bound"), binding="dpop"))).agent
    plain = (await service.agents.provision(ALICE, "acme", request("plain"))).agent
    assert keycloak.clients[bound.client_id]["binding"] == "dpop" and bound.binding == "dpop"
    assert keycloak.clients[plain.client_id]["binding"] == "bearer" and plain.binding == "bearer"
    assert service.agents.get_agent(ALICE, "acme", bound.id).binding == "dpop"


def test_an_unknown_binding_is_a_problem_of_the_request(world: Any) -> None:
    service, _, _ = world
    problems = service.agents.check_request(replace(request("bound"), binding="tls"))
    assert problems == ["binding: 'tls' is not one of bearer, dpop, mtls"]


async def test_an_mtls_agent_is_made_a_certificate_bound_client(world: Any) -> None:
    service, keycloak, _ = world
    bound = (await service.agents.provision(ALICE, "acme", replace(request("bound"), binding="mtls"))).agent
    assert keycloak.clients[bound.client_id]["binding"] == "mtls" and bound.binding == "mtls"


class SlowToCreate(FakeKeycloak):
    """Creating a client takes at least CREATE_SECONDS, as a round trip to a busy IdP would."""

    CREATE_SECONDS = 0.05

    async def create_agent_client(self, realm: str, spec: Any) -> Any:
        await asyncio.sleep(self.CREATE_SECONDS)
        return await super().create_agent_client(realm, spec)


async def test_provision_reports_when_each_step_of_its_work_ended(tmp_path: Path) -> None:
    async with broker_on(SlowToCreate(), tmp_path, MovableClock()) as service:
        provisioned = await service.agents.provision(ALICE, "acme", request("timed"))
    steps = provisioned.steps_ms
    assert list(steps) == ["provisioning_recorded", "idp_client_created", "status_recorded"]
    assert 0 <= steps["provisioning_recorded"] <= steps["idp_client_created"] <= steps["status_recorded"]
    # The IdP's time falls in the step that calls it, not in the recording before it.
    assert steps["idp_client_created"] - steps["provisioning_recorded"] >= SlowToCreate.CREATE_SECONDS * 1000 * 0.9
