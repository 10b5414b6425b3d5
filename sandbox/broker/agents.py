"""Agents: provisioning (with compensation when the IdP fails halfway), role changes, approval."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.base import IDP_FAILURES, NAME, SYSTEM, BrokerContext, agent_out, idp_failure, why
from sandbox.broker.credentials import key_fingerprint, public_jwk, secret_fingerprint
from sandbox.broker.errors import (
    BadRequest,
    BrokerError,
    Conflict,
    Forbidden,
    IdpFailed,
    PolicyRefused,
    StorageFailed,
)
from sandbox.broker.specs import ProvisionRequest
from sandbox.broker.store import (
    LIVE,
    Agent,
    Credential,
    StorageConflict,
)
from sandbox.idp.provider import BINDINGS, AgentClientSpec

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """The agent left ``provisioning`` while its provision was still under way (housekeeping undid it)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class Steps:
    """Milliseconds from the start of a piece of work to the end of each of its steps."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.ms: dict[str, float] = {}

    def done(self, name: str) -> None:
        self.ms[name] = round((time.perf_counter() - self.began) * 1000, 3)


class AgentService:
    """Agents: listing, policy checks, provisioning (and undoing a failed or interrupted one), role changes and
    approvals."""

    def __init__(self, context: BrokerContext) -> None:
        self.context = context

    def list_agents(self, principal: Principal, tenant: str, status: str | None = None) -> list[schemas.AgentOut]:
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            query = select(Agent).where(Agent.tenant == tenant).order_by(Agent.created_at)
            if status:
                query = query.where(Agent.status == status)
            return [agent_out(agent) for agent in session.scalars(query)]

    def get_agent(self, principal: Principal, tenant: str, agent_id: str) -> schemas.AgentOut:
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            return agent_out(self.context.visible_agent(session, principal, agent_id, tenant))

    def check_request(self, request: ProvisionRequest) -> list[str]:
        """Every policy and input problem of a provisioning request (empty when it may go ahead)."""
        problems = [
            str(v)
            for v in self.context.policy.check(
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
        if request.binding not in BINDINGS:
            problems.append(f"binding: {request.binding!r} is not one of {', '.join(BINDINGS)}")
        return problems

    def check_many(
        self, principal: Principal, tenant: str, requests: list[ProvisionRequest]
    ) -> list[schemas.PolicyCheckOut]:
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
        return [schemas.PolicyCheckOut(name=r.name, violations=self.check_request(r)) for r in requests]

    async def provision(self, principal: Principal, tenant: str, request: ProvisionRequest) -> schemas.Provisioned:
        steps = Steps()
        try:
            agent, jwk, needs_approval, now = self._record_provisioning(principal, tenant, request)
        except StorageFailed as exc:
            if isinstance(exc.__cause__, StorageConflict):  # another broker process took the name a moment ago
                raise Conflict(
                    f"tenant {tenant!r} already has an agent named {request.name!r} (provisioned at the same moment)",
                    "pick another name, or revoke that agent first",
                ) from exc
            raise
        steps.done("provisioning_recorded")
        return await self._create_client(principal, tenant, request, agent, jwk, needs_approval, now, steps)

    def _record_provisioning(
        self, principal: Principal, tenant: str, request: ProvisionRequest
    ) -> tuple[Agent, dict[str, Any] | None, bool, datetime]:
        """Check the request and record the agent as ``provisioning``: from here on its name is taken."""
        problems = self.check_request(request)
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            if problems:
                unknown_role = request.role not in self.context.policy.roles
                raise PolicyRefused(
                    f"agent {request.name!r} refused: {'; '.join(problems)}",
                    "see the roles with `mcp-sandbox agents roles`" if unknown_role else "fix the request",
                    violations=problems,
                )
            if self.context.policy.needs_mfa(request.environment):
                self.context.require_mfa(principal, f"creating an agent in {request.environment}")
            jwk = public_jwk(request.jwk) if request.credential_type == "private_key_jwt" else None
            registered = self.context.registered_servers(session)
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
            role = self.context.policy.roles[request.role]
            needs_approval = role.needs_approval(request.environment)
            now = self.context.now(tenant)
            agent = Agent(
                tenant=tenant,
                name=request.name,
                owner=request.owner,
                role=request.role,
                environment=request.environment,
                mode=request.mode,
                credential_type=request.credential_type,
                binding=request.binding,
                client_id="",
                status="provisioning",
                scopes=role.scopes(request.environment),
                audiences=servers,
                token_lifetime=request.token_lifetime or role.token_lifetime(request.environment),
                attributes=dict(request.metadata),
                source=request.source,
                zone=self.context.policy.zone_for(request.role, request.environment),
                requested_by=principal.subject,
                requested_by_name=principal.actor,
                created_at=now,
            )
            session.add(agent)
            session.flush()
            agent.client_id = f"agent-{request.name}-{agent.id[:8]}"
        return agent, jwk, needs_approval, now

    async def _create_client(
        self,
        principal: Principal,
        tenant: str,
        request: ProvisionRequest,
        agent: Agent,
        jwk: dict[str, Any] | None,
        needs_approval: bool,
        now: datetime,
        steps: Steps,
    ) -> schemas.Provisioned:
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
            token_exchange=request.mode == "delegated",
            binding=request.binding,  # type: ignore[arg-type]
            zone=agent.zone,
        )
        try:
            token_endpoint = await self.context.adapter.token_endpoint(tenant)
            client = await self.context.adapter.create_agent_client(tenant, spec)
            if request.mode == "delegated":
                await self.context.adapter.add_delegation_scope(tenant, agent.client_id, request.name)
        except IDP_FAILURES as exc:
            raise await self._undo_provision(agent, principal, exc) from exc
        steps.done("idp_client_created")
        status = "pending_approval" if needs_approval else "active"
        fingerprint = key_fingerprint(jwk) if jwk else secret_fingerprint(client.secret or "")
        try:
            with self.context.session() as session:
                stored = session.get(Agent, agent.id)
                assert stored is not None
                if stored.status != "provisioning":  # housekeeping took it for interrupted and undid it meanwhile
                    raise Interrupted(stored.status)
                stored.idp_id = client.id
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
                public = agent_out(stored)
            steps.done("status_recorded")
        except Interrupted as exc:
            await self._remove_quietly(tenant, client.id, agent.client_id, request.mode)
            raise Conflict(
                f"provisioning agent {request.name!r} took so long that it was recorded as {exc.status}; "
                f"its {self.context.idp_title(tenant)} client was removed again",
                "provision it again",
            ) from exc
        except StorageFailed as exc:
            try:
                await self.context.adapter.delete_client(tenant, client.id)
                if request.mode == "delegated":
                    await self.context.adapter.remove_delegation_scope(tenant, agent.client_id)
                undone = f"the {self.context.idp_title(tenant)} client was removed again; nothing was kept"
            except IDP_FAILURES:
                undone = f"the {self.context.idp_title(tenant)} client could not be removed; remove it by hand"
            raise StorageFailed(f"{exc.cause} while recording agent {request.name!r}; {undone}", exc.fix) from exc
        log.info("agent provisioned", extra={"tenant": tenant, "agent": agent.id, "status": status})
        return schemas.Provisioned(
            agent=public,
            status=status,
            credential=schemas.CredentialOut(
                type=request.credential_type,
                client_id=agent.client_id,
                client_secret=client.secret,  # shown once; the broker keeps only its fingerprint
                key_id=jwk["kid"] if jwk else None,
                token_endpoint=token_endpoint,
                issuer=self.context.agents_issuer(tenant),
            ),
            # How long each step took from the start of the work, in ms: what a slow provision spent its time on.
            steps_ms=steps.ms,
        )

    async def _remove_quietly(self, tenant: str, idp_id: str, client_id: str, mode: str) -> None:
        try:
            await self.context.adapter.delete_client(tenant, idp_id)
            if mode == "delegated":
                await self.context.adapter.remove_delegation_scope(tenant, client_id)
        except IDP_FAILURES as exc:
            log.warning(
                "leftover client not removed", extra={"tenant": tenant, "client": client_id, "reason": why(exc)}
            )

    async def recover_interrupted_provisions(self) -> int:
        """Undo provisions a stopped broker left ``provisioning`` for longer than ``broker_interrupted_after``:
        the IdP's client (if any was made) is removed and the agent recorded ``failed``, so the name is free."""
        limit = self.context.settings.broker_interrupted_after
        with self.context.session() as session:
            stuck = [
                a.id
                for a in session.scalars(select(Agent).where(Agent.status == "provisioning"))
                if (self.context.now(a.tenant) - a.created_at).total_seconds() > limit
            ]
        recovered = 0
        for agent_id in stuck:
            async with self.context.agent_lock(agent_id):
                with self.context.session() as session:
                    agent = session.get(Agent, agent_id)
                    if agent is None or agent.status != "provisioning":
                        continue
                await self._undo_provision(agent, None, Interrupted("interrupted"), interrupted=True)
                recovered += 1
        return recovered

    async def _undo_provision(
        self, agent: Agent, principal: Principal | None, failure: BaseException, *, interrupted: bool = False
    ) -> BrokerError:
        """Compensate a provision the IdP failed halfway; say what is left."""
        idp = self.context.idp_title(agent.tenant)
        try:
            leftover = await self.context.adapter.find_client(agent.tenant, agent.client_id)
            if leftover:
                await self.context.adapter.delete_client(agent.tenant, leftover)
            if agent.mode == "delegated":
                await self.context.adapter.remove_delegation_scope(agent.tenant, agent.client_id)
            cleanup_pending = False
            outcome = f"nothing was left in {idp}"
        except IDP_FAILURES:
            cleanup_pending = True
            outcome = f"any half-made {idp} client will be removed once {idp} answers"
        with self.context.session() as session:
            stored = session.get(Agent, agent.id)
            assert stored is not None
            stored.status = "failed"
            stored.cleanup_pending = cleanup_pending
            audit.record(
                session,
                tenant=agent.tenant,
                agent_id=agent.id,
                actor=principal.actor if principal else SYSTEM,
                action="agent.provision_failed",
                at=self.context.now(agent.tenant),
                before={"status": "provisioning"},
                after={"status": "failed", "cleanup_pending": cleanup_pending},
                reason=f"interrupted: no result within {self.context.settings.broker_interrupted_after:.0f}s "
                "(the broker stopped mid-way)"
                if interrupted
                else why(failure),
            )
        return IdpFailed(
            f"the IdP failed while provisioning agent {agent.name!r} ({why(failure)}); {outcome}; "
            "the agent is recorded as failed",
            f"retry the provision when {idp} is up (`mcp-sandbox status`)",
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
    ) -> schemas.AgentOut:
        async with self.context.agent_lock(agent_id):
            return await self._change_role(principal, tenant, agent_id, role_name, environment, reason)

    async def _change_role(
        self, principal: Principal, tenant: str, agent_id: str, role_name: str, environment: str | None, reason: str
    ) -> schemas.AgentOut:
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agent = self.context.visible_agent(session, principal, agent_id, tenant)
            environment = environment or agent.environment
            if agent.status not in ("active", "rotating"):
                raise Conflict(f"agent {agent.name!r} is {agent.status}", "only active agents change role")
            problems = self.context.policy.check(
                role=role_name, environment=environment, credential_type=agent.credential_type
            )
            if problems:
                raise PolicyRefused(
                    f"role change refused: {'; '.join(map(str, problems))}",
                    "pick a role and environment the policy allows",
                    violations=[str(p) for p in problems],
                )
            role = self.context.policy.roles[role_name]
            if role.needs_approval(environment):
                raise PolicyRefused(
                    f"role {role_name!r} in {environment} needs approval, which a role change cannot get",
                    "provision a new agent with that role; it waits for a second admin's approval",
                )
            zone = self.context.policy.zone_for(role_name, environment)
            if zone != agent.zone:
                raise PolicyRefused(
                    f"role {role_name!r} in {environment} is limited to network zone {zone or '(none)'}, and agent "
                    f"{agent.name!r} to {agent.zone or '(none)'}: a role change cannot move an agent between zones",
                    "provision a new agent with that role and environment",
                )
            if self.context.policy.needs_mfa(environment) or self.context.policy.needs_mfa(agent.environment):
                self.context.require_mfa(principal, f"changing the role of an agent in {environment}")
            before = {"role": agent.role, "environment": agent.environment, "scopes": list(agent.scopes)}
            scopes = role.scopes(environment)
            idp_id = agent.idp_id
        with idp_failure(
            f"changing the role of agent {agent_id}", "; the role was not changed", "retry when the IdP is up"
        ):
            await self.context.adapter.set_default_scopes(tenant, idp_id or "", scopes)

        def change(_: Session, stored: Agent, __: datetime) -> None:
            stored.role, stored.environment, stored.scopes = role_name, environment, scopes

        after = {"role": role_name, "environment": environment, "scopes": scopes}
        return self.context.change_agent(
            principal, tenant, agent_id, "agent.role_changed", change, before, after, reason
        )

    async def approve(self, principal: Principal, tenant: str, agent_id: str, reason: str = "") -> schemas.AgentOut:
        async with self.context.agent_lock(agent_id):
            return await self._approve(principal, tenant, agent_id, reason)

    async def _approve(self, principal: Principal, tenant: str, agent_id: str, reason: str) -> schemas.AgentOut:
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agent = self.context.visible_agent(session, principal, agent_id, tenant)
            if principal.is_operator:
                raise Forbidden("approvals are made by a tenant admin", "log in as another admin of the tenant")
            if agent.status != "pending_approval":
                raise Conflict(f"agent {agent.name!r} is {agent.status}, not pending_approval", "nothing to approve")
            self.context.require_mfa(principal, "approving an agent")
            if principal.subject == agent.requested_by:
                raise Forbidden(
                    f"{principal.username} requested agent {agent.name!r} and cannot approve it",
                    "another admin of the tenant must approve it",
                )
            idp_id = agent.idp_id or ""
        with idp_failure("approving", "; still pending", "retry"):
            await self.context.adapter.set_client_enabled(tenant, idp_id, True)

        def approved(_: Session, stored: Agent, now: datetime) -> None:
            stored.status, stored.approved_by, stored.activated_at = "active", principal.actor, now

        pending, active = {"status": "pending_approval"}, {"status": "active"}
        return self.context.change_agent(
            principal, tenant, agent_id, "agent.approved", approved, pending, active, reason
        )

    async def deny(self, principal: Principal, tenant: str, agent_id: str, reason: str = "") -> schemas.AgentOut:
        async with self.context.agent_lock(agent_id):
            return await self._deny(principal, tenant, agent_id, reason)

    async def _deny(self, principal: Principal, tenant: str, agent_id: str, reason: str) -> schemas.AgentOut:
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agent = self.context.visible_agent(session, principal, agent_id, tenant)
            if agent.status != "pending_approval":
                raise Conflict(f"agent {agent.name!r} is {agent.status}, not pending_approval", "nothing to deny")
            idp_id, client_id, delegated = agent.idp_id or "", agent.client_id, agent.mode == "delegated"
        with idp_failure("denying", "; still pending", "retry"):
            await self.context.adapter.delete_client(tenant, idp_id)
            if delegated:
                await self.context.adapter.remove_delegation_scope(tenant, client_id)

        def rejected(session: Session, stored: Agent, _: datetime) -> None:
            for credential in session.scalars(select(Credential).where(Credential.agent_id == agent_id)):
                session.delete(credential)
            stored.status = "rejected"

        pending, final = {"status": "pending_approval"}, {"status": "rejected"}
        return self.context.change_agent(
            principal, tenant, agent_id, "agent.rejected", rejected, pending, final, reason
        )
