"""Keycloak and Hydra tenants side by side in one broker: a tenant made on Hydra borrows a Hydra of the stack's
pool for its agents (its people stay in a Keycloak realm), every agent call of that tenant goes to its Hydra,
and the Hydra is wiped and lent again when the tenant is deleted. Stand-ins for both IdPs; no server runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_idp import FakeIdentityProvider, service_of
from test_broker_service import request

from sandbox.broker.auth import Principal
from sandbox.broker.clock import MovableClock
from sandbox.broker.errors import Conflict, IdpFailed
from sandbox.broker.service import BrokerService
from sandbox.broker.store import Database
from sandbox.config import HydraAddress, Settings, load_settings
from sandbox.idp.hydra import HydraTenant
from sandbox.idp.tenant_idps import TenantIdps

OPERATOR = Principal("operator", None, "sub-operator", "sandbox-admin", mfa=False)


def admin_of(tenant: str) -> Principal:
    return Principal("tenant_admin", tenant, f"sub-{tenant}", f"admin-{tenant}", mfa=True)


class FakeHydra(FakeIdentityProvider):
    """The agents' side of Hydra: clients in memory, tenants attached by address, wipes recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.tenants: dict[str, HydraTenant] = {}
        self.wiped: list[str] = []

    def attach(self, tenant: str, address: HydraAddress) -> None:
        self.tenants[tenant] = HydraTenant(address.issuer, address.admin_url)

    def detach(self, tenant: str) -> None:
        self.tenants.pop(tenant, None)

    async def wipe(self, tenant: str) -> int:
        self.wiped.append(tenant)
        left = len(self.clients)
        self.clients.clear()
        return left


def service_for(settings: Settings, db: Database, keycloak: Any, hydra: Any, http: httpx.AsyncClient) -> BrokerService:
    adapter = TenantIdps(keycloak, hydra, settings.hydra_pool_addresses, realm_issuer=settings.issuer)
    return service_of(settings, db, adapter, http, MovableClock())


@pytest.fixture
async def side_by_side(tmp_path: Path) -> AsyncIterator[tuple[BrokerService, FakeIdentityProvider, FakeHydra]]:
    settings = load_settings(state_dir=tmp_path, hydra_pool=1, hydra_port=28090)
    keycloak, hydra = FakeIdentityProvider(), FakeHydra()
    db = Database(f"sqlite:///{tmp_path / 'broker.db'}")
    db.create_schema()
    async with httpx.AsyncClient() as http:
        service = service_for(settings, db, keycloak, hydra, http)
        service.tenants.register_resource_server(None, settings.mcp_url, None)
        await service.tenants.adopt_tenant("acme")
        yield service, keycloak, hydra
        db.dispose()


async def test_a_tenant_on_hydra_keeps_its_agents_there_and_its_people_in_keycloak(side_by_side: Any) -> None:
    service, keycloak, hydra = side_by_side
    pool = service.context.settings.hydra_pool_addresses[0]
    created = await service.tenants.create_tenant(OPERATOR, "hyd", [], "hydra")
    assert (created.idp, created.agents_issuer) == ("hydra", pool.issuer)
    assert created.issuer == service.context.settings.issuer("hyd") and "hyd" in keycloak.realms

    on_hydra = await service.agents.provision(admin_of("hyd"), "hyd", request("reader"))
    on_keycloak = await service.agents.provision(admin_of("acme"), "acme", request("reader"))
    assert on_hydra.agent.client_id in hydra.clients and on_hydra.agent.client_id not in keycloak.clients
    assert on_keycloak.agent.client_id in keycloak.clients and not hydra.clients.keys() & keycloak.clients.keys()
    assert on_hydra.credential.issuer == pool.issuer
    assert on_keycloak.credential.issuer == service.context.settings.issuer("acme")

    await service.agents.change_role(admin_of("hyd"), "hyd", on_hydra.agent.id, "log-reader", None, "")
    assert "mcp:tool:logs.read" in hydra.clients[on_hydra.agent.client_id]["scopes"]
    # MCP servers trust the tenant's Hydra for its agents; admins still sign in to its realm only
    assert service.tenants.agent_issuers()[pool.issuer] == "hyd" and pool.issuer not in service.tenants.tenant_issuers()


async def test_the_pool_lends_each_hydra_once_and_again_after_a_wipe(side_by_side: Any, tmp_path: Path) -> None:
    service, keycloak, hydra = side_by_side
    await service.tenants.create_tenant(OPERATOR, "first", [], "hydra")
    agent = (await service.agents.provision(admin_of("first"), "first", request("reader"))).agent
    with pytest.raises(Conflict) as refused:
        await service.tenants.create_tenant(OPERATOR, "second", [], "hydra")
    assert "no free Hydra" in refused.value.cause and "SANDBOX_HYDRA_POOL" in refused.value.fix
    assert "second" not in keycloak.realms  # nothing half-made

    await service.tenants.delete_tenant(OPERATOR, "first")
    assert hydra.wiped == ["first"] and agent.client_id not in hydra.clients
    again = await service.tenants.create_tenant(OPERATOR, "second", [], "hydra")
    assert again.agents_issuer == service.context.settings.hydra_pool_addresses[0].issuer

    # a restarted broker finds which tenant holds which Hydra in its database
    async with httpx.AsyncClient() as http:
        restarted = service_for(service.context.settings, service.context.db, keycloak, FakeHydra(), http)
    assert restarted.context.agents_issuer("second") == again.agents_issuer
    assert restarted.context.adapter.idp_of("acme") == "keycloak"


async def test_a_hydra_tenant_asks_no_events_of_its_idp_for_dormancy(side_by_side: Any) -> None:
    service, _, hydra = side_by_side
    await service.tenants.create_tenant(OPERATOR, "idle", [], "hydra")
    await service.agents.provision(admin_of("idle"), "idle", request("reader"))
    hydra.fail = {"client_events"}  # Hydra keeps no readable events: asking would fail the scan
    assert (await service.dormancy.scan_dormancy(admin_of("idle"), "idle")).errors == []


async def test_a_failure_on_a_hydra_tenant_names_hydra_not_keycloak(side_by_side: Any) -> None:
    """What the broker says of a failed provision names the IdP that holds the tenant's agents."""
    service, _, hydra = side_by_side
    await service.tenants.create_tenant(OPERATOR, "hyd", [], "hydra")
    hydra.fail = {"create_agent_client"}
    with pytest.raises(IdpFailed) as failed:
        await service.agents.provision(admin_of("hyd"), "hyd", request("reader"))
    assert failed.value.cause.endswith("; nothing was left in Ory Hydra; the agent is recorded as failed")
    assert failed.value.fix == "retry the provision when Ory Hydra is up (`mcp-sandbox status`)"
