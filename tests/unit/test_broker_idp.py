"""The broker against a fake IdentityProvider: what it asks of the IdP, and what each IdP error becomes.

No server runs: the service talks to :class:`fake_idp.FakeIdentityProvider` (the same calls, types and
errors as the Keycloak adapter) and a SQLite file.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from fake_idp import FakeIdentityProvider
from test_broker_service import ALICE, request, world  # noqa: F401 - the shared fixture

from sandbox.broker.auth import Principal
from sandbox.broker.errors import Conflict, Forbidden, IdpFailed
from sandbox.broker.tenants import AdminSpec
from sandbox.idp import IdentityProvider, IdpNotFound
from sandbox.idp.keycloak import KeycloakAdapter

OPERATOR = Principal("operator", None, "sub-operator", "sandbox-admin", mfa=False)


def calls_of(interface: type) -> dict[str, int]:
    """Each public call and how many arguments it takes besides ``self``."""
    return {
        name: len(inspect.signature(member).parameters) - 1
        for name, member in inspect.getmembers(interface, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("implementation", [KeycloakAdapter, FakeIdentityProvider])
def test_the_adapter_and_the_fake_make_every_call_of_the_interface(implementation: type) -> None:
    wanted = calls_of(IdentityProvider)
    offered = calls_of(implementation)
    assert {name: offered.get(name) for name in wanted} == wanted


async def test_provisioning_hands_out_the_idps_token_endpoint(world: Any) -> None:  # noqa: F811
    service, idp, _ = world
    issued = await service.agents.provision(ALICE, "acme", request("reader"))
    assert issued.credential.token_endpoint == "http://127.0.0.1:1/realms/acme/token"
    assert idp.clients[issued.agent.client_id]["enabled"] is True


async def test_no_token_endpoint_means_no_client(world: Any) -> None:  # noqa: F811
    service, idp, _ = world
    idp.fail = {"token_endpoint"}
    with pytest.raises(IdpFailed) as failed:
        await service.agents.provision(ALICE, "acme", request("early"))
    assert failed.value.status == 503
    assert idp.clients == {}
    assert [(a.name, a.status) for a in service.agents.list_agents(ALICE, "acme")] == [("early", "failed")]


async def test_revoking_an_agent_whose_client_the_idp_lost_completes(world: Any) -> None:  # noqa: F811
    service, idp, _ = world
    agent = (await service.agents.provision(ALICE, "acme", request("lost"))).agent
    idp.clients.clear()  # removed in the IdP behind the broker's back: nothing can get a token
    revoked = await service.revocation.revoke(ALICE, agent.id, tenant="acme")
    assert revoked.agent.status == "revoked"
    with pytest.raises(IdpNotFound):
        await idp.set_client_enabled("acme", agent.client_id, False)


async def test_an_unreachable_idp_during_a_revocation_leaves_it_resumable(world: Any) -> None:  # noqa: F811
    service, idp, _ = world
    agent = (await service.agents.provision(ALICE, "acme", request("cut"))).agent
    idp.fail = {"set_client_enabled"}
    with pytest.raises(IdpFailed, match="unreachable") as failed:
        await service.revocation.revoke(ALICE, agent.id, tenant="acme")
    assert failed.value.details["status"] == "revoking"
    idp.fail = set()
    assert (await service.revocation.revoke(ALICE, agent.id, tenant="acme")).agent.status == "revoked"
    assert idp.clients == {}


async def test_a_second_person_of_one_name_is_a_conflict_not_an_outage(world: Any) -> None:  # noqa: F811
    service, idp, _ = world
    first = await service.delegation.create_user(ALICE, "acme", "dana", ["mcp:tool:analytics.read"])
    assert first.username == "dana" and first.password
    with pytest.raises(Conflict, match="already has a user 'dana'"):
        await service.delegation.create_user(ALICE, "acme", "dana", ["mcp:tool:analytics.read"])
    assert list(idp.users) == [("acme", "dana")]


async def test_the_operator_makes_a_tenant_and_its_admins_in_the_idp(world: Any) -> None:  # noqa: F811
    service, idp, _ = world
    with pytest.raises(Forbidden):
        await service.tenants.create_tenant(ALICE, "newco", [AdminSpec("ada")])
    made = await service.tenants.create_tenant(OPERATOR, "newco", [AdminSpec("ada"), AdminSpec("bob", otp=False)])
    assert "newco" in idp.realms
    assert [a.username for a in made.admins] == ["ada", "bob"]
    assert idp.users[("newco", "ada")] == {"roles": ["tenant-admin"], "otp": True}
    assert idp.users[("newco", "bob")]["otp"] is False
    assert "newco" in [t.tenant for t in service.tenants.list_tenants(OPERATOR)]


async def test_a_tenant_the_idp_half_made_is_removed_again(world: Any) -> None:  # noqa: F811
    service, idp, _ = world
    idp.fail = {"create_tenant_user"}
    with pytest.raises(IdpFailed, match="the realm was removed again"):
        await service.tenants.create_tenant(OPERATOR, "halfco", [AdminSpec("ada")])
    assert "halfco" not in idp.realms
    assert "halfco" not in [t.tenant for t in service.tenants.list_tenants(OPERATOR)]


async def test_a_realm_the_idp_has_already_is_not_taken_over(world: Any) -> None:  # noqa: F811
    service, idp, _ = world
    idp.realms.add("taken")
    with pytest.raises(Conflict, match="exists already"):
        await service.tenants.create_tenant(OPERATOR, "taken", [])
    assert "taken" in idp.realms  # someone else's realm stays
