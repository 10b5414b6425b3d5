"""Anomaly -> suspension: the policy's anomaly rules watched, and what a tripped rule does.

An agent of a watched environment (policy ``anomalies``) is suspended when, within a rule's window, it has at
least the rule's count of refused tool calls (403 or 429 from the MCP servers' usage reports, outside-zone
refusals included), failed token requests (the IdP's records of tokens refused to its client), or calls
refused for coming from outside its network zone. Usage rules are judged as each usage report arrives; token
failures by the broker's housekeeping.

Suspending goes the way a revocation goes, short of the end: the client is disabled at the IdP (no new token, and
introspection answers inactive), and a CAEP session-revoked event goes to every receiving MCP server, so tokens
issued before it are refused. The identity, its credentials, its audit and its generated configs are kept; the
status is ``suspended``. An admin with MFA resumes the agent (the client is enabled again, tokens issued from then
on are accepted) or revokes it. Anomalies count afresh from a resume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.base import IDP_FAILURES, SYSTEM, BrokerContext, agent_out, why
from sandbox.broker.policy import AnomalyRule
from sandbox.broker.store import Agent, UsageEvent
from sandbox.idp.provider import EventKind

log = logging.getLogger(__name__)

#: The IdP's record of a refused token request.
TOKEN_FAILURE: EventKind = "token_refused"
#: The most failure records read per tenant and scan.
MAX_FAILURE_EVENTS = 500


@dataclass(frozen=True)
class Tripped:
    """A rule an agent's recent behaviour tripped, and what was counted."""

    rule: AnomalyRule
    counted: int

    def describe(self) -> str:
        return f"anomaly: {self.counted} {self.rule.kind.replace('_', ' ')} within {self.rule.window_seconds}s"


class Suspensions:
    """Suspend, resume, and the anomaly checks that suspend; composed into the broker (``service.suspensions``)."""

    def __init__(self, context: BrokerContext) -> None:
        self.context = context

    # Judging.
    async def after_usage(self, agent_ids: set[str]) -> list[schemas.Suspended]:
        """Judge the agents that were just refused calls; suspend each one that tripped a usage rule."""
        suspended: list[schemas.Suspended] = []
        for agent_id in sorted(agent_ids):
            tripped = self._usage_tripped(agent_id)
            if tripped is not None:
                done = await self.suspend(agent_id, tripped)
                suspended += [done] if done else []
        return suspended

    def _usage_tripped(self, agent_id: str) -> Tripped | None:
        context = self.context
        rules = context.policy.anomalies
        with context.session() as session:
            agent = session.get(Agent, agent_id)
            if agent is None or agent.status != "active" or not rules.watches(agent.environment):
                return None
            now = context.now(agent.tenant)
            for kind in ("outside_zone_calls", "refused_calls"):
                rule = rules.rules.get(kind)  # type: ignore[call-overload]
                if rule is None:
                    continue
                since = self._since(agent, now, rule)
                query = select(UsageEvent).where(
                    UsageEvent.agent_id == agent_id, UsageEvent.allowed.is_(False), UsageEvent.at > since
                )
                if kind == "outside_zone_calls":
                    query = query.where(UsageEvent.outside_zone.is_(True))
                counted = len(list(session.scalars(query)))
                if counted >= rule.count:
                    return Tripped(rule, counted)
        return None

    async def scan_token_failures(self) -> list[schemas.Suspended]:
        """Suspend each watched active agent with the rule's count of failed token requests in its window."""
        context = self.context
        rule = context.policy.anomalies.rules.get("failed_token_requests")
        if rule is None:
            return []
        with context.session() as session:
            watched = [
                (a.id, a.tenant, a.client_id)
                for a in session.scalars(select(Agent).where(Agent.status == "active"))
                if context.policy.anomalies.watches(a.environment)
            ]
        by_tenant: dict[str, list[tuple[str, str]]] = {}
        for agent_id, tenant, client_id in watched:
            by_tenant.setdefault(tenant, []).append((agent_id, client_id))
        suspended: list[schemas.Suspended] = []
        for tenant, agents in by_tenant.items():
            if not context.adapter.capabilities(tenant).supports("event_emission"):
                continue  # its agents' IdP records no failed token requests (the rule cannot trip there)
            try:
                events = await context.adapter.tenant_events(tenant, (TOKEN_FAILURE,), MAX_FAILURE_EVENTS)
            except IDP_FAILURES as exc:
                log.warning("token failures not read", extra={"tenant": tenant, "reason": why(exc)})
                continue
            for agent_id, client_id in agents:
                times = [context.clocks.at(tenant, e.at) for e in events if e.client_id == client_id]
                with context.session() as session:
                    agent = session.get(Agent, agent_id)
                    if agent is None or agent.status != "active":
                        continue
                    since = self._since(agent, context.now(tenant), rule)
                counted = sum(1 for at in times if at > since)
                if counted >= rule.count:
                    done = await self.suspend(agent_id, Tripped(rule, counted))
                    suspended += [done] if done else []
        return suspended

    @staticmethod
    def _since(agent: Agent, now: datetime, rule: AnomalyRule) -> datetime:
        start = now - timedelta(seconds=rule.window_seconds)
        counted_from = agent.anomalies_counted_from
        return max(start, counted_from) if counted_from else start

    # Acting.
    async def suspend(self, agent_id: str, tripped: Tripped) -> schemas.Suspended | None:
        """Suspend an active agent: its client disabled, a session-revoked event to every receiving server."""
        context = self.context
        async with context.agent_lock(agent_id):
            with context.session() as session:
                agent = session.get(Agent, agent_id)
                if agent is None or agent.status != "active":  # suspended, revoked or changed meanwhile
                    return None
                tenant, idp_id, snapshot = agent.tenant, agent.idp_id, agent.as_public()
                servers = context.registered_servers(session)
                targets = [(url, servers[url].events_url if url in servers else None) for url in agent.audiences]
            try:
                await context.adapter.set_client_enabled(tenant, idp_id or "", False)
            except IDP_FAILURES as exc:
                log.warning("suspension not done yet", extra={"agent": agent_id, "reason": why(exc)})
                return None  # still active; the next report or scan tries again
            # The IdP refuses the credential from here on: every token the event must cover is already issued.
            at = int(context.clock.now().timestamp())
            for url, events_url in targets:
                if events_url is not None:
                    context.transmitter.ensure_push_stream(url, events_url)
            deliveries = await context.transmitter.revoke(
                context.agent_subject(agent_id, snapshot, tenant),
                [url for url, _ in targets],
                at=at,
                reason=tripped.describe(),
            )
            now = context.now(tenant)
            with context.session() as session:
                stored = session.get(Agent, agent_id)
                assert stored is not None
                stored.status, stored.suspended_at = "suspended", now
                audit.record(
                    session,
                    tenant=tenant,
                    agent_id=agent_id,
                    actor=SYSTEM,
                    action="agent.suspended",
                    at=now,
                    before={"status": "active"},
                    after={
                        "status": "suspended",
                        "rule": tripped.rule.kind,
                        "counted": tripped.counted,
                        "window_seconds": tripped.rule.window_seconds,
                        "events": {d.server: d.delivered for d in deliveries},
                    },
                    reason=tripped.describe(),
                )
                public = agent_out(stored)
        log.warning("agent suspended", extra={"tenant": tenant, "agent": agent_id, "rule": tripped.rule.kind})
        return schemas.Suspended(agent=public, events=[d.as_dict() for d in deliveries])

    async def resume(self, principal: Principal, tenant: str, agent_id: str, reason: str = "") -> schemas.AgentOut:
        """Give a suspended agent its access back (an admin with MFA): new tokens work again, anomalies count anew."""
        context = self.context
        with context.session() as session:
            context.visible_tenant(session, principal, tenant)
            agent = context.visible_agent(session, principal, agent_id, tenant)
            context.require_mfa(principal, f"resuming agent {agent.name!r}")

        # The servers refuse the agent's tokens issued at or before the second of the suspension (a token's `iat`
        # is whole seconds): the credential works again only once that second is over.
        def settle(agent: Agent) -> float:
            if agent.suspended_at is None:
                return 0.0
            return 1.0 - (context.now(tenant) - agent.suspended_at).total_seconds()

        def reset(agent: Agent, now: datetime) -> None:
            agent.suspended_at, agent.anomalies_counted_from = None, now

        async with context.agent_lock(agent_id):
            return await context.enable_held(
                principal,
                tenant,
                agent_id,
                held="suspended",
                only="only a suspended agent is resumed",
                action="agent.resumed",
                reason=reason,
                settle=settle,
                reset=reset,
            )
