"""Tenants (Keycloak realms), their admins, and the resource servers agents may be given as audience."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from sqlalchemy import select

from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.base import IDP_FAILURES, NAME, SYSTEM, TENANT_NAME, BrokerContext, idp_failure, why
from sandbox.broker.errors import (
    BadRequest,
    BrokerError,
    Conflict,
    Forbidden,
    IdpFailed,
    NotFound,
)
from sandbox.broker.revocation import RevocationService
from sandbox.broker.specs import AdminSpec
from sandbox.broker.store import (
    Agent,
    ResourceServer,
    Tenant,
)
from sandbox.config import DEFAULT_IDP, IDP_NAMES, IdpName
from sandbox.idp.realm import TENANT_ADMIN_ROLE, create_tenant
from sandbox.stack_secrets import otp_base32

log = logging.getLogger(__name__)


class TenantService:
    """Tenants, their admins and people, and the resource servers; deleting a tenant revokes its agents."""

    def __init__(self, context: BrokerContext, revocation: RevocationService) -> None:
        self.context = context
        self.revocation = revocation

    async def adopt_tenant(self, name: str, *, check: bool = True) -> bool:
        """Register an existing realm (the stack's sandbox tenants) as a tenant; False if already one.

        ``check=False`` adopts without asking Keycloak (it is down; the stack's configuration vouches for the realm).
        """
        with self.context.session() as session:
            if session.get(Tenant, name) is not None:
                return False
        if check and not await self.context.adapter.realm_exists(name):
            return False
        self._record(name, SYSTEM, "tenant.adopted", {"tenant": name}, agents_idp=self.context.adapter.idp_of(name))
        return True

    def _record(
        self, name: str, actor: str, action: str, after: dict[str, Any], *, agents_idp: str, hydra: str | None = None
    ) -> None:
        """The tenant's row (its realm's issuer, its agents' IdP and issuer) and its audit entry, in one commit."""
        now = self.context.now(name)
        with self.context.session() as session:
            session.add(
                Tenant(
                    name=name,
                    issuer=self.context.settings.issuer(name),
                    created_at=now,
                    created_by=actor,
                    agents_idp=agents_idp,
                    agents_issuer=self.context.adapter.agents_issuer(name),
                    hydra=hydra,
                )
            )
            audit.record(session, tenant=name, actor=actor, action=action, at=now, after=after)

    async def create_tenant(
        self, principal: Principal, name: str, admins: list[AdminSpec], idp: IdpName = DEFAULT_IDP
    ) -> schemas.TenantCreated:
        """A realm for the tenant's people; its agents in the realm too, or (``idp="hydra"``) on a Hydra the broker
        lends it from the stack's pool."""
        if not principal.is_operator:
            raise Forbidden("only the platform operator creates tenants", "ask the operator of this sandbox")
        if not TENANT_NAME.match(name):
            raise BadRequest(f"tenant name {name!r} is not valid", "use 2-31 lowercase letters, digits and dashes")
        if name == "master":
            raise BadRequest("tenant name 'master' is reserved", "pick another name")
        if idp not in IDP_NAMES:
            raise BadRequest(f"idp {idp!r} is not one the broker knows", f"use one of: {', '.join(IDP_NAMES)}")
        with self.context.session() as session:
            if session.get(Tenant, name) is not None:
                raise Conflict(f"tenant {name!r} exists", "pick another name")
        hydra = None
        if idp == "hydra":
            try:
                hydra = self.context.adapter.lend_hydra(name).tenant
            except IDP_FAILURES as exc:
                raise Conflict(exc.cause, exc.fix) from exc
        try:
            if await self.context.adapter.realm_exists(name):
                await self._give_back_quietly(name)
                raise Conflict(f"a Keycloak realm {name!r} exists already", "pick another tenant name")
            await create_tenant(self.context.adapter, self.context.settings, name)
        except IDP_FAILURES as exc:
            await self._remove_realm_quietly(name)
            await self._give_back_quietly(name)
            raise IdpFailed(
                f"Keycloak failed while creating tenant {name!r} ({why(exc)}); nothing was kept",
                "retry when Keycloak is up (`mcp-sandbox status`)",
            ) from exc
        issued: list[schemas.IssuedAdmin] = []
        try:
            for admin in admins:
                issued.append(await self._create_admin(name, admin))
            after = {"tenant": name, "admins": [a.username for a in issued], "idp": idp}
            self._record(name, principal.actor, "tenant.created", after, agents_idp=idp, hydra=hydra)
        except (*IDP_FAILURES, BrokerError) as exc:
            await self._remove_realm_quietly(name)
            await self._give_back_quietly(name)
            if isinstance(exc, BrokerError):
                raise
            raise IdpFailed(
                f"Keycloak failed while adding tenant {name!r}'s admins ({why(exc)}); the realm was removed again",
                "retry when Keycloak is up",
            ) from exc
        return schemas.TenantCreated(
            tenant=name,
            issuer=self.context.settings.issuer(name),
            idp=idp,
            agents_issuer=self.context.agents_issuer(name),
            admins=issued,
        )

    async def delete_tenant(self, principal: Principal, name: str) -> None:
        """Revoke the tenant's live agents (events reach their servers), remove its realm; its audit stays."""
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, name)  # another tenant's admin gets 404, like everywhere
            if not principal.is_operator:
                raise Forbidden("only the platform operator deletes tenants", "ask the operator of this sandbox")
            live = list(
                session.scalars(
                    select(Agent.id).where(Agent.tenant == name, Agent.status.not_in(("revoked", "rejected", "failed")))
                )
            )
        for agent_id in live:
            await self.revocation.revoke(principal, agent_id, tenant=name, reason="tenant deleted")
        with idp_failure(
            f"removing tenant {name!r}'s realm", "; its agents are revoked", "retry the delete when Keycloak is up"
        ):
            if await self.context.adapter.realm_exists(name):
                await self.context.adapter.delete_realm(name)
        with idp_failure(
            f"wiping tenant {name!r}'s Hydra", "; its agents are revoked", "retry the delete when its Hydra is up"
        ):
            await self.context.adapter.give_back(name)
        now = self.context.clock.now()
        with self.context.session() as session:
            tenant = session.get(Tenant, name)
            assert tenant is not None
            tenant.deleted_at = now
            audit.record(
                session, tenant=name, actor=principal.actor, action="tenant.deleted", at=now, before={"tenant": name}
            )

    async def _give_back_quietly(self, name: str) -> None:
        try:
            await self.context.adapter.give_back(name)
        except IDP_FAILURES:
            log.warning("could not wipe a half-made tenant's Hydra", extra={"tenant": name})

    async def _remove_realm_quietly(self, name: str) -> None:
        try:
            if await self.context.adapter.realm_exists(name):
                await self.context.adapter.delete_realm(name)
        except IDP_FAILURES:
            log.warning("could not remove a half-made tenant realm", extra={"tenant": name})

    async def create_admin(self, principal: Principal, tenant: str, admin: AdminSpec) -> schemas.IssuedAdmin:
        """Add a human admin to a tenant; an admin of the tenant needs MFA for it."""
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
        if not principal.is_operator:
            self.context.require_mfa(principal, "adding a tenant admin")
        with idp_failure(f"adding admin {admin.username!r}", "", "retry"):
            issued = await self._create_admin(tenant, admin)
        with self.context.session() as session:
            audit.record(
                session,
                tenant=tenant,
                actor=principal.actor,
                action="tenant.admin_added",
                at=self.context.now(tenant),
                after={"username": admin.username, "otp": admin.otp},
            )
        return issued

    async def _create_admin(self, tenant: str, admin: AdminSpec) -> schemas.IssuedAdmin:
        return await self.create_person(tenant, admin.username, admin.otp, [TENANT_ADMIN_ROLE], "admin")

    async def create_person(
        self, tenant: str, username: str, otp: bool, roles: list[str], kind: str
    ) -> schemas.IssuedAdmin:
        """A user of the tenant realm with a new password, these realm roles and, with ``otp``, a TOTP secret."""
        if not NAME.match(username):
            raise BadRequest(f"{kind} username {username!r} is not valid", "use lowercase letters, digits, dashes")
        password = secrets.token_urlsafe(18)
        raw_otp = secrets.token_urlsafe(20) if otp else None
        await self.context.adapter.create_tenant_user(
            tenant, username, password, raw_otp, roles=roles, last_name=f"{tenant} {kind}"
        )
        if raw_otp is None:
            return schemas.IssuedAdmin(username=username, password=password, otp_secret=None)
        base32 = otp_base32(raw_otp)
        return schemas.IssuedAdmin(
            username=username,
            password=password,
            otp_secret=base32,
            otpauth_uri=f"otpauth://totp/{tenant}:{username}?secret={base32}&issuer={tenant}",
        )

    def list_tenants(self, principal: Principal) -> list[schemas.TenantOut]:
        with self.context.session() as session:
            tenants = session.scalars(select(Tenant).where(Tenant.deleted_at.is_(None)).order_by(Tenant.name))
            return [
                schemas.TenantOut(
                    tenant=t.name,
                    issuer=t.issuer,
                    idp=t.agents_idp,
                    agents_issuer=t.agents_issuer or t.issuer,
                    created_at=t.created_at.isoformat(),
                )
                for t in tenants
                if principal.is_operator or principal.tenant == t.name
            ]

    def tenant_issuers(self) -> dict[str, str]:
        """The tenants' realms (where their people log in), by issuer."""
        with self.context.session() as session:
            tenants = session.scalars(select(Tenant).where(Tenant.deleted_at.is_(None)))
            return {tenant.issuer: tenant.name for tenant in tenants}

    def agent_issuers(self) -> dict[str, str]:
        """The issuers of the tenants' agents' tokens (a Hydra, or the realm), by issuer: what MCP servers trust."""
        with self.context.session() as session:
            tenants = session.scalars(select(Tenant).where(Tenant.deleted_at.is_(None)))
            return {tenant.agents_issuer or tenant.issuer: tenant.name for tenant in tenants}

    def register_resource_server(
        self, principal: Principal | None, url: str, events_url: str | None
    ) -> schemas.ResourceServerOut:
        if principal is not None and not principal.is_operator:
            raise Forbidden("only the platform operator registers resource servers", "ask the operator")
        for value in (url, events_url):
            if value is not None and not value.startswith(("http://", "https://")):
                raise BadRequest(f"{value!r} is not an http(s) URL", "give the server's canonical URL")
        now = self.context.clock.now()
        with self.context.session() as session:
            server = session.get(ResourceServer, url)
            if server is None:
                session.add(ResourceServer(url=url, events_url=events_url, created_at=now))
            elif server.events_url == events_url:
                return schemas.ResourceServerOut(url=url, events_url=events_url)
            else:
                server.events_url = events_url
            audit.record(
                session,
                tenant=audit.PLATFORM,
                actor=principal.actor if principal else SYSTEM,
                action="resource_server.registered",
                at=now,
                after={"url": url, "events_url": events_url},
            )
        return schemas.ResourceServerOut(url=url, events_url=events_url)

    def unregister_resource_server(self, principal: Principal, url: str) -> None:
        """Forget a resource server: new agents no longer get it as audience; it gets no more events."""
        if not principal.is_operator:
            raise Forbidden("only the platform operator unregisters resource servers", "ask the operator")
        with self.context.session() as session:
            server = session.get(ResourceServer, url)
            if server is None:
                raise NotFound(f"no resource server {url!r}", "list them with GET /resource-servers")
            session.delete(server)
            audit.record(
                session,
                tenant=audit.PLATFORM,
                actor=principal.actor,
                action="resource_server.unregistered",
                at=self.context.clock.now(),
                before={"url": url},
            )

    def resource_servers(self) -> list[schemas.ResourceServerOut]:
        with self.context.session() as session:
            servers = self.context.registered_servers(session).values()
            return [schemas.ResourceServerOut(url=s.url, events_url=s.events_url) for s in servers]
