"""The lifecycle of agent identities: every operation the API and the CLI offer, with its audit entry.

Each operation checks the caller, the tenant and the policy before it changes anything. Operations that
span the IdP (the agent's client lives on the tenant's agents' IdP) and the database are ordered so a failure
halfway leaves no half-made agent:

- **provision** records the agent as ``provisioning``, creates the agent's client at the IdP, then records the
  result. If the IdP fails, the broker deletes whatever client was created (compensation); if the IdP
  cannot even be asked, the agent is marked ``failed`` with ``cleanup_pending`` and the background task
  removes the leftover client once the IdP answers. If the database fails after the IdP succeeded, the
  client is deleted again.
  A provision the broker never finished (it stopped mid-way) stays ``provisioning``; after
  ``broker_interrupted_after`` seconds housekeeping undoes it like a failed one.
- **rotate** (a client secret) finds a rotation the broker stopped in after the IdP made the new secret (the IdP's
  current secret is not the recorded one) and hands out that secret instead of making another.
- **revoke** records ``revoking`` first, then disables the client (dead at the token endpoint and for
  introspection), pushes the revocation events, deletes the client and the credential records. If the IdP
  fails on the way, the agent stays ``revoking``; a second revoke, or the background task, resumes it.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from sandbox.broker.agents import AgentService
from sandbox.broker.base import IDP_FAILURES, SYSTEM, BrokerContext
from sandbox.broker.delegation import DelegationService
from sandbox.broker.dormancy import DormancyService
from sandbox.broker.errors import BrokerError
from sandbox.broker.lifecycle import AccessReviews, CredentialAgeKeeper
from sandbox.broker.reporting import ReportingService
from sandbox.broker.revocation import RevocationService
from sandbox.broker.rotation import RotationService
from sandbox.broker.specs import AdminSpec, ProvisionRequest
from sandbox.broker.store import Agent
from sandbox.broker.suspension import Suspensions
from sandbox.broker.tenant_clock import ClockService
from sandbox.broker.tenants import TenantService

__all__ = ["SYSTEM", "AdminSpec", "BrokerContext", "BrokerService", "ProvisionRequest"]

log = logging.getLogger(__name__)


class BrokerService:
    """Every operation of the broker, one object per concern, composed over one :class:`BrokerContext`:
    ``tenants``, ``tenant_clock`` (a tenant's test clock, shown and moved; the clocks themselves are
    ``context.clocks``), ``agents``, ``delegation``, ``rotation``, ``revocation``, ``dormancy``, ``reporting``, and the
    lifecycle policy's ``credential_age``, ``access_reviews`` and ``suspensions``. Each takes the context and the
    parts it calls; the background work (:meth:`housekeeping`) is here."""

    def __init__(self, context: BrokerContext) -> None:
        self.context = context
        self.revocation = RevocationService(context)
        self.tenants = TenantService(context, self.revocation)
        self.tenant_clock = ClockService(context)
        self.agents = AgentService(context)
        self.delegation = DelegationService(context, self.tenants)
        self.rotation = RotationService(context)
        self.dormancy = DormancyService(context, self.revocation)
        # Lifecycle policy (sandbox.broker.lifecycle) and anomaly suspension (sandbox.broker.suspension).
        self.credential_age = CredentialAgeKeeper(context, self.rotation.rotate)
        self.reporting = ReportingService(context, self.agents, self.delegation, self.credential_age)
        self.access_reviews = AccessReviews(context)
        self.suspensions = Suspensions(context)

    # Background work: graces that ran out, revocations and clean-ups the IdP interrupted.
    async def housekeeping(self) -> dict[str, int]:
        context = self.context
        done = {"graces_ended": 0, "revocations_resumed": 0, "cleanups": 0}
        done["provisions_undone"] = await self.agents.recover_interrupted_provisions()
        done.update(await self.credential_age.sweep())
        done["suspended"] = len(await self.suspensions.scan_token_failures())
        with context.session() as session:
            expired = [
                (a.tenant, a.id)
                for a in session.scalars(select(Agent).where(Agent.status == "rotating"))
                if a.grace_ends_at and a.grace_ends_at <= context.now(a.tenant)
            ]
            revoking = [a.id for a in session.scalars(select(Agent).where(Agent.status == "revoking"))]
            leftovers = [
                (a.id, a.tenant, a.client_id, a.mode)
                for a in session.scalars(select(Agent).where(Agent.status == "failed", Agent.cleanup_pending))
            ]
        for tenant, agent_id in expired:
            try:
                await self.rotation.end_grace(None, tenant, agent_id)
                done["graces_ended"] += 1
            except BrokerError as exc:
                log.warning("grace not ended yet", extra={"agent": agent_id, "reason": exc.cause})
        for agent_id in revoking:
            try:
                await self.revocation.revoke(None, agent_id, reason="resumed by the broker")
                done["revocations_resumed"] += 1
            except BrokerError as exc:
                log.warning("revocation not resumed yet", extra={"agent": agent_id, "reason": exc.cause})
        for agent_id, tenant, client_id, mode in leftovers:
            try:
                leftover = await context.adapter.find_client(tenant, client_id)
                if leftover:
                    await context.adapter.delete_client(tenant, leftover)
                if mode == "delegated":
                    await context.adapter.remove_delegation_scope(tenant, client_id)
            except IDP_FAILURES:
                continue
            with context.session() as session:
                stored = session.get(Agent, agent_id)
                if stored is not None:
                    stored.cleanup_pending = False
            done["cleanups"] += 1
        return done
