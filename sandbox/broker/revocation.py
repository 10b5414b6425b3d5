"""Revocation: credentials dead at the token endpoint, events to every resource server, the client removed."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from sandbox.broker import audit
from sandbox.broker.auth import Principal
from sandbox.broker.base import IDP_FAILURES, SYSTEM, ServiceBase, why
from sandbox.broker.errors import (
    IdpFailed,
    NotFound,
)
from sandbox.broker.events import Delivery, push, revocation_event
from sandbox.broker.store import (
    Agent,
    Credential,
)
from sandbox.idp.provider import IdpNotFound

log = logging.getLogger(__name__)


class RevocationOperations(ServiceBase):
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
        async with self._agent_lock(agent_id):
            return await self._revoke(principal, agent_id, tenant, reason, verify_token)

    async def _revoke(
        self, principal: Principal | None, agent_id: str, tenant: str | None, reason: str, verify_token: str | None
    ) -> dict[str, Any]:
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
            now = self.now(agent.tenant)
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
        except IdpNotFound:
            pass  # already gone in Keycloak: nothing can get a token
        except IDP_FAILURES as exc:
            raise IdpFailed(
                f"Keycloak failed while revoking agent {agent_id} ({why(exc)}); the revocation is recorded as "
                "in progress and its credentials may still work until it completes",
                "revoke again when Keycloak is up (the broker also retries by itself)",
                status="revoking",
            ) from exc
        # Resource servers compare the event with their tokens' real `iat`: it carries the broker's own time.
        deliveries = await self._push_revocation(snapshot, tenant, self.clock.now(), targets)
        try:
            if keycloak_id:
                await self.adapter.delete_client(tenant, keycloak_id)
            if snapshot["mode"] == "delegated":
                await self.adapter.remove_delegation_scope(tenant, snapshot["client_id"])
        except IDP_FAILURES as exc:
            raise IdpFailed(
                f"Keycloak failed while removing agent {agent_id}'s client ({why(exc)}); the client is disabled, "
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
                at=self.now(tenant),
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
