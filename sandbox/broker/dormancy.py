"""Dormancy: idle agents are disabled and queued for review; review keeps or revokes them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.base import IDP_FAILURES, SYSTEM, BrokerContext, agent_out, why
from sandbox.broker.errors import (
    BadRequest,
    Conflict,
)
from sandbox.broker.monitoring import TOKENS_ISSUED
from sandbox.broker.revocation import RevocationService
from sandbox.broker.store import (
    Agent,
)
from sandbox.idp.provider import IdpEvent


class DormancyService:
    """Idle agents made dormant (disabled), and the review that keeps or revokes them."""

    def __init__(self, context: BrokerContext, revocation: RevocationService) -> None:
        self.context = context
        self.revocation = revocation

    async def scan_dormancy(self, principal: Principal | None, tenant: str | None = None) -> schemas.DormancyScan:
        """Agents with no token and no tool call for their role's dormancy period become dormant (disabled).

        Each tenant's agents are judged on the tenant's time; a token (client credentials or a token exchange for
        a user) counts at the tenant's time it was issued (see :meth:`TenantClocks.at`).
        """
        with self.context.session() as session:
            if principal is not None and tenant is not None:
                self.context.visible_tenant(session, principal, tenant)
            query = select(Agent).where(Agent.status == "active")
            if tenant is not None:
                query = query.where(Agent.tenant == tenant)
            candidates = [(a.id, a.tenant, a.client_id, a.role) for a in session.scalars(query)]
        dormant: list[schemas.AgentOut] = []
        errors: list[str] = []
        for agent_id, agent_tenant, client_id, role_name in candidates:
            async with self.context.agent_lock(agent_id):
                made, error = await self._judge(principal, agent_id, agent_tenant, client_id, role_name)
            dormant += [made] if made else []
            errors += [error] if error else []
        return schemas.DormancyScan(dormant=dormant, errors=errors, as_of=self.context.now(tenant).isoformat())

    async def _judge(
        self, principal: Principal | None, agent_id: str, agent_tenant: str, client_id: str, role_name: str
    ) -> tuple[schemas.AgentOut | None, str | None]:
        """Make one agent dormant if it was idle for its role's period: (its public view, or an error)."""
        events: list[IdpEvent] = []
        if self.context.adapter.capabilities(agent_tenant).supports("event_emission"):
            try:
                events = await self.context.adapter.client_events(agent_tenant, client_id, TOKENS_ISSUED, maximum=1)
            except IDP_FAILURES as exc:
                return None, f"{agent_id}: {why(exc)}"
        # else (Hydra keeps no readable records): the judgement rests on the tool calls MCP servers report
        role = self.context.policy.roles.get(role_name)
        days = role.dormancy_days if role else self.context.policy.default_dormancy_days
        now = self.context.now(agent_tenant)
        with self.context.session() as session:
            agent = session.get(Agent, agent_id)
            assert agent is not None
            if agent.status != "active":  # revoked or changed meanwhile
                return None, None
            if events:
                token_at = self.context.clocks.at(agent_tenant, events[0].at)
                if agent.last_token_at is None or token_at > agent.last_token_at:
                    agent.last_token_at = token_at
            last = max(
                t for t in (agent.activated_at, agent.created_at, agent.last_token_at, agent.last_tool_call_at) if t
            )
            if now - last < timedelta(days=days):
                return None, None
            idp_id = agent.idp_id or ""
        try:
            await self.context.adapter.set_client_enabled(agent_tenant, idp_id, False)
        except IDP_FAILURES as exc:
            return None, f"{agent_id}: {why(exc)}"
        with self.context.session() as session:
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
            return agent_out(agent), None

    async def review(
        self, principal: Principal, tenant: str, agent_id: str, decision: str, reason: str = ""
    ) -> schemas.AgentOut:
        if decision not in ("keep", "revoke"):
            raise BadRequest(f"decision {decision!r} is not keep or revoke", "choose keep or revoke")
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agent = self.context.visible_agent(session, principal, agent_id, tenant)
            if agent.status != "dormant":
                raise Conflict(
                    f"agent {agent.name!r} is {agent.status}, not dormant", "only dormant agents are reviewed"
                )
        if decision == "revoke":
            result = await self.revocation.revoke(
                principal, agent_id, tenant=tenant, reason=reason or "dormant; revoked on review"
            )
            return result.agent
        async with self.context.agent_lock(agent_id):
            return await self._keep(principal, tenant, agent_id, reason)

    async def _keep(self, principal: Principal, tenant: str, agent_id: str, reason: str) -> schemas.AgentOut:
        def reset(agent: Agent, now: datetime) -> None:
            agent.dormant_since, agent.activated_at = None, now

        return await self.context.enable_held(
            principal,
            tenant,
            agent_id,
            held="dormant",
            only="nothing to review",  # revoked or kept by another caller meanwhile
            action="agent.review_kept",
            reason=reason,
            reset=reset,
        )
