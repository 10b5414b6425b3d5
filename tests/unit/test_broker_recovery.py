"""The broker after a crash or a race, with a stand-in Keycloak: a provision the broker never finished is undone,
an interrupted secret rotation is completed instead of repeated, one live agent per name whatever the timing,
and a rotation and a revocation of one agent at once end revoked."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from test_broker_service import ALICE, FakeKeycloak, request, world  # noqa: F401 - the shared fixture

from sandbox.broker.credentials import secret_fingerprint
from sandbox.broker.errors import Conflict
from sandbox.broker.store import Agent, Credential, StorageConflict
from sandbox.idp.provider import AgentClient, AgentClientSpec
from sandbox.idp.tenant_idps import TenantIdps


class RotatingKeycloak(FakeKeycloak):
    """The stand-in with Keycloak's secret rotation: a current secret and a rotated one with its expiry."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}
        self.rotated: dict[str, tuple[str, int]] = {}  # client -> (old secret, grace seconds)
        self.generated = 0
        self.slowness = 0

    async def create_agent_client(self, realm: str, spec: AgentClientSpec) -> AgentClient:
        client = await super().create_agent_client(realm, spec)
        self.secrets[spec.client_id] = client.secret or ""
        return client

    async def client_secret(self, realm: str, internal_id: str) -> str:
        await self._call("client_secret")
        return self.secrets[internal_id]

    async def rotate_client_secret(self, realm: str, internal_id: str, grace_seconds: int) -> str:
        await self._call("generate")
        for _ in range(self.slowness):  # a slow round trip: a revocation may run meanwhile
            await asyncio.sleep(0)
        self.generated += 1
        self.rotated[internal_id] = (self.secrets[internal_id], 86400)  # the realm policy's default expiry
        self.secrets[internal_id] = f"secret-{self.generated}"
        await self.keep_rotated_secret(realm, internal_id, grace_seconds)
        return self.secrets[internal_id]

    async def keep_rotated_secret(self, realm: str, internal_id: str, grace_seconds: int) -> None:
        await self._call("keep_rotated_secret")
        self.rotated[internal_id] = (self.rotated[internal_id][0], grace_seconds)

    async def end_secret_grace(self, realm: str, internal_id: str) -> None:
        await self._call("end_secret_grace")
        self.rotated.pop(internal_id, None)


@pytest.fixture
def rotating(world: Any) -> Any:  # noqa: F811
    service, _, clock = world
    keycloak = RotatingKeycloak()
    service.context.adapter = TenantIdps(keycloak, realm_issuer=service.context.settings.issuer)
    return service, keycloak, clock


@pytest.mark.reliability(
    "Faults",
    "Broker stopped mid-provision (unit): the agent left `provisioning`",
    "undone after `broker_interrupted_after`: client removed, agent `failed`, name free again",
)
async def test_a_provision_the_broker_never_finished_is_undone(world: Any, reliability: Any) -> None:  # noqa: F811
    service, keycloak, clock = world
    real = service.agents._create_client

    async def crash(*args: Any, **kwargs: Any) -> Any:  # the broker dies after Keycloak made the client
        await keycloak.create_agent_client("acme", AgentClientSpec("agent-stuck-x", "x", [], [], 60))
        raise asyncio.CancelledError

    service.agents._create_client = crash
    with pytest.raises(asyncio.CancelledError):
        await service.agents.provision(ALICE, "acme", request("stuck"))
    service.agents._create_client = real
    [stuck] = service.agents.list_agents(ALICE, "acme")
    keycloak.clients[stuck.client_id] = keycloak.clients.pop("agent-stuck-x")
    assert stuck.status == "provisioning"
    with pytest.raises(Conflict):  # the name stays taken while it may still be under way
        await service.agents.provision(ALICE, "acme", request("stuck"))
    assert (await service.housekeeping())["provisions_undone"] == 0  # too recent to be called interrupted
    clock.advance(seconds=service.context.settings.broker_interrupted_after + 1)
    assert (await service.housekeeping())["provisions_undone"] == 1
    assert service.agents.get_agent(ALICE, "acme", stuck.id).status == "failed"
    assert keycloak.clients == {}
    entries = service.reporting.audit_entries(ALICE, "acme", stuck.id)
    assert [e.action for e in entries] == ["agent.provision_failed"] and "interrupted" in entries[0].reason
    again = await service.agents.provision(ALICE, "acme", request("stuck"))
    assert again.agent.status == "active"
    reliability.add()


async def test_a_provision_that_outlived_its_recovery_removes_its_client_and_says_so(world: Any) -> None:  # noqa: F811
    service, keycloak, clock = world
    original = keycloak.create_agent_client

    async def slow(realm: str, spec: AgentClientSpec) -> AgentClient:
        clock.advance(seconds=service.context.settings.broker_interrupted_after + 1)
        assert (await service.housekeeping())["provisions_undone"] == 1  # meanwhile: taken for interrupted
        return await original(realm, spec)

    keycloak.create_agent_client = slow
    with pytest.raises(Conflict, match="was recorded as failed"):
        await service.agents.provision(ALICE, "acme", request("slow"))
    assert keycloak.clients == {}


@pytest.mark.reliability(
    "Faults",
    "Broker stopped mid-rotation (unit): Keycloak made the new secret, the broker never recorded it",
    "the retry hands out that secret with the grace asked for; the old one is not cut short",
)
async def test_an_interrupted_secret_rotation_is_completed_not_repeated(rotating: Any, reliability: Any) -> None:
    service, keycloak, _ = rotating
    agent = (await service.agents.provision(ALICE, "acme", request("rotor"))).agent
    original = keycloak.secrets[agent.client_id]
    await keycloak.rotate_client_secret("acme", agent.client_id, 86400)  # the broker died right after this
    made = keycloak.secrets[agent.client_id]
    rotated = await service.rotation.rotate(ALICE, "acme", agent.id, 300)
    assert rotated.credential.client_secret == made and keycloak.generated == 1
    assert keycloak.rotated[agent.client_id] == (original, 300)  # the original kept for exactly the grace
    again = await service.rotation.end_grace(ALICE, "acme", agent.id)
    assert again.status == "active"
    normal = await service.rotation.rotate(ALICE, "acme", agent.id, 60)  # consistent again: a normal rotation
    assert normal.credential.client_secret != made and keycloak.generated == 2
    assert secret_fingerprint(made) in str(service.reporting.audit_entries(ALICE, "acme", agent.id))
    reliability.add()


@pytest.mark.reliability(
    "Concurrency",
    "Second live agent of one name written straight to the database (what a second broker process would do)",
    "refused by the database (unique index on live names)",
)
async def test_the_database_refuses_a_second_live_agent_of_one_name(world: Any, reliability: Any) -> None:  # noqa: F811
    service, _, _ = world
    first = (await service.agents.provision(ALICE, "acme", request("unique"))).agent
    with pytest.raises(StorageConflict), service.context.db.session() as session:
        stored = session.get(Agent, first.id)
        assert stored is not None
        twin = Agent(**{c.name: getattr(stored, c.name) for c in Agent.__table__.columns if c.name != "id"})
        session.add(twin)
    await service.revocation.revoke(ALICE, first.id)
    with service.context.db.session() as session:  # a revoked agent frees its name
        stored = session.get(Agent, first.id)
        assert stored is not None
        columns = {c.name: getattr(stored, c.name) for c in Agent.__table__.columns if c.name != "id"}
        session.add(Agent(**{**columns, "status": "active"}))
    reliability.add()


@pytest.mark.reliability(
    "Concurrency", "Rotate and revoke of one agent at once (unit, 20 interleavings)", "always ends revoked"
)
async def test_rotate_and_revoke_at_once_end_revoked(rotating: Any, reliability: Any) -> None:
    service, keycloak, _ = rotating
    for round_ in range(20):
        keycloak.slowness = round_
        agent = (await service.agents.provision(ALICE, "acme", request(f"race-{round_}"))).agent
        calls = [service.rotation.rotate(ALICE, "acme", agent.id, 60), service.revocation.revoke(ALICE, agent.id)]
        if round_ % 2:
            calls.reverse()
        await asyncio.gather(*calls, return_exceptions=True)
        final = service.agents.get_agent(ALICE, "acme", agent.id)
        assert final.status == "revoked", (round_, final.status)
        assert agent.client_id not in keycloak.clients
        actions = [e.action for e in service.reporting.audit_entries(ALICE, "acme", agent.id)]
        assert actions[-1] == "agent.revoked" and actions.count("agent.revoked") == 1, actions
        with service.context.db.session() as session:  # nothing of a credential is left to a revoked agent
            assert session.scalars(select(Credential).where(Credential.agent_id == agent.id)).first() is None
        reliability.add()


async def test_interrupted_provisions_are_judged_on_their_tenants_time(world: Any) -> None:  # noqa: F811
    service, _, clock = world
    assert timedelta(seconds=service.context.settings.broker_interrupted_after) < timedelta(days=1)
    assert (await service.housekeeping())["provisions_undone"] == 0
    clock.advance(days=1)
    assert (await service.housekeeping())["provisions_undone"] == 0  # nothing is provisioning: nothing undone
