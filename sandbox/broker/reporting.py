"""Usage reports from MCP servers, monitoring, MCP client configs, and the audit log as the API shows it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from sandbox.agent.mcp_config import McpClientConfig
from sandbox.broker import audit, schemas
from sandbox.broker.agents import AgentService
from sandbox.broker.auth import Principal
from sandbox.broker.base import FINAL, IDP_FAILURES, BrokerContext, why
from sandbox.broker.configs import allowed_tools, credential_reference, mcp_client_config
from sandbox.broker.delegation import DelegationService
from sandbox.broker.errors import (
    BadRequest,
    Conflict,
)
from sandbox.broker.lifecycle import CredentialAgeKeeper
from sandbox.broker.monitoring import TOKEN_EVENTS, agent_report
from sandbox.broker.store import (
    Agent,
    GeneratedConfig,
    Tenant,
    UsageEvent,
)
from sandbox.idp.provider import IdpEvent


@dataclass(frozen=True)
class UsageIngested:
    stored: int
    refused_agents: set[str]  # agents with a refused call among the events: the anomaly rules judge them


class ReportingService:
    """Usage reports from MCP servers, monitoring, MCP client configs, and the audit log as the API shows it."""

    def __init__(
        self,
        context: BrokerContext,
        agents: AgentService,
        delegation: DelegationService,
        credential_age: CredentialAgeKeeper,
    ) -> None:
        self.context = context
        self.agents = agents
        self.delegation = delegation
        self.credential_age = credential_age

    def ingest_usage(self, events: list[dict[str, Any]], resource: str | None) -> UsageIngested:
        """Record tool calls an MCP server reported; unknown agents are kept for the record, unattributed."""
        refused: set[str] = set()
        with self.context.session() as session:
            tenants = {t.agents_issuer or t.issuer: t.name for t in session.scalars(select(Tenant))}
            stored = 0
            for event in events:
                tenant = tenants.get(str(event.get("issuer")))
                # in the tenant's time
                at = self.context.clocks.at(tenant, _timestamp(event.get("at"), self.context.clock.now()))
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
                        resource=str(event.get("resource") or resource or self.context.settings.mcp_url),
                        tool=str(event.get("tool", "")),
                        allowed=bool(event.get("allowed")),
                        status=int(event.get("status") or 0),
                        at=at,
                        source=str(event["source"]) if event.get("source") else None,
                        outside_zone=bool(event.get("outside_zone")),
                    )
                )
                if agent is not None and (agent.last_tool_call_at is None or at > agent.last_tool_call_at):
                    agent.last_tool_call_at = at
                if agent is not None and not event.get("allowed"):
                    refused.add(agent.id)
                stored += 1
            return UsageIngested(stored, refused)

    async def monitoring(self, principal: Principal, tenant: str, agent_id: str) -> schemas.MonitoringReport:
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agent = self.context.visible_agent(session, principal, agent_id, tenant)
            usage = list(session.scalars(select(UsageEvent).where(UsageEvent.agent_id == agent_id)))
            public = agent.as_public()
        events: list[IdpEvent] = []
        idp_error = None
        if public["status"] not in FINAL:
            try:
                events = await self.context.adapter.client_events(tenant, public["client_id"], TOKEN_EVENTS)
            except IDP_FAILURES as exc:
                idp_error = why(exc)
        role = self.context.policy.roles.get(public["role"])
        period = timedelta(days=role.dormancy_days if role else self.context.policy.default_dormancy_days)
        report = agent_report(public, events, usage, self.context.tools, now=self.context.now(tenant), period=period)
        report.idp_error = idp_error
        report.credential_age = self.credential_age.report_of(agent_id)
        if public["mode"] == "delegated":
            report.delegations = (await self.delegation.delegations(principal, tenant, agent_id)).delegations
        return report

    async def tenant_monitoring(self, principal: Principal, tenant: str) -> list[schemas.MonitoringReport]:
        agents = [a for a in self.agents.list_agents(principal, tenant) if a.status not in FINAL]
        return [await self.monitoring(principal, tenant, agent.id) for agent in agents]

    def generate_config(
        self,
        principal: Principal,
        tenant: str,
        agent_id: str,
        *,
        path: str | None = None,
        credential_source: str | None = None,
        credential_reference_value: str | None = None,
    ) -> McpClientConfig:
        if credential_source not in (None, "env", "file"):
            raise BadRequest(f"credential source {credential_source!r} is not env or file", "choose env or file")
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agent = self.context.visible_agent(session, principal, agent_id, tenant)
            if agent.status in FINAL or agent.status == "revoking":
                raise Conflict(f"agent {agent.name!r} is {agent.status}", "configs are made for live agents only")
            config = mcp_client_config(
                name=agent.name,
                client_id=agent.client_id,
                issuer=self.context.agents_issuer(tenant),
                token_endpoint=self.context.adapter.known_token_endpoint(tenant),
                servers=list(agent.audiences),
                tools=allowed_tools(self.context.tools, list(agent.scopes), agent.environment),
                scopes=list(agent.scopes),
                credential=credential_reference(
                    agent.credential_type,
                    agent.name,
                    source=credential_source,  # type: ignore[arg-type]
                    reference=credential_reference_value,
                ),
                audience_parameter=not self.context.adapter.capabilities(tenant).supports("resource_indicators"),
            )
            now = self.context.now(tenant)
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

    async def audit_log(
        self, principal: Principal, tenant: str, agent_id: str | None = None
    ) -> list[schemas.AuditEntryOut]:
        """The tenant's audit entries, after recording delegations Keycloak saw since the last look."""
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            query = select(Agent.id).where(Agent.tenant == tenant, Agent.mode == "delegated")
            if agent_id is not None:
                query = query.where(Agent.id == agent_id)
            delegated = list(session.scalars(query))
        await self.delegation.sync_delegations(tenant, delegated)
        return self.audit_entries(principal, tenant, agent_id)

    def audit_entries(
        self, principal: Principal, tenant: str, agent_id: str | None = None
    ) -> list[schemas.AuditEntryOut]:
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            return [audit.public(entry) for entry in audit.entries(session, tenant, agent_id)]


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
