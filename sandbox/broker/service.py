"""The lifecycle of agent identities: every operation the API and the CLI offer, with its audit entry.

Each operation checks the caller, the tenant and the policy before it changes anything. Operations that
span Keycloak and the database are ordered so a failure halfway leaves no half-made agent:

- **provision** records the agent as ``provisioning``, creates the Keycloak client, then records the
  result. If Keycloak fails, the broker deletes whatever client was created (compensation); if Keycloak
  cannot even be asked, the agent is marked ``failed`` with ``cleanup_pending`` and the background task
  removes the leftover client once Keycloak answers. If the database fails after Keycloak succeeded, the
  client is deleted again.
  A provision the broker never finished (it stopped mid-way) stays ``provisioning``; after
  ``broker_interrupted_after`` seconds housekeeping undoes it like a failed one.
- **rotate** (a client secret) finds a rotation the broker stopped in after Keycloak made the new secret (Keycloak's
  current secret is not the recorded one) and hands out that secret instead of making another.
- **revoke** records ``revoking`` first, then disables the client (dead at the token endpoint and for
  introspection), pushes the revocation events, deletes the client and the credential records. If Keycloak
  fails on the way, the agent stays ``revoking``; a second revoke, or the background task, resumes it.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

from sqlalchemy import select

from sandbox.broker.agents import AgentOperations, ProvisionRequest
from sandbox.broker.auth import Principal
from sandbox.broker.base import IDP_FAILURES, SYSTEM, ServiceBase
from sandbox.broker.delegation import DelegationOperations
from sandbox.broker.dormancy import DormancyOperations
from sandbox.broker.errors import BrokerError
from sandbox.broker.lifecycle import AccessReviews, CredentialAgeKeeper
from sandbox.broker.reporting import ReportingOperations
from sandbox.broker.revocation import RevocationOperations
from sandbox.broker.rotation import RotationOperations
from sandbox.broker.store import Agent
from sandbox.broker.suspension import Suspensions
from sandbox.broker.tenant_clock import ClockOperations
from sandbox.broker.tenants import AdminSpec, TenantOperations

__all__ = ["SYSTEM", "AdminSpec", "BrokerService", "ProvisionRequest"]

log = logging.getLogger(__name__)


class BrokerService(
    TenantOperations,
    ClockOperations,
    AgentOperations,
    DelegationOperations,
    RotationOperations,
    RevocationOperations,
    DormancyOperations,
    ReportingOperations,
    ServiceBase,
):
    """Every operation of the broker; each part lives in its own module (tenants, agents, rotation, ...)."""

    def __init__(self, **collaborators: Any) -> None:
        super().__init__(**collaborators)
        # Lifecycle policy (sandbox.broker.lifecycle), composed rather than mixed in.
        self.credential_age = CredentialAgeKeeper(self, self.rotate)
        self.access_reviews = AccessReviews(self)

    def review_queue(self, principal: Principal, tenant: str) -> list[dict[str, Any]]:
        """Dormant agents and agents whose risk tier's access review is due."""
        return self.access_reviews.queue(principal, tenant)

    @cached_property
    def suspensions(self) -> Suspensions:
        """Anomaly rules, suspension and resumption (composed, not mixed in)."""
        return Suspensions(self)

    # Background work: graces that ran out, revocations and clean-ups Keycloak interrupted.
    async def housekeeping(self) -> dict[str, int]:
        done = {"graces_ended": 0, "revocations_resumed": 0, "cleanups": 0}
        done["provisions_undone"] = await self.recover_interrupted_provisions()
        done.update(await self.credential_age.sweep())
        done["suspended"] = len(await self.suspensions.scan_token_failures())
        with self._session() as session:
            expired = [
                (a.tenant, a.id)
                for a in session.scalars(select(Agent).where(Agent.status == "rotating"))
                if a.grace_ends_at and a.grace_ends_at <= self.now(a.tenant)
            ]
            revoking = [a.id for a in session.scalars(select(Agent).where(Agent.status == "revoking"))]
            leftovers = [
                (a.id, a.tenant, a.client_id, a.mode)
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
        for agent_id, tenant, client_id, mode in leftovers:
            try:
                leftover = await self.adapter.find_client(tenant, client_id)
                if leftover:
                    await self.adapter.delete_client(tenant, leftover)
                if mode == "delegated":
                    await self.adapter.remove_delegation_scope(tenant, client_id)
            except IDP_FAILURES:
                continue
            with self._session() as session:
                stored = session.get(Agent, agent_id)
                if stored is not None:
                    stored.cleanup_pending = False
            done["cleanups"] += 1
        return done
