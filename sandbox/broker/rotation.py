"""Rotation with a grace period, and the dependencies reported before it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.base import MAX_GRACE, SYSTEM, BrokerContext, agent_out, idp_failure
from sandbox.broker.credentials import key_fingerprint, public_jwk, secret_fingerprint
from sandbox.broker.errors import (
    BadRequest,
    Conflict,
)
from sandbox.broker.store import (
    Agent,
    Credential,
    GeneratedConfig,
    UsageEvent,
)


class RotationService:
    """Rotation of an agent's credential with a grace period, and what depends on the credential."""

    def __init__(self, context: BrokerContext) -> None:
        self.context = context

    def dependencies(self, principal: Principal, tenant: str, agent_id: str) -> schemas.Dependencies:
        """What relies on the agent's credential: the MCP servers it has called and the configs made for it."""
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agent = self.context.visible_agent(session, principal, agent_id, tenant)
            return self._dependencies(session, agent)

    def _dependencies(self, session: Session, agent: Agent) -> schemas.Dependencies:
        used = session.execute(
            select(UsageEvent.resource, UsageEvent.at).where(UsageEvent.agent_id == agent.id).order_by(UsageEvent.at)
        ).all()
        last_used: dict[str, datetime] = {}
        for resource, at in used:
            last_used[resource] = at
        configs = session.scalars(
            select(GeneratedConfig).where(GeneratedConfig.agent_id == agent.id).order_by(GeneratedConfig.created_at)
        )
        return schemas.Dependencies(
            agent_id=agent.id,
            servers_used=[{"server": s, "last_used": at.isoformat()} for s, at in sorted(last_used.items())],
            configs=[{"path": c.path, "servers": c.servers, "generated_at": c.created_at.isoformat()} for c in configs],
            audiences=list(agent.audiences),
        )

    async def rotate(
        self,
        principal: Principal | None,
        tenant: str,
        agent_id: str,
        grace_seconds: int,
        jwk: dict[str, Any] | None = None,
        reason: str = "",
    ) -> schemas.Rotated:
        """A new credential; the old one works until the grace ends. One operation on an agent at a time, so a
        revocation that starts meanwhile waits and then revokes the rotated agent (never the reverse).

        ``principal`` None: the broker itself rotates (credential age policy; a client secret only)."""
        async with self.context.agent_lock(agent_id):
            return await self._rotate(principal, tenant, agent_id, grace_seconds, jwk, reason)

    async def _rotate(
        self,
        principal: Principal | None,
        tenant: str,
        agent_id: str,
        grace_seconds: int,
        jwk: dict[str, Any] | None,
        reason: str,
    ) -> schemas.Rotated:
        if not 0 <= grace_seconds <= MAX_GRACE:
            raise BadRequest(f"grace of {grace_seconds}s is out of range", f"give 0 to {MAX_GRACE} seconds")
        with self.context.session() as session:
            agent = self._agent_as(session, principal, agent_id, tenant)
            if agent.status == "rotating":
                raise Conflict(
                    f"agent {agent.name!r} is in a rotation grace until {agent.grace_ends_at}",
                    "end that grace first (`mcp-sandbox agents end-grace`), then rotate again",
                )
            if agent.status not in ("active", "pending_approval"):
                raise Conflict(f"agent {agent.name!r} is {agent.status}", "only active agents rotate")
            if principal is not None and self.context.policy.needs_mfa(agent.environment):
                self.context.require_mfa(principal, f"rotating an agent in {agent.environment}")
            dependencies = self._dependencies(session, agent)
            current = session.scalars(
                select(Credential).where(Credential.agent_id == agent.id, Credential.state == "current")
            ).first()
            old_jwk = current.public_jwk if current else None
            recorded = current.fingerprint if current else None
            idp_id = agent.idp_id or ""
            kind = agent.credential_type
        new_jwk = None
        secret = None
        with idp_failure(
            f"rotating agent {agent_id}", "; the old credential stays as it was", "retry when the IdP is up"
        ):
            token_endpoint = await self.context.adapter.token_endpoint(tenant)
            if kind == "client_secret":
                if jwk is not None:
                    raise BadRequest("a client_secret agent rotates to a new secret, not a key", "omit the jwk")
                secret = await self._new_secret(tenant, idp_id, grace_seconds, recorded)
            else:
                if jwk is None:
                    raise BadRequest("rotating a private_key_jwt agent needs its new public JWK", "send jwk")
                new_jwk = public_jwk(jwk)
                if old_jwk and new_jwk["kid"] == old_jwk["kid"]:
                    raise BadRequest("the new key has the same kid as the current one", "give the new key its own kid")
                keys = [old_jwk, new_jwk] if (old_jwk and grace_seconds > 0) else [new_jwk]
                await self.context.adapter.set_client_jwks(tenant, idp_id, {"keys": keys})
        now = self.context.now(tenant)
        grace_ends = now + timedelta(seconds=grace_seconds) if grace_seconds > 0 else None
        fingerprint = key_fingerprint(new_jwk) if new_jwk else secret_fingerprint(secret or "")
        with self.context.session() as session:
            stored = self._agent_as(session, principal, agent_id, tenant)
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
                actor=principal.actor if principal else SYSTEM,
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
            public = agent_out(stored)
        return schemas.Rotated(
            agent=public,
            dependencies=dependencies,
            grace_ends_at=grace_ends.isoformat() if grace_ends else None,
            credential=schemas.CredentialOut(
                type=kind,
                client_id=public.client_id,
                client_secret=secret,  # shown once
                key_id=new_jwk["kid"] if new_jwk else None,
                token_endpoint=token_endpoint,
                issuer=self.context.agents_issuer(tenant),
            ),
        )

    def _agent_as(self, session: Session, principal: Principal | None, agent_id: str, tenant: str) -> Agent:
        """The agent as ``principal`` may see it; for the broker's own acts (None), the agent of that tenant."""
        if principal is not None:
            self.context.visible_tenant(session, principal, tenant)
            return self.context.visible_agent(session, principal, agent_id, tenant)
        agent = session.get(Agent, agent_id)
        if agent is None or agent.tenant != tenant:
            raise Conflict(f"agent {agent_id} is gone", "nothing to rotate")
        return agent

    async def _new_secret(self, tenant: str, idp_id: str, grace_seconds: int, recorded: str | None) -> str:
        """The IdP's next secret. If the IdP's current secret is not the one recorded, a rotation was interrupted
        after the IdP made its secret (the broker stopped before recording it, so nobody got it): that secret is
        handed out now with this grace, instead of a second one that would end the old secret's grace at once."""
        current = await self.context.adapter.client_secret(tenant, idp_id)
        if recorded is not None and secret_fingerprint(current) != recorded:
            await self.context.adapter.keep_rotated_secret(tenant, idp_id, grace_seconds)
            return current
        return await self.context.adapter.rotate_client_secret(tenant, idp_id, grace_seconds)

    async def end_grace(
        self, principal: Principal | None, tenant: str, agent_id: str, reason: str = ""
    ) -> schemas.AgentOut:
        """Reject the old credential now (or, from the background task, when the grace has run out)."""
        async with self.context.agent_lock(agent_id):
            return await self._end_grace(principal, tenant, agent_id, reason)

    async def _end_grace(
        self, principal: Principal | None, tenant: str, agent_id: str, reason: str
    ) -> schemas.AgentOut:
        with self.context.session() as session:
            agent = session.get(Agent, agent_id)
            if principal is not None:
                self.context.visible_tenant(session, principal, tenant)
                agent = self.context.visible_agent(session, principal, agent_id, tenant)
            if agent is None or agent.status != "rotating":
                raise Conflict(f"agent {agent_id} has no rotation in its grace period", "nothing to end")
            current = session.scalars(
                select(Credential).where(Credential.agent_id == agent_id, Credential.state == "current")
            ).first()
            idp_id, kind = agent.idp_id or "", agent.credential_type
            current_jwk = current.public_jwk if current else None
        with idp_failure(
            f"ending the grace of agent {agent_id}", "; the old credential still works", "retry when the IdP is up"
        ):
            if kind == "client_secret":
                await self.context.adapter.end_secret_grace(tenant, idp_id)
            elif current_jwk:
                await self.context.adapter.set_client_jwks(tenant, idp_id, {"keys": [current_jwk]})
        with self.context.session() as session:
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
                at=self.context.now(tenant),
                before={"status": "rotating"},
                after={"status": "active"},
                reason=reason or ("ended early" if principal else "grace period over"),
            )
            return agent_out(stored)
