"""The lifecycle of agent identities: every operation the API and the CLI offer, with its audit entry.

Each operation checks the caller, the tenant and the policy before it changes anything. Operations that
span Keycloak and the database are ordered so a failure halfway leaves no half-made agent:

- **provision** records the agent as ``provisioning``, creates the Keycloak client, then records the
  result. If Keycloak fails, the broker deletes whatever client was created (compensation); if Keycloak
  cannot even be asked, the agent is marked ``failed`` with ``cleanup_pending`` and the background task
  removes the leftover client once Keycloak answers. If the database fails after Keycloak succeeded, the
  client is deleted again.
- **revoke** records ``revoking`` first, then disables the client (dead at the token endpoint and for
  introspection), pushes the revocation events, deletes the client and the credential records. If Keycloak
  fails on the way, the agent stays ``revoking``; a second revoke, or the background task, resumes it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from keycloak.exceptions import KeycloakError
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.broker import audit
from sandbox.broker.auth import Principal
from sandbox.broker.clock import Clock
from sandbox.broker.configs import allowed_tools, credential_reference, mcp_client_config
from sandbox.broker.credentials import key_fingerprint, public_jwk, secret_fingerprint
from sandbox.broker.errors import (
    BadRequest,
    BrokerError,
    Conflict,
    Forbidden,
    IdpFailed,
    MfaRequired,
    NotFound,
    PolicyRefused,
    StorageFailed,
)
from sandbox.broker.events import Delivery, SigningKey, push, revocation_event
from sandbox.broker.policy import Policy
from sandbox.broker.store import (
    Agent,
    Credential,
    Database,
    GeneratedConfig,
    ResourceServer,
    StorageError,
    Tenant,
    UsageEvent,
)
from sandbox.config import Settings
from sandbox.idp.keycloak import AgentClientSpec, IdpUnavailable, KeycloakAdapter
from sandbox.stack.keycloak import create_tenant
from sandbox.toolmap import ToolMap

log = logging.getLogger(__name__)

SYSTEM = "broker"
LIVE = ("provisioning", "pending_approval", "active", "rotating", "dormant", "revoking")
FINAL = ("revoked", "rejected", "failed")
MAX_GRACE = 7 * 86400
NAME = re.compile(r"^[a-z][a-z0-9-]{1,47}$")
TENANT_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
KEYCLOAK_FAILURES = (IdpUnavailable, KeycloakError, httpx.HTTPError)


@dataclass(frozen=True)
class ProvisionRequest:
    name: str
    owner: str
    role: str
    environment: str
    mode: str = "autonomous"
    credential_type: str = "client_secret"
    jwk: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    servers: list[str] | None = None
    token_lifetime: int | None = None
    source: str = "api"


@dataclass(frozen=True)
class AdminSpec:
    username: str
    otp: bool = True


def _why(exc: BaseException) -> str:
    if isinstance(exc, IdpUnavailable):
        return exc.cause
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no detail'}"


class BrokerService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        adapter: KeycloakAdapter,
        policy: Policy,
        tools: ToolMap,
        clock: Clock,
        signing_key: SigningKey,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.db = db
        self.adapter = adapter
        self.policy = policy
        self.tools = tools
        self.clock = clock
        self.signing_key = signing_key
        self.http = http
        self._agent_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # Plumbing.
    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self.db.session() as session:
                yield session
        except StorageError as exc:
            raise StorageFailed(exc.cause, exc.fix) from exc

    def tenant_issuers(self) -> dict[str, str]:
        with self._session() as session:
            return {tenant.issuer: tenant.name for tenant in session.scalars(select(Tenant))}

    def _tenant(self, session: Session, principal: Principal, tenant: str) -> Tenant:
        """The tenant, if the caller may see it; another tenant's resources are 404, never 403."""
        found = session.get(Tenant, tenant)
        if found is None or (not principal.is_operator and principal.tenant != tenant):
            raise NotFound(f"no tenant {tenant!r}", "check the tenant name; an admin sees only their own tenant")
        return found

    def _agent(self, session: Session, principal: Principal, agent_id: str, tenant: str | None = None) -> Agent:
        agent = session.get(Agent, agent_id)
        visible = agent is not None and (principal.is_operator or principal.tenant == agent.tenant)
        if agent is None or not visible or (tenant is not None and agent.tenant != tenant):
            raise NotFound(f"no agent {agent_id!r}", "list the tenant's agents with `mcp-sandbox agents list`")
        return agent

    def _require_mfa(self, principal: Principal, act: str) -> None:
        if not principal.mfa:
            raise MfaRequired(
                f"{act} needs a login that proves MFA (amr contains otp), and this token does not",
                "log in again with your one-time code (`mcp-sandbox admin login`) and retry",
            )

    def _registered_servers(self, session: Session) -> dict[str, ResourceServer]:
        return {server.url: server for server in session.scalars(select(ResourceServer))}

    # Tenants and resource servers.
    async def adopt_tenant(self, name: str, *, check: bool = True) -> bool:
        """Register an existing realm (the stack's sandbox tenants) as a tenant; False if already one.

        ``check=False`` adopts without asking Keycloak (it is down; the stack's configuration vouches for the realm).
        """
        with self._session() as session:
            if session.get(Tenant, name) is not None:
                return False
        if check and not await self.adapter.realm_exists(name):
            return False
        now = self.clock.now()
        with self._session() as session:
            session.add(Tenant(name=name, issuer=self.settings.issuer(name), created_at=now, created_by=SYSTEM))
            audit.record(session, tenant=name, actor=SYSTEM, action="tenant.adopted", at=now, after={"tenant": name})
        return True

    async def create_tenant(self, principal: Principal, name: str, admins: list[AdminSpec]) -> dict[str, Any]:
        if not principal.is_operator:
            raise Forbidden("only the platform operator creates tenants", "ask the operator of this sandbox")
        if not TENANT_NAME.match(name):
            raise BadRequest(f"tenant name {name!r} is not valid", "use 2-31 lowercase letters, digits and dashes")
        if name == "master":
            raise BadRequest("tenant name 'master' is reserved", "pick another name")
        with self._session() as session:
            if session.get(Tenant, name) is not None:
                raise Conflict(f"tenant {name!r} exists", "pick another name")
        try:
            if await self.adapter.realm_exists(name):
                raise Conflict(f"a Keycloak realm {name!r} exists already", "pick another tenant name")
            await create_tenant(self.adapter, self.settings, name)
        except KEYCLOAK_FAILURES as exc:
            await self._remove_realm_quietly(name)
            raise IdpFailed(
                f"Keycloak failed while creating tenant {name!r} ({_why(exc)}); nothing was kept",
                "retry when Keycloak is up (`mcp-sandbox status`)",
            ) from exc
        issued = []
        try:
            for admin in admins:
                issued.append(await self._create_admin(name, admin))
            now = self.clock.now()
            with self._session() as session:
                session.add(
                    Tenant(name=name, issuer=self.settings.issuer(name), created_at=now, created_by=principal.actor)
                )
                audit.record(
                    session,
                    tenant=name,
                    actor=principal.actor,
                    action="tenant.created",
                    at=now,
                    after={"tenant": name, "admins": [a["username"] for a in issued]},
                )
        except (*KEYCLOAK_FAILURES, BrokerError) as exc:
            await self._remove_realm_quietly(name)
            if isinstance(exc, BrokerError):
                raise
            raise IdpFailed(
                f"Keycloak failed while adding tenant {name!r}'s admins ({_why(exc)}); the realm was removed again",
                "retry when Keycloak is up",
            ) from exc
        return {"tenant": name, "issuer": self.settings.issuer(name), "admins": issued}

    async def _remove_realm_quietly(self, name: str) -> None:
        try:
            if await self.adapter.realm_exists(name):
                await self.adapter.delete_realm(name)
        except KEYCLOAK_FAILURES:
            log.warning("could not remove a half-made tenant realm", extra={"tenant": name})

    async def create_admin(self, principal: Principal, tenant: str, admin: AdminSpec) -> dict[str, Any]:
        """Add a human admin to a tenant; an admin of the tenant needs MFA for it."""
        with self._session() as session:
            self._tenant(session, principal, tenant)
        if not principal.is_operator:
            self._require_mfa(principal, "adding a tenant admin")
        try:
            issued = await self._create_admin(tenant, admin)
        except KEYCLOAK_FAILURES as exc:
            raise IdpFailed(f"Keycloak failed while adding admin {admin.username!r} ({_why(exc)})", "retry") from exc
        with self._session() as session:
            audit.record(
                session,
                tenant=tenant,
                actor=principal.actor,
                action="tenant.admin_added",
                at=self.clock.now(),
                after={"username": admin.username, "otp": admin.otp},
            )
        return issued

    async def _create_admin(self, tenant: str, admin: AdminSpec) -> dict[str, Any]:
        if not NAME.match(admin.username):
            raise BadRequest(f"admin username {admin.username!r} is not valid", "use lowercase letters, digits, dashes")
        password = secrets.token_urlsafe(18)
        raw_otp = secrets.token_urlsafe(20) if admin.otp else None
        await self.adapter.create_tenant_admin(tenant, admin.username, password, raw_otp)
        result: dict[str, Any] = {"username": admin.username, "password": password, "otp_secret": None}
        if raw_otp is not None:
            base32 = base64.b32encode(raw_otp.encode()).decode().rstrip("=")
            result["otp_secret"] = base32
            result["otpauth_uri"] = f"otpauth://totp/{tenant}:{admin.username}?secret={base32}&issuer={tenant}"
        return result

    def list_tenants(self, principal: Principal) -> list[dict[str, Any]]:
        with self._session() as session:
            tenants = session.scalars(select(Tenant).order_by(Tenant.name))
            return [
                {"tenant": t.name, "issuer": t.issuer, "created_at": t.created_at.isoformat()}
                for t in tenants
                if principal.is_operator or principal.tenant == t.name
            ]

    def register_resource_server(self, principal: Principal | None, url: str, events_url: str | None) -> dict[str, Any]:
        if principal is not None and not principal.is_operator:
            raise Forbidden("only the platform operator registers resource servers", "ask the operator")
        for value in (url, events_url):
            if value is not None and not value.startswith(("http://", "https://")):
                raise BadRequest(f"{value!r} is not an http(s) URL", "give the server's canonical URL")
        now = self.clock.now()
        with self._session() as session:
            server = session.get(ResourceServer, url)
            if server is None:
                session.add(ResourceServer(url=url, events_url=events_url, created_at=now))
            elif server.events_url == events_url:
                return {"url": url, "events_url": events_url}
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
        return {"url": url, "events_url": events_url}

    def unregister_resource_server(self, principal: Principal, url: str) -> None:
        """Forget a resource server: new agents no longer get it as audience; it gets no more events."""
        if not principal.is_operator:
            raise Forbidden("only the platform operator unregisters resource servers", "ask the operator")
        with self._session() as session:
            server = session.get(ResourceServer, url)
            if server is None:
                raise NotFound(f"no resource server {url!r}", "list them with GET /resource-servers")
            session.delete(server)
            audit.record(
                session,
                tenant=audit.PLATFORM,
                actor=principal.actor,
                action="resource_server.unregistered",
                at=self.clock.now(),
                before={"url": url},
            )

    def resource_servers(self) -> list[dict[str, Any]]:
        with self._session() as session:
            return [{"url": s.url, "events_url": s.events_url} for s in self._registered_servers(session).values()]

    # Agents.
    def list_agents(self, principal: Principal, tenant: str, status: str | None = None) -> list[dict[str, Any]]:
        with self._session() as session:
            self._tenant(session, principal, tenant)
            query = select(Agent).where(Agent.tenant == tenant).order_by(Agent.created_at)
            if status:
                query = query.where(Agent.status == status)
            return [agent.as_public() for agent in session.scalars(query)]

    def get_agent(self, principal: Principal, tenant: str, agent_id: str) -> dict[str, Any]:
        with self._session() as session:
            self._tenant(session, principal, tenant)
            return self._agent(session, principal, agent_id, tenant).as_public()

    def check_request(self, request: ProvisionRequest) -> list[str]:
        """Every policy and input problem of a provisioning request (empty when it may go ahead)."""
        problems = [
            str(v)
            for v in self.policy.check(
                role=request.role,
                environment=request.environment,
                credential_type=request.credential_type,
                token_lifetime=request.token_lifetime,
            )
        ]
        if not NAME.match(request.name):
            problems.append(f"name: {request.name!r} is not valid (2-48 lowercase letters, digits, dashes)")
        if request.mode not in ("autonomous", "delegated"):
            problems.append(f"mode: {request.mode!r} is not autonomous or delegated")
        if request.credential_type == "private_key_jwt" and request.jwk is None:
            problems.append("jwk: private_key_jwt needs the agent's public JWK")
        return problems

    def check_many(self, principal: Principal, tenant: str, requests: list[ProvisionRequest]) -> list[dict[str, Any]]:
        with self._session() as session:
            self._tenant(session, principal, tenant)
        return [{"name": r.name, "violations": self.check_request(r)} for r in requests]

    async def provision(self, principal: Principal, tenant: str, request: ProvisionRequest) -> dict[str, Any]:
        problems = self.check_request(request)
        with self._session() as session:
            self._tenant(session, principal, tenant)
            if problems:
                unknown_role = request.role not in self.policy.roles
                raise PolicyRefused(
                    f"agent {request.name!r} refused: {'; '.join(problems)}",
                    "see the roles with `mcp-sandbox agents roles`" if unknown_role else "fix the request",
                    violations=problems,
                )
            if self.policy.needs_mfa(request.environment):
                self._require_mfa(principal, f"creating an agent in {request.environment}")
            jwk = public_jwk(request.jwk) if request.credential_type == "private_key_jwt" else None
            registered = self._registered_servers(session)
            servers = request.servers if request.servers is not None else sorted(registered)
            unknown = [s for s in servers if s not in registered]
            if unknown or not servers:
                raise BadRequest(
                    f"unknown MCP server(s) {unknown}" if unknown else "no MCP server is registered",
                    f"choose among the registered servers: {sorted(registered)}",
                )
            taken = session.scalars(
                select(Agent).where(Agent.tenant == tenant, Agent.name == request.name, Agent.status.in_(LIVE))
            ).first()
            if taken is not None:
                raise Conflict(
                    f"tenant {tenant!r} already has an agent named {request.name!r} ({taken.id})",
                    "pick another name, or revoke that agent first",
                )
            role = self.policy.roles[request.role]
            needs_approval = role.needs_approval(request.environment)
            now = self.clock.now()
            agent = Agent(
                tenant=tenant,
                name=request.name,
                owner=request.owner,
                role=request.role,
                environment=request.environment,
                mode=request.mode,
                credential_type=request.credential_type,
                client_id="",
                status="provisioning",
                scopes=role.scopes(request.environment),
                audiences=servers,
                token_lifetime=request.token_lifetime or role.max_token_lifetime,
                attributes=dict(request.metadata),
                source=request.source,
                requested_by=principal.subject,
                requested_by_name=principal.actor,
                created_at=now,
            )
            session.add(agent)
            session.flush()
            agent.client_id = f"agent-{request.name}-{agent.id[:8]}"
        spec = AgentClientSpec(
            client_id=agent.client_id,
            name=f"{request.name} ({tenant}, {request.role}/{request.environment}, owner {request.owner})",
            scopes=agent.scopes,
            audiences=agent.audiences,
            token_lifetime=agent.token_lifetime,
            credential=request.credential_type,  # type: ignore[arg-type]
            jwks={"keys": [jwk]} if jwk else None,
            attributes={"mcp-sandbox.agent-id": agent.id, "mcp-sandbox.tenant": tenant},
            enabled=not needs_approval,
        )
        try:
            client = await self.adapter.create_agent_client(tenant, spec)
        except KEYCLOAK_FAILURES as exc:
            raise await self._undo_provision(agent, principal, exc) from exc
        status = "pending_approval" if needs_approval else "active"
        fingerprint = key_fingerprint(jwk) if jwk else secret_fingerprint(client.secret or "")
        try:
            with self._session() as session:
                stored = session.get(Agent, agent.id)
                assert stored is not None
                stored.keycloak_id = client.id
                stored.service_account_id = client.service_account_id
                stored.status = status
                stored.activated_at = None if needs_approval else now
                session.add(
                    Credential(
                        agent_id=agent.id,
                        kind=request.credential_type,
                        fingerprint=fingerprint,
                        public_jwk=jwk,
                        state="current",
                        created_at=now,
                    )
                )
                audit.record(
                    session,
                    tenant=tenant,
                    agent_id=agent.id,
                    actor=principal.actor,
                    action="agent.provisioned",
                    at=now,
                    before={},
                    after={**stored.as_public(), "credential": fingerprint},
                    reason=str(request.metadata.get("reason", "")),
                )
                public = stored.as_public()
        except StorageFailed as exc:
            try:
                await self.adapter.delete_client(tenant, client.id)
                undone = "the Keycloak client was removed again; nothing was kept"
            except KEYCLOAK_FAILURES:
                undone = "the Keycloak client could not be removed; remove it by hand"
            raise StorageFailed(f"{exc.cause} while recording agent {request.name!r}; {undone}", exc.fix) from exc
        log.info("agent provisioned", extra={"tenant": tenant, "agent": agent.id, "status": status})
        return {
            "agent": public,
            "status": status,
            "credential": {
                "type": request.credential_type,
                "client_id": agent.client_id,
                "client_secret": client.secret,  # shown once; the broker keeps only its fingerprint
                "key_id": jwk["kid"] if jwk else None,
                "token_endpoint": f"{self.settings.issuer(tenant)}/protocol/openid-connect/token",
                "issuer": self.settings.issuer(tenant),
            },
        }

    async def _undo_provision(self, agent: Agent, principal: Principal, failure: BaseException) -> BrokerError:
        """Compensate a provision Keycloak failed halfway; say what is left."""
        try:
            leftover = await self.adapter.find_client(agent.tenant, agent.client_id)
            if leftover:
                await self.adapter.delete_client(agent.tenant, leftover)
            cleanup_pending = False
            outcome = "nothing was left in Keycloak"
        except KEYCLOAK_FAILURES:
            cleanup_pending = True
            outcome = "any half-made Keycloak client will be removed once Keycloak answers"
        with self._session() as session:
            stored = session.get(Agent, agent.id)
            assert stored is not None
            stored.status = "failed"
            stored.cleanup_pending = cleanup_pending
            audit.record(
                session,
                tenant=agent.tenant,
                agent_id=agent.id,
                actor=principal.actor,
                action="agent.provision_failed",
                at=self.clock.now(),
                before={"status": "provisioning"},
                after={"status": "failed", "cleanup_pending": cleanup_pending},
                reason=_why(failure),
            )
        return IdpFailed(
            f"Keycloak failed while provisioning agent {agent.name!r} ({_why(failure)}); {outcome}; "
            "the agent is recorded as failed",
            "retry the provision when Keycloak is up (`mcp-sandbox status`)",
            compensated=not cleanup_pending,
        )

    async def change_role(
        self,
        principal: Principal,
        tenant: str,
        agent_id: str,
        role_name: str,
        environment: str | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        with self._session() as session:
            self._tenant(session, principal, tenant)
            agent = self._agent(session, principal, agent_id, tenant)
            environment = environment or agent.environment
            if agent.status not in ("active", "rotating"):
                raise Conflict(f"agent {agent.name!r} is {agent.status}", "only active agents change role")
            problems = self.policy.check(role=role_name, environment=environment, credential_type=agent.credential_type)
            if problems:
                raise PolicyRefused(
                    f"role change refused: {'; '.join(map(str, problems))}",
                    "pick a role and environment the policy allows",
                    violations=[str(p) for p in problems],
                )
            role = self.policy.roles[role_name]
            if role.needs_approval(environment):
                raise PolicyRefused(
                    f"role {role_name!r} in {environment} needs approval, which a role change cannot get",
                    "provision a new agent with that role; it waits for a second admin's approval",
                )
            if self.policy.needs_mfa(environment) or self.policy.needs_mfa(agent.environment):
                self._require_mfa(principal, f"changing the role of an agent in {environment}")
            before = {"role": agent.role, "environment": agent.environment, "scopes": list(agent.scopes)}
            scopes = role.scopes(environment)
            keycloak_id = agent.keycloak_id
        try:
            await self.adapter.set_default_scopes(tenant, keycloak_id or "", scopes)
        except KEYCLOAK_FAILURES as exc:
            raise IdpFailed(
                f"Keycloak failed while changing the role of agent {agent_id} ({_why(exc)}); the role was not changed",
                "retry when Keycloak is up",
            ) from exc
        with self._session() as session:
            stored = self._agent(session, principal, agent_id, tenant)
            stored.role, stored.environment, stored.scopes = role_name, environment, scopes
            after = {"role": role_name, "environment": environment, "scopes": scopes}
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=principal.actor,
                action="agent.role_changed",
                at=self.clock.now(),
                before=before,
                after=after,
                reason=reason,
            )
            return stored.as_public()

    def dependencies(self, principal: Principal, tenant: str, agent_id: str) -> dict[str, Any]:
        """What relies on the agent's credential: the MCP servers it has called and the configs made for it."""
        with self._session() as session:
            self._tenant(session, principal, tenant)
            agent = self._agent(session, principal, agent_id, tenant)
            return self._dependencies(session, agent)

    def _dependencies(self, session: Session, agent: Agent) -> dict[str, Any]:
        used = session.execute(
            select(UsageEvent.resource, UsageEvent.at).where(UsageEvent.agent_id == agent.id).order_by(UsageEvent.at)
        ).all()
        last_used: dict[str, datetime] = {}
        for resource, at in used:
            last_used[resource] = at
        configs = session.scalars(
            select(GeneratedConfig).where(GeneratedConfig.agent_id == agent.id).order_by(GeneratedConfig.created_at)
        )
        return {
            "agent_id": agent.id,
            "servers_used": [{"server": s, "last_used": at.isoformat()} for s, at in sorted(last_used.items())],
            "configs": [
                {"path": c.path, "servers": c.servers, "generated_at": c.created_at.isoformat()} for c in configs
            ],
            "audiences": list(agent.audiences),
        }

    async def rotate(
        self,
        principal: Principal,
        tenant: str,
        agent_id: str,
        grace_seconds: int,
        jwk: dict[str, Any] | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        if not 0 <= grace_seconds <= MAX_GRACE:
            raise BadRequest(f"grace of {grace_seconds}s is out of range", f"give 0 to {MAX_GRACE} seconds")
        with self._session() as session:
            self._tenant(session, principal, tenant)
            agent = self._agent(session, principal, agent_id, tenant)
            if agent.status == "rotating":
                raise Conflict(
                    f"agent {agent.name!r} is in a rotation grace until {agent.grace_ends_at}",
                    "end that grace first (`mcp-sandbox agents end-grace`), then rotate again",
                )
            if agent.status not in ("active", "pending_approval"):
                raise Conflict(f"agent {agent.name!r} is {agent.status}", "only active agents rotate")
            if self.policy.needs_mfa(agent.environment):
                self._require_mfa(principal, f"rotating an agent in {agent.environment}")
            dependencies = self._dependencies(session, agent)
            current = session.scalars(
                select(Credential).where(Credential.agent_id == agent.id, Credential.state == "current")
            ).first()
            old_jwk = current.public_jwk if current else None
            keycloak_id = agent.keycloak_id or ""
            kind = agent.credential_type
        new_jwk = None
        secret = None
        try:
            if kind == "client_secret":
                if jwk is not None:
                    raise BadRequest("a client_secret agent rotates to a new secret, not a key", "omit the jwk")
                secret = await self.adapter.rotate_client_secret(tenant, keycloak_id, grace_seconds)
            else:
                if jwk is None:
                    raise BadRequest("rotating a private_key_jwt agent needs its new public JWK", "send jwk")
                new_jwk = public_jwk(jwk)
                if old_jwk and new_jwk["kid"] == old_jwk["kid"]:
                    raise BadRequest("the new key has the same kid as the current one", "give the new key its own kid")
                keys = [old_jwk, new_jwk] if (old_jwk and grace_seconds > 0) else [new_jwk]
                await self.adapter.set_client_jwks(tenant, keycloak_id, {"keys": keys})
        except KEYCLOAK_FAILURES as exc:
            raise IdpFailed(
                f"Keycloak failed while rotating agent {agent_id} ({_why(exc)}); the old credential stays as it was",
                "retry when Keycloak is up",
            ) from exc
        now = self.clock.now()
        grace_ends = now + timedelta(seconds=grace_seconds) if grace_seconds > 0 else None
        fingerprint = key_fingerprint(new_jwk) if new_jwk else secret_fingerprint(secret or "")
        with self._session() as session:
            stored = self._agent(session, principal, agent_id, tenant)
            for credential in session.scalars(select(Credential).where(Credential.agent_id == agent_id)):
                if credential.state == "current" and grace_ends:
                    credential.state, credential.not_after = "previous", grace_ends
                else:
                    session.delete(credential)
            session.add(
                Credential(
                    agent_id=agent_id,
                    kind=kind,
                    fingerprint=fingerprint,
                    public_jwk=new_jwk,
                    state="current",
                    created_at=now,
                )
            )
            before_status = stored.status
            if stored.status == "active" and grace_ends:
                stored.status = "rotating"
            stored.grace_ends_at = grace_ends
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=principal.actor,
                action="agent.rotated",
                at=now,
                before={"status": before_status},
                after={
                    "status": stored.status,
                    "credential": fingerprint,
                    "grace_ends_at": grace_ends.isoformat() if grace_ends else None,
                },
                reason=reason,
            )
            public = stored.as_public()
        return {
            "agent": public,
            "dependencies": dependencies,
            "grace_ends_at": grace_ends.isoformat() if grace_ends else None,
            "credential": {
                "type": kind,
                "client_id": public["client_id"],
                "client_secret": secret,  # shown once
                "key_id": new_jwk["kid"] if new_jwk else None,
                "token_endpoint": f"{self.settings.issuer(tenant)}/protocol/openid-connect/token",
            },
        }

    async def end_grace(
        self, principal: Principal | None, tenant: str, agent_id: str, reason: str = ""
    ) -> dict[str, Any]:
        """Reject the old credential now (or, from the background task, when the grace has run out)."""
        async with self._agent_locks[agent_id]:
            return await self._end_grace(principal, tenant, agent_id, reason)

    async def _end_grace(self, principal: Principal | None, tenant: str, agent_id: str, reason: str) -> dict[str, Any]:
        with self._session() as session:
            agent = session.get(Agent, agent_id)
            if principal is not None:
                self._tenant(session, principal, tenant)
                agent = self._agent(session, principal, agent_id, tenant)
            if agent is None or agent.status != "rotating":
                raise Conflict(f"agent {agent_id} has no rotation in its grace period", "nothing to end")
            current = session.scalars(
                select(Credential).where(Credential.agent_id == agent_id, Credential.state == "current")
            ).first()
            keycloak_id, kind = agent.keycloak_id or "", agent.credential_type
            current_jwk = current.public_jwk if current else None
        try:
            if kind == "client_secret":
                await self.adapter.end_secret_grace(tenant, keycloak_id)
            elif current_jwk:
                await self.adapter.set_client_jwks(tenant, keycloak_id, {"keys": [current_jwk]})
        except KEYCLOAK_FAILURES as exc:
            raise IdpFailed(
                f"Keycloak failed while ending the grace of agent {agent_id} ({_why(exc)}); the old credential "
                "still works",
                "retry when Keycloak is up",
            ) from exc
        with self._session() as session:
            stored = session.get(Agent, agent_id)
            assert stored is not None
            for credential in session.scalars(
                select(Credential).where(Credential.agent_id == agent_id, Credential.state == "previous")
            ):
                session.delete(credential)
            stored.status, stored.grace_ends_at = "active", None
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=principal.actor if principal else SYSTEM,
                action="agent.grace_ended",
                at=self.clock.now(),
                before={"status": "rotating"},
                after={"status": "active"},
                reason=reason or ("ended early" if principal else "grace period over"),
            )
            return stored.as_public()

    async def approve(self, principal: Principal, tenant: str, agent_id: str, reason: str = "") -> dict[str, Any]:
        with self._session() as session:
            self._tenant(session, principal, tenant)
            agent = self._agent(session, principal, agent_id, tenant)
            if principal.is_operator:
                raise Forbidden("approvals are made by a tenant admin", "log in as another admin of the tenant")
            if agent.status != "pending_approval":
                raise Conflict(f"agent {agent.name!r} is {agent.status}, not pending_approval", "nothing to approve")
            self._require_mfa(principal, "approving an agent")
            if principal.subject == agent.requested_by:
                raise Forbidden(
                    f"{principal.username} requested agent {agent.name!r} and cannot approve it",
                    "another admin of the tenant must approve it",
                )
            keycloak_id = agent.keycloak_id or ""
        try:
            await self.adapter.set_client_enabled(tenant, keycloak_id, True)
        except KEYCLOAK_FAILURES as exc:
            raise IdpFailed(f"Keycloak failed while approving ({_why(exc)}); still pending", "retry") from exc
        now = self.clock.now()
        with self._session() as session:
            stored = self._agent(session, principal, agent_id, tenant)
            stored.status, stored.approved_by, stored.activated_at = "active", principal.actor, now
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=principal.actor,
                action="agent.approved",
                at=now,
                before={"status": "pending_approval"},
                after={"status": "active"},
                reason=reason,
            )
            return stored.as_public()

    async def deny(self, principal: Principal, tenant: str, agent_id: str, reason: str = "") -> dict[str, Any]:
        with self._session() as session:
            self._tenant(session, principal, tenant)
            agent = self._agent(session, principal, agent_id, tenant)
            if agent.status != "pending_approval":
                raise Conflict(f"agent {agent.name!r} is {agent.status}, not pending_approval", "nothing to deny")
            keycloak_id = agent.keycloak_id or ""
        try:
            await self.adapter.delete_client(tenant, keycloak_id)
        except KEYCLOAK_FAILURES as exc:
            raise IdpFailed(f"Keycloak failed while denying ({_why(exc)}); still pending", "retry") from exc
        with self._session() as session:
            stored = self._agent(session, principal, agent_id, tenant)
            for credential in session.scalars(select(Credential).where(Credential.agent_id == agent_id)):
                session.delete(credential)
            stored.status = "rejected"
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=principal.actor,
                action="agent.rejected",
                at=self.clock.now(),
                before={"status": "pending_approval"},
                after={"status": "rejected"},
                reason=reason,
            )
            return stored.as_public()

    # Revocation.
    async def revoke(
        self,
        principal: Principal | None,
        agent_id: str,
        *,
        tenant: str | None = None,
        reason: str = "",
        verify_token: str | None = None,
    ) -> dict[str, Any]:
        """Kill the agent's credentials and tokens everywhere; idempotent (a revoked agent is a no-op).

        One revocation of an agent at a time: a second caller (or the housekeeping resuming it) waits, then
        finds the agent revoked.
        """
        async with self._agent_locks[agent_id]:
            return await self._revoke(principal, agent_id, tenant, reason, verify_token)

    async def _revoke(
        self, principal: Principal | None, agent_id: str, tenant: str | None, reason: str, verify_token: str | None
    ) -> dict[str, Any]:
        now = self.clock.now()
        with self._session() as session:
            if principal is not None:
                if tenant is not None:
                    self._tenant(session, principal, tenant)
                agent = self._agent(session, principal, agent_id, tenant)
            else:
                found = session.get(Agent, agent_id)
                if found is None:
                    raise NotFound(f"no agent {agent_id!r}", "check the id")
                agent = found
            if agent.status in ("revoked", "rejected"):
                return {"agent": agent.as_public(), "already_revoked": True, "events": [], "verification": []}
            previous_status = agent.status  # "revoking" when this resumes an interrupted revocation
            if agent.status != "revoking":
                agent.status, agent.revoked_at, agent.cleanup_pending = "revoking", now, True
            revoked_at = agent.revoked_at or now
            snapshot = agent.as_public()
            keycloak_id = agent.keycloak_id
            tenant = agent.tenant
            servers = self._registered_servers(session)
            targets = [(url, servers[url].events_url if url in servers else None) for url in agent.audiences]
        actor = principal.actor if principal else SYSTEM
        try:
            if keycloak_id:
                await self.adapter.set_client_enabled(tenant, keycloak_id, False)
        except KEYCLOAK_FAILURES as exc:
            if isinstance(exc, KeycloakError) and getattr(exc, "response_code", None) == 404:
                pass  # already gone in Keycloak: nothing can get a token
            else:
                raise IdpFailed(
                    f"Keycloak failed while revoking agent {agent_id} ({_why(exc)}); the revocation is recorded as "
                    "in progress and its credentials may still work until it completes",
                    "revoke again when Keycloak is up (the broker also retries by itself)",
                    status="revoking",
                ) from exc
        deliveries = await self._push_revocation(snapshot, tenant, revoked_at, targets)
        try:
            if keycloak_id:
                await self.adapter.delete_client(tenant, keycloak_id)
        except KEYCLOAK_FAILURES as exc:
            raise IdpFailed(
                f"Keycloak failed while removing agent {agent_id}'s client ({_why(exc)}); the client is disabled, "
                "so its credentials are dead, but removal is pending",
                "revoke again when Keycloak is up (the broker also retries by itself)",
                status="revoking",
                events=[d.as_dict() for d in deliveries],
            ) from exc
        with self._session() as session:
            stored = session.get(Agent, agent_id)
            assert stored is not None
            for credential in session.scalars(select(Credential).where(Credential.agent_id == agent_id)):
                session.delete(credential)
            stored.status, stored.cleanup_pending, stored.grace_ends_at = "revoked", False, None
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=actor,
                action="agent.revoked",
                at=self.clock.now(),
                before={"status": previous_status},
                after={
                    "status": "revoked",
                    "revoked_at": revoked_at.isoformat(),
                    "events": {d.server: d.delivered for d in deliveries},
                },
                reason=reason,
            )
            public = stored.as_public()
        verification = await self._verify_rejected(verify_token, [url for url, _ in targets]) if verify_token else []
        log.info("agent revoked", extra={"tenant": tenant, "agent": agent_id})
        return {
            "agent": public,
            "already_revoked": False,
            "events": [d.as_dict() for d in deliveries],
            "verification": verification,
        }

    async def _push_revocation(
        self, agent: dict[str, Any], tenant: str, revoked_at: datetime, targets: list[tuple[str, str | None]]
    ) -> list[Delivery]:
        with self._session() as session:
            stored = session.get(Agent, agent["id"])
            subject = stored.service_account_id if stored else None
        deliveries = []
        for url, events_url in targets:
            event = revocation_event(
                self.signing_key,
                broker_url=self.settings.broker_url,
                audience=url,
                issuer=self.settings.issuer(tenant),
                subject=subject or "",
                client_id=agent["client_id"],
                revoked_at=int(revoked_at.timestamp()),
            )
            deliveries.append(await push(self.http, url, events_url, event))
        return deliveries

    async def _verify_rejected(self, token: str, servers: list[str]) -> list[dict[str, Any]]:
        """Call each MCP server with the old token: after a revocation each must answer 401."""
        results = []
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "mcp-sandbox-broker-verification", "version": "1"},
            },
        }
        for server in servers:
            try:
                response = await self.http.post(
                    server,
                    json=initialize,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
                )
                results.append(
                    {"server": server, "status": response.status_code, "rejected": response.status_code == 401}
                )
            except httpx.HTTPError as exc:
                results.append({"server": server, "status": None, "rejected": False, "error": type(exc).__name__})
        return results

    # Dormancy.
    async def scan_dormancy(self, principal: Principal | None, tenant: str | None = None) -> dict[str, Any]:
        """Agents with no token and no tool call for their role's dormancy period become dormant (disabled)."""
        now = self.clock.now()
        with self._session() as session:
            if principal is not None and tenant is not None:
                self._tenant(session, principal, tenant)
            query = select(Agent).where(Agent.status == "active")
            if tenant is not None:
                query = query.where(Agent.tenant == tenant)
            candidates = [(a.id, a.tenant, a.client_id, a.role) for a in session.scalars(query)]
        dormant, errors = [], []
        for agent_id, agent_tenant, client_id, role_name in candidates:
            try:
                events = await self.adapter.client_events(agent_tenant, client_id, ("CLIENT_LOGIN",), maximum=1)
            except KEYCLOAK_FAILURES as exc:
                errors.append(f"{agent_id}: {_why(exc)}")
                continue
            role = self.policy.roles.get(role_name)
            days = role.dormancy_days if role else self.policy.default_dormancy_days
            with self._session() as session:
                agent = session.get(Agent, agent_id)
                assert agent is not None
                if events:
                    token_at = datetime.fromtimestamp(events[0]["time"] / 1000, tz=now.tzinfo)
                    if agent.last_token_at is None or token_at > agent.last_token_at:
                        agent.last_token_at = token_at
                last = max(
                    t for t in (agent.activated_at, agent.created_at, agent.last_token_at, agent.last_tool_call_at) if t
                )
                if now - last < timedelta(days=days):
                    continue
                keycloak_id = agent.keycloak_id or ""
            try:
                await self.adapter.set_client_enabled(agent_tenant, keycloak_id, False)
            except KEYCLOAK_FAILURES as exc:
                errors.append(f"{agent_id}: {_why(exc)}")
                continue
            with self._session() as session:
                agent = session.get(Agent, agent_id)
                assert agent is not None
                agent.status, agent.dormant_since = "dormant", now
                audit.record(
                    session,
                    tenant=agent_tenant,
                    agent_id=agent_id,
                    actor=principal.actor if principal else SYSTEM,
                    action="agent.dormant",
                    at=now,
                    before={"status": "active"},
                    after={"status": "dormant", "last_activity": last.isoformat()},
                    reason=f"no token issued and no tool call for {days} days (since {last.isoformat()})",
                )
                dormant.append(agent.as_public())
        return {"dormant": dormant, "errors": errors, "as_of": now.isoformat()}

    def review_queue(self, principal: Principal, tenant: str) -> list[dict[str, Any]]:
        return self.list_agents(principal, tenant, status="dormant")

    async def review(
        self, principal: Principal, tenant: str, agent_id: str, decision: str, reason: str = ""
    ) -> dict[str, Any]:
        if decision not in ("keep", "revoke"):
            raise BadRequest(f"decision {decision!r} is not keep or revoke", "choose keep or revoke")
        with self._session() as session:
            self._tenant(session, principal, tenant)
            agent = self._agent(session, principal, agent_id, tenant)
            if agent.status != "dormant":
                raise Conflict(
                    f"agent {agent.name!r} is {agent.status}, not dormant", "only dormant agents are reviewed"
                )
            keycloak_id = agent.keycloak_id or ""
        if decision == "revoke":
            result = await self.revoke(
                principal, agent_id, tenant=tenant, reason=reason or "dormant; revoked on review"
            )
            return result["agent"]
        try:
            await self.adapter.set_client_enabled(tenant, keycloak_id, True)
        except KEYCLOAK_FAILURES as exc:
            raise IdpFailed(f"Keycloak failed while re-enabling ({_why(exc)}); still dormant", "retry") from exc
        now = self.clock.now()
        with self._session() as session:
            stored = self._agent(session, principal, agent_id, tenant)
            stored.status, stored.dormant_since, stored.activated_at = "active", None, now
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=principal.actor,
                action="agent.review_kept",
                at=now,
                before={"status": "dormant"},
                after={"status": "active"},
                reason=reason,
            )
            return stored.as_public()

    # Usage reports, monitoring, configs, audit.
    def ingest_usage(self, events: list[dict[str, Any]], resource: str | None) -> int:
        """Record tool calls an MCP server reported; unknown agents are kept for the record, unattributed."""
        with self._session() as session:
            tenants = {t.issuer: t.name for t in session.scalars(select(Tenant))}
            stored = 0
            for event in events:
                at = _timestamp(event.get("at"), self.clock.now())
                tenant = tenants.get(str(event.get("issuer")))
                agent = None
                if tenant is not None:
                    agent = session.scalars(
                        select(Agent).where(Agent.tenant == tenant, Agent.client_id == str(event.get("client_id")))
                    ).first()
                session.add(
                    UsageEvent(
                        agent_id=agent.id if agent else None,
                        issuer=str(event.get("issuer", "")),
                        client_id=str(event.get("client_id", "")),
                        resource=str(event.get("resource") or resource or self.settings.mcp_url),
                        tool=str(event.get("tool", "")),
                        allowed=bool(event.get("allowed")),
                        status=int(event.get("status") or 0),
                        at=at,
                    )
                )
                if agent is not None and (agent.last_tool_call_at is None or at > agent.last_tool_call_at):
                    agent.last_tool_call_at = at
                stored += 1
            return stored

    async def monitoring(self, principal: Principal, tenant: str, agent_id: str) -> dict[str, Any]:
        from sandbox.broker.monitoring import agent_report

        with self._session() as session:
            self._tenant(session, principal, tenant)
            agent = self._agent(session, principal, agent_id, tenant)
            usage = list(session.scalars(select(UsageEvent).where(UsageEvent.agent_id == agent_id)))
            public = agent.as_public()
        events: list[dict[str, Any]] = []
        idp_error = None
        if public["status"] not in FINAL:
            try:
                events = await self.adapter.client_events(tenant, public["client_id"])
            except KEYCLOAK_FAILURES as exc:
                idp_error = _why(exc)
        role = self.policy.roles.get(public["role"])
        period = timedelta(days=role.dormancy_days if role else self.policy.default_dormancy_days)
        report = agent_report(public, events, usage, self.tools, now=self.clock.now(), period=period)
        report["idp_error"] = idp_error
        return report

    async def tenant_monitoring(self, principal: Principal, tenant: str) -> list[dict[str, Any]]:
        agents = [a for a in self.list_agents(principal, tenant) if a["status"] not in FINAL]
        return [await self.monitoring(principal, tenant, agent["id"]) for agent in agents]

    def generate_config(
        self,
        principal: Principal,
        tenant: str,
        agent_id: str,
        *,
        path: str | None = None,
        credential_source: str | None = None,
        credential_reference_value: str | None = None,
    ) -> dict[str, Any]:
        if credential_source not in (None, "env", "file"):
            raise BadRequest(f"credential source {credential_source!r} is not env or file", "choose env or file")
        with self._session() as session:
            self._tenant(session, principal, tenant)
            agent = self._agent(session, principal, agent_id, tenant)
            if agent.status in FINAL or agent.status == "revoking":
                raise Conflict(f"agent {agent.name!r} is {agent.status}", "configs are made for live agents only")
            config = mcp_client_config(
                name=agent.name,
                client_id=agent.client_id,
                issuer=self.settings.issuer(tenant),
                servers=list(agent.audiences),
                tools=allowed_tools(self.tools, list(agent.scopes), agent.environment),
                scopes=list(agent.scopes),
                credential=credential_reference(
                    agent.credential_type,
                    agent.name,
                    source=credential_source,  # type: ignore[arg-type]
                    reference=credential_reference_value,
                ),
            )
            now = self.clock.now()
            session.add(GeneratedConfig(agent_id=agent_id, path=path, servers=list(agent.audiences), created_at=now))
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=principal.actor,
                action="agent.config_generated",
                at=now,
                after={"path": path, "servers": list(agent.audiences)},
            )
            return config

    def audit_entries(self, principal: Principal, tenant: str, agent_id: str | None = None) -> list[dict[str, Any]]:
        with self._session() as session:
            self._tenant(session, principal, tenant)
            return [audit.as_dict(entry) for entry in audit.entries(session, tenant, agent_id)]

    # Background work: graces that ran out, revocations and clean-ups Keycloak interrupted.
    async def housekeeping(self) -> dict[str, int]:
        now = self.clock.now()
        done = {"graces_ended": 0, "revocations_resumed": 0, "cleanups": 0}
        with self._session() as session:
            expired = [
                (a.tenant, a.id)
                for a in session.scalars(select(Agent).where(Agent.status == "rotating"))
                if a.grace_ends_at and a.grace_ends_at <= now
            ]
            revoking = [a.id for a in session.scalars(select(Agent).where(Agent.status == "revoking"))]
            leftovers = [
                (a.id, a.tenant, a.client_id)
                for a in session.scalars(select(Agent).where(Agent.status == "failed", Agent.cleanup_pending))
            ]
        for tenant, agent_id in expired:
            try:
                await self.end_grace(None, tenant, agent_id)
                done["graces_ended"] += 1
            except BrokerError as exc:
                log.warning("grace not ended yet", extra={"agent": agent_id, "reason": exc.cause})
        for agent_id in revoking:
            try:
                await self.revoke(None, agent_id, reason="resumed by the broker")
                done["revocations_resumed"] += 1
            except BrokerError as exc:
                log.warning("revocation not resumed yet", extra={"agent": agent_id, "reason": exc.cause})
        for agent_id, tenant, client_id in leftovers:
            try:
                leftover = await self.adapter.find_client(tenant, client_id)
                if leftover:
                    await self.adapter.delete_client(tenant, leftover)
            except KEYCLOAK_FAILURES:
                continue
            with self._session() as session:
                stored = session.get(Agent, agent_id)
                if stored is not None:
                    stored.cleanup_pending = False
            done["cleanups"] += 1
        return done


def _timestamp(value: Any, default: datetime) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=default.tzinfo)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=default.tzinfo)
        except ValueError:
            return default
    return default
