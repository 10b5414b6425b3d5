"""Delegated access: the users of a tenant, and the record of which user let which agent act for them.

A delegated agent (mode ``delegated``) may exchange a user's access token for a token of its own that acts for
the user (Keycloak's standard token exchange): ``sub`` is the user, ``azp`` the agent, and its scopes are those of
the agent's scopes the user holds as realm roles, so at most the user's permissions. The user's token must name
the agent in ``aud``: the user consented to the agent's delegation scope (``delegate:<client id>``) when logging in
with the realm's ``sandbox-user-login`` client. The IdP records each exchange (user, agent, scopes); the broker
turns the first exchange of each user and set of scopes into a delegation, with one audit entry whose actor is
that user.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import datetime

from sqlalchemy import select

from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.base import IDP_FAILURES, BrokerContext, why
from sandbox.broker.errors import BadRequest, Conflict, IdpFailed
from sandbox.broker.store import Agent, Delegation
from sandbox.broker.tenants import TenantService
from sandbox.idp.provider import IdpConflict, IdpEvent
from sandbox.idp.realm import USER_LOGIN_CLIENT_ID, delegation_scope

log = logging.getLogger(__name__)


def user_actor(username: str, tenant: str, user_id: str) -> str:
    """How the audit log names a user of a tenant (the form admins' entries have)."""
    return f"{username} (user, {tenant}, sub {user_id})"


class DelegationService:
    """The people of a tenant who let delegated agents act for them, and the delegations the IdP recorded."""

    def __init__(self, context: BrokerContext, tenants: TenantService) -> None:
        self.context = context
        self.tenants = tenants
        # One sync of an agent's delegations at a time (two would record the same exchange twice).
        self._sync_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def create_user(
        self, principal: Principal, tenant: str, username: str, scopes: list[str], otp: bool = False
    ) -> schemas.IssuedUser:
        """Add a person to the tenant who may let delegated agents act for them, with at most ``scopes``."""
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
        unknown = sorted(set(scopes) - set(self.context.tools.all_scopes()))
        if unknown:
            raise BadRequest(f"unknown scope(s) {unknown}", f"choose among {sorted(self.context.tools.all_scopes())}")
        try:
            issued = await self.tenants.create_person(tenant, username, otp, sorted(set(scopes)), "user")
        except IdpConflict as exc:
            raise Conflict(f"tenant {tenant!r} already has a user {username!r}", "pick another username") from exc
        except IDP_FAILURES as exc:
            raise IdpFailed(f"Keycloak failed while adding user {username!r} ({why(exc)})", "retry") from exc
        with self.context.session() as session:
            audit.record(
                session,
                tenant=tenant,
                actor=principal.actor,
                action="tenant.user_added",
                at=self.context.now(tenant),
                after={"username": username, "scopes": sorted(set(scopes)), "otp": otp},
            )
        return schemas.IssuedUser(**issued.model_dump(), scopes=sorted(set(scopes)), login_client=USER_LOGIN_CLIENT_ID)

    async def delegations(self, principal: Principal, tenant: str, agent_id: str) -> schemas.DelegationsOut:
        """Who let the agent act for them, with which scopes, and when (the IdP's records, synced now)."""
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agent = self.context.visible_agent(session, principal, agent_id, tenant)
            public = agent.as_public()
        error = await self.sync_delegations(tenant, [agent_id])
        with self.context.session() as session:
            found = session.scalars(select(Delegation).where(Delegation.agent_id == agent_id).order_by(Delegation.id))
            users = [schemas.DelegationOut.model_validate(d.as_public()) for d in found]
        return schemas.DelegationsOut(
            agent_id=agent_id,
            mode=public["mode"],
            delegation_scope=public["delegation_scope"],
            login_client=USER_LOGIN_CLIENT_ID,
            delegations=users,
            idp_error=error,
        )

    async def sync_delegations(self, tenant: str, agent_ids: list[str]) -> str | None:
        """Record new delegations of these agents from the IdP's records of token exchanges; the failure, if any."""
        failure = None
        for agent_id in agent_ids:
            try:
                async with self._sync_locks[agent_id]:
                    await self._sync_agent(tenant, agent_id)
            except IDP_FAILURES as exc:
                failure = why(exc)
                log.warning("delegations not synced", extra={"tenant": tenant, "agent": agent_id, "reason": failure})
        return failure

    async def _sync_agent(self, tenant: str, agent_id: str) -> None:
        with self.context.session() as session:
            agent = session.get(Agent, agent_id)
            if agent is None or agent.mode != "delegated" or agent.status in ("provisioning", "failed", "rejected"):
                return
            client_id = agent.client_id
        events = await self.context.adapter.client_events(tenant, client_id, ("token_exchanged",))
        seen: dict[tuple[str, tuple[str, ...]], list[IdpEvent]] = defaultdict(list)
        for event in events:
            if event.user_id is not None:  # an exchange acts for a user; one without is no delegation
                seen[(event.user_id, tuple(sorted(event.scopes)))].append(event)
        if not seen:
            return
        with self.context.session() as session:
            known = {
                (d.user_id, tuple(d.scopes))
                for d in session.scalars(select(Delegation).where(Delegation.agent_id == agent_id))
            }
        consents = {}
        for user_id in {user for (user, scopes) in seen if (user, scopes) not in known}:
            consents[user_id] = await self._consented_at(tenant, user_id, client_id)
        with self.context.session() as session:
            stored = {
                (d.user_id, tuple(d.scopes)): d
                for d in session.scalars(select(Delegation).where(Delegation.agent_id == agent_id))
            }
            for (user_id, scopes), exchanges in seen.items():
                times = [self.context.clocks.at(tenant, e.at) for e in exchanges]
                username = exchanges[0].username or user_id
                delegation = stored.get((user_id, scopes))
                if delegation is not None:
                    delegation.last_at = max(delegation.last_at, *times)
                    delegation.exchanges = max(delegation.exchanges, len(exchanges))
                    continue
                delegation = Delegation(
                    agent_id=agent_id,
                    user_id=user_id,
                    username=username,
                    scopes=list(scopes),
                    first_at=min(times),
                    last_at=max(times),
                    exchanges=len(exchanges),
                    consented_at=consents.get(user_id),
                )
                session.add(delegation)
                audit.record(
                    session,
                    tenant=tenant,
                    agent_id=agent_id,
                    actor=user_actor(username, tenant, user_id),
                    action="agent.delegation_granted",
                    at=self.context.now(tenant),
                    before={},
                    after={"client_id": client_id, **delegation.as_public(), "consent_client": USER_LOGIN_CLIENT_ID},
                    reason=f"{username} consented at login to {client_id} acting for them; Keycloak exchanged "
                    f"{username}'s token for one with {' '.join(scopes) or 'no tool scope'}",
                )

    async def _consented_at(self, tenant: str, user_id: str, client_id: str) -> datetime | None:
        """When the user consented to the agent's delegation scope (None once the consent is gone)."""
        for consent in await self.context.adapter.user_consents(tenant, user_id):
            if consent.client_id == USER_LOGIN_CLIENT_ID and delegation_scope(client_id) in consent.scopes:
                return self.context.clocks.at(tenant, consent.at)
        return None
