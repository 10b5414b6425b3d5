"""Revocation: an SSF event to every resource server while the credentials are killed at the token endpoint, then
a closing event (covering tokens issued meanwhile) while the client is removed."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from sqlalchemy import select

from sandbox.agent.mcp_http import ACCEPT, initialize
from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.base import IDP_FAILURES, SYSTEM, BrokerContext, agent_out, why
from sandbox.broker.errors import (
    IdpFailed,
    NotFound,
)
from sandbox.broker.events import Delivery
from sandbox.broker.store import (
    Agent,
    Credential,
)
from sandbox.idp.provider import IdpNotFound

log = logging.getLogger(__name__)


class RevocationService:
    """Revocation: events to the resource servers, the client disabled and removed, resumable when the IdP fails."""

    def __init__(self, context: BrokerContext) -> None:
        self.context = context

    async def revoke(
        self,
        principal: Principal | None,
        agent_id: str,
        *,
        tenant: str | None = None,
        reason: str = "",
        verify_token: str | None = None,
    ) -> schemas.Revoked:
        """Kill the agent's credentials and tokens everywhere; idempotent (a revoked agent is a no-op).

        One revocation of an agent at a time: a second caller (or the housekeeping resuming it) waits, then
        finds the agent revoked.
        """
        async with self.context.agent_lock(agent_id):
            return await self._revoke(principal, agent_id, tenant, reason, verify_token)

    async def _revoke(
        self, principal: Principal | None, agent_id: str, tenant: str | None, reason: str, verify_token: str | None
    ) -> schemas.Revoked:
        with self.context.session() as session:
            if principal is not None:
                if tenant is not None:
                    self.context.visible_tenant(session, principal, tenant)
                agent = self.context.visible_agent(session, principal, agent_id, tenant)
            else:
                found = session.get(Agent, agent_id)
                if found is None:
                    raise NotFound(f"no agent {agent_id!r}", "check the id")
                agent = found
            now = self.context.now(agent.tenant)
            if agent.status in ("revoked", "rejected"):
                return schemas.Revoked(agent=agent_out(agent), already_revoked=True, events=[], verification=[])
            previous_status = agent.status  # "revoking" when this resumes an interrupted revocation
            if agent.status != "revoking":
                agent.status, agent.revoked_at, agent.cleanup_pending = "revoking", now, True
            revoked_at = agent.revoked_at or now
            snapshot = agent.as_public()
            idp_id = agent.idp_id
            tenant = agent.tenant
            servers = self.context.registered_servers(session)
            targets = [(url, servers[url].events_url if url in servers else None) for url in agent.audiences]
        actor = principal.actor if principal else SYSTEM
        began = time.perf_counter()
        steps: dict[str, float] = {}

        def step(name: str) -> None:
            steps[name] = round((time.perf_counter() - began) * 1000, 3)

        for url, events_url in targets:
            if events_url is not None:
                self.context.transmitter.ensure_push_stream(url, events_url)
        subject = self.context.agent_subject(agent_id, snapshot, tenant)
        audiences = [url for url, _ in targets]

        async def early_event() -> list[Delivery]:
            # Every token issued until now is covered: the servers refuse them while the IdP disables the client.
            delivered = await self.context.transmitter.revoke(
                subject, audiences, at=int(self.context.clock.now().timestamp()), reason=reason
            )
            step("first_event_answered")
            return delivered

        async def disable() -> None:
            try:
                if idp_id:
                    await self.context.adapter.set_client_enabled(tenant, idp_id, False)
            except IdpNotFound:
                pass  # already gone from the IdP: nothing can get a token
            step("idp_disabled")

        early, disabled = await asyncio.gather(early_event(), disable(), return_exceptions=True)
        if isinstance(disabled, BaseException):
            if not isinstance(disabled, IDP_FAILURES):
                raise disabled
            raise IdpFailed(
                f"the IdP failed while revoking agent {agent_id} ({why(disabled)}); the revocation is recorded as "
                "in progress and its credentials may still work until it completes",
                f"revoke again when {self.context.idp_title(tenant)} is up (the broker also retries by itself)",
                status="revoking",
            ) from disabled
        if isinstance(early, BaseException):
            raise early
        # The IdP refuses the credential from here on, so every token the closing event must cover is already
        # issued: its timestamp (the broker's own time, which the servers compare with the tokens' `iat`) is now,
        # and it covers what was issued while the client was being disabled. Its delivery and the client's
        # removal run side by side; the answer waits for both, so no token works after it.
        revoked_now = int(self.context.clock.now().timestamp())
        delivering = self.context.transmitter.revoke(subject, audiences, at=revoked_now, reason=reason)
        removed = await asyncio.gather(
            delivering, self._remove_client(tenant, idp_id, snapshot), return_exceptions=True
        )
        step("closing_event_answered_and_client_removed")
        deliveries, removal = removed
        if isinstance(deliveries, BaseException):
            raise deliveries
        if isinstance(removal, BaseException):
            if not isinstance(removal, IDP_FAILURES):
                raise removal
            raise IdpFailed(
                f"the IdP failed while removing agent {agent_id}'s client ({why(removal)}); the client is disabled, "
                "so its credentials are dead, but removal is pending",
                f"revoke again when {self.context.idp_title(tenant)} is up (the broker also retries by itself)",
                status="revoking",
                events=[d.as_dict() for d in deliveries],
            ) from removal
        with self.context.session() as session:
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
                at=self.context.now(tenant),
                before={"status": previous_status},
                after={
                    "status": "revoked",
                    "revoked_at": revoked_at.isoformat(),
                    "events": {d.server: d.delivered for d in deliveries},
                },
                reason=reason,
            )
            public = agent_out(stored)
        verification = await self._verify_rejected(verify_token, [url for url, _ in targets]) if verify_token else []
        log.info("agent revoked", extra={"tenant": tenant, "agent": agent_id})
        return schemas.Revoked(
            agent=public,
            already_revoked=False,
            events=[d.as_dict() for d in deliveries],
            verification=verification,
            # How long each step took from the start of the work, in ms: what a slow revocation spent its time on.
            steps_ms=steps,
        )

    async def _remove_client(self, tenant: str, idp_id: str | None, agent: dict[str, Any]) -> None:
        if idp_id:
            await self.context.adapter.delete_client(tenant, idp_id)
        if agent["mode"] == "delegated":
            await self.context.adapter.remove_delegation_scope(tenant, agent["client_id"])

    async def _verify_rejected(self, token: str, servers: list[str]) -> list[dict[str, Any]]:
        """Call each MCP server with the old token: after a revocation each must answer 401."""
        results = []
        probe = initialize("mcp-sandbox-broker-verification")
        for server in servers:
            try:
                response = await self.context.http.post(
                    server, json=probe, headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT}
                )
                results.append(
                    {"server": server, "status": response.status_code, "rejected": response.status_code == 401}
                )
            except httpx.HTTPError as exc:
                results.append({"server": server, "status": None, "rejected": False, "error": type(exc).__name__})
        return results
