"""Each tenant's agents on its own IdP, people always on Keycloak: the :class:`IdentityProvider` the broker uses.

A tenant is a Keycloak realm in every case: its admins and delegating users log in there, with OTP. Its agents are
clients of that realm (``keycloak``) or of a Hydra of its own (``hydra``): one of the sandbox tenants' Hydras
(``SANDBOX_IDP=hydra``), or one the broker lends from the stack's pool (``SANDBOX_HYDRA_POOL``) to a tenant created
on Hydra, wiped and given back when the tenant is deleted. Every agent call goes to the tenant's agents' IdP;
every call about realms and people goes to Keycloak.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sandbox.config import HydraAddress, IdpName
from sandbox.idp.capabilities import BY_IDP, Capabilities
from sandbox.idp.hydra import TOKEN_PATH as HYDRA_TOKEN_PATH
from sandbox.idp.hydra import HydraProvider
from sandbox.idp.provider import (
    EVENTS_READ,
    AgentClient,
    AgentClientSpec,
    Consent,
    EventKind,
    IdentityProvider,
    IdpError,
    IdpEvent,
)
from sandbox.idp.realm import TOKEN_PATH as KEYCLOAK_TOKEN_PATH


class NoHydraFree(IdpError):
    """Every Hydra of the pool is lent to a tenant, or the stack has none."""


class TenantIdps:
    """Routes each call to the IdP that holds it; composes the people's IdP and the agents' Hydras."""

    def __init__(
        self,
        people: IdentityProvider,
        hydra: HydraProvider | None = None,
        pool: Sequence[HydraAddress] = (),
        *,
        realm_issuer: Callable[[str], str],
    ) -> None:
        self.people = people
        self.realm_issuer = realm_issuer  # a tenant's realm issuer (Keycloak's URL of it)
        self.hydra = hydra
        self.pool = list(pool)
        self.lent: dict[str, HydraAddress] = {}  # tenant -> the pool Hydra it holds

    # Which IdP holds a tenant's agents.
    def idp_of(self, tenant: str) -> IdpName:
        return "hydra" if self.hydra is not None and tenant in self.hydra.tenants else "keycloak"

    def capabilities(self, tenant: str) -> Capabilities:
        return BY_IDP[self.idp_of(tenant)]

    def agents_issuer(self, tenant: str) -> str | None:
        """The issuer of the tenant's agents' tokens when it is not the tenant's realm (a Hydra), else None."""
        if self.hydra is not None and tenant in self.hydra.tenants:
            return self.hydra.tenants[tenant].issuer
        return None

    def known_token_endpoint(self, tenant: str) -> str:
        """The agents' token endpoint without asking the IdP (for generated configs): each IdP's fixed path."""
        issuer = self.agents_issuer(tenant)
        if issuer is not None:
            return f"{issuer.rstrip('/')}{HYDRA_TOKEN_PATH}"  # the issuer ends in "/" (HydraAddress.issuer)
        return self.people_token_endpoint(tenant)

    def people_token_endpoint(self, tenant: str) -> str:
        return f"{self.realm_issuer(tenant)}{KEYCLOAK_TOKEN_PATH}"

    def _agents(self, tenant: str) -> IdentityProvider:
        return self.hydra if self.hydra is not None and tenant in self.hydra.tenants else self.people

    # Lending the pool's Hydras.
    def lend_hydra(self, tenant: str) -> HydraAddress:
        """A free Hydra of the pool for ``tenant``'s agents (it is the tenant's until :meth:`give_back`)."""
        held = {address.tenant for address in self.lent.values()}
        free = [address for address in self.pool if address.tenant not in held]
        if self.hydra is None or not free:
            raise NoHydraFree(
                f"no free Hydra for tenant {tenant!r}: the stack has {len(self.pool)} in its pool, "
                f"{len(held)} lent to tenants",
                "delete a tenant on Hydra, or start the stack with a larger SANDBOX_HYDRA_POOL (at most 6)",
            )
        self.attach(tenant, free[0])
        return free[0]

    def attach(self, tenant: str, address: HydraAddress) -> None:
        """``tenant`` holds the pool Hydra ``address`` (at lending, and when the broker restarts)."""
        if self.hydra is None:
            raise NoHydraFree(
                f"tenant {tenant!r} is recorded on Hydra {address.tenant}, but this stack runs no Hydra",
                "start the stack with SANDBOX_HYDRA_POOL set as it was when the tenant was made",
            )
        self.lent[tenant] = address
        self.hydra.attach(tenant, address)

    async def give_back(self, tenant: str) -> None:
        """Wipe the tenant's pool Hydra (clients, tokens, signing keys) and free it; nothing for other tenants."""
        if tenant not in self.lent or self.hydra is None:
            return
        await self.hydra.wipe(tenant)
        self.hydra.detach(tenant)
        del self.lent[tenant]

    # Tenants and people: Keycloak.
    async def realm_exists(self, tenant: str, /) -> bool:
        return await self.people.realm_exists(tenant)

    async def create_tenant_realm(
        self,
        tenant: str,
        template: dict[str, Any],
        /,
        *,
        scopes: list[str],
        resource_servers: dict[str, str],
        demo_secret: str | None = None,
    ) -> None:
        await self.people.create_tenant_realm(
            tenant, template, scopes=scopes, resource_servers=resource_servers, demo_secret=demo_secret
        )

    async def delete_realm(self, tenant: str, /) -> None:
        await self.people.delete_realm(tenant)

    async def create_tenant_user(
        self,
        tenant: str,
        username: str,
        password: str,
        otp_secret: str | None,
        /,
        *,
        roles: list[str],
        last_name: str = "",
    ) -> str:
        return await self.people.create_tenant_user(
            tenant, username, password, otp_secret, roles=roles, last_name=last_name
        )

    async def user_consents(self, tenant: str, user_id: str, /) -> list[Consent]:
        return await self.people.user_consents(tenant, user_id)

    # Agents: the tenant's agents' IdP.
    async def token_endpoint(self, tenant: str, /) -> str:
        return await self._agents(tenant).token_endpoint(tenant)

    async def create_agent_client(self, tenant: str, spec: AgentClientSpec, /) -> AgentClient:
        return await self._agents(tenant).create_agent_client(tenant, spec)

    async def find_client(self, tenant: str, client_id: str, /) -> str | None:
        return await self._agents(tenant).find_client(tenant, client_id)

    async def delete_client(self, tenant: str, internal_id: str, /) -> None:
        await self._agents(tenant).delete_client(tenant, internal_id)

    async def set_client_enabled(self, tenant: str, internal_id: str, enabled: bool, /) -> None:
        await self._agents(tenant).set_client_enabled(tenant, internal_id, enabled)

    async def set_default_scopes(self, tenant: str, internal_id: str, scopes: list[str], /) -> None:
        await self._agents(tenant).set_default_scopes(tenant, internal_id, scopes)

    async def client_secret(self, tenant: str, internal_id: str, /) -> str:
        return await self._agents(tenant).client_secret(tenant, internal_id)

    async def rotate_client_secret(self, tenant: str, internal_id: str, grace_seconds: int, /) -> str:
        return await self._agents(tenant).rotate_client_secret(tenant, internal_id, grace_seconds)

    async def keep_rotated_secret(self, tenant: str, internal_id: str, grace_seconds: int, /) -> None:
        await self._agents(tenant).keep_rotated_secret(tenant, internal_id, grace_seconds)

    async def end_secret_grace(self, tenant: str, internal_id: str, /) -> None:
        await self._agents(tenant).end_secret_grace(tenant, internal_id)

    async def set_client_jwks(self, tenant: str, internal_id: str, jwks: dict[str, Any], /) -> None:
        await self._agents(tenant).set_client_jwks(tenant, internal_id, jwks)

    async def client_events(
        self, tenant: str, client_id: str, kinds: tuple[EventKind, ...], /, maximum: int = EVENTS_READ
    ) -> list[IdpEvent]:
        """The records of the client kept by the IdP that holds the tenant's agents."""
        return await self._agents(tenant).client_events(tenant, client_id, kinds, maximum)

    async def tenant_events(self, tenant: str, kinds: tuple[EventKind, ...], maximum: int, /) -> list[IdpEvent]:
        return await self._agents(tenant).tenant_events(tenant, kinds, maximum)

    async def add_delegation_scope(self, tenant: str, agent_client_id: str, agent_name: str, /) -> None:
        await self._agents(tenant).add_delegation_scope(tenant, agent_client_id, agent_name)

    async def remove_delegation_scope(self, tenant: str, agent_client_id: str, /) -> None:
        await self._agents(tenant).remove_delegation_scope(tenant, agent_client_id)
