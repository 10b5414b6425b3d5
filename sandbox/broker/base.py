"""What every part of the broker's service shares (:class:`BrokerContext`): its collaborators, the database
session, the agent locks, the tenants' clocks, the SSF transmitter, and the checks that a caller may see a tenant
or an agent. Each part (tenants, agents, rotation, ...) is a plain object that holds the context."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.clock import Clock, ClockMove, TenantClocks
from sandbox.broker.errors import (
    Conflict,
    IdpFailed,
    IdpLacks,
    MfaRequired,
    NotFound,
    StorageFailed,
)
from sandbox.broker.events import SigningKey
from sandbox.broker.policy import Policy
from sandbox.broker.store import (
    Agent,
    Database,
    ResourceServer,
    StorageError,
    Tenant,
    TenantClockMove,
)
from sandbox.broker.transmitter import Transmitter
from sandbox.config import Settings
from sandbox.idp.provider import IdentityProvider, IdpError, NotSupported
from sandbox.idp.tenant_idps import TenantIdps
from sandbox.ssf import AgentSubject
from sandbox.toolmap import ToolMap

SYSTEM = "broker"
FINAL = ("revoked", "rejected", "failed")
MAX_GRACE = 7 * 86400
NAME = re.compile(r"^[a-z][a-z0-9-]{1,47}$")
TENANT_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
IDP_FAILURES = (IdpError,)


def why(exc: BaseException) -> str:
    if isinstance(exc, IdpError):
        return exc.cause
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no detail'}"


@contextmanager
def idp_failure(doing: str, outcome: str, fix: str, **details: Any) -> Iterator[None]:
    """Around IdP calls: an IdP error becomes the broker's 503, ``the IdP failed while <doing> (<why>)<outcome>``;
    what the tenant's IdP lacks becomes a 501 naming the capability's reason."""
    try:
        yield
    except NotSupported as exc:
        raise IdpLacks(f"{exc.cause} (while {doing}){outcome}", exc.fix, **details) from exc
    except IDP_FAILURES as exc:
        raise IdpFailed(f"the IdP failed while {doing} ({why(exc)}){outcome}", fix, **details) from exc


def agent_out(agent: Agent) -> schemas.AgentOut:
    """The agent as the API shows it (no credential material at all)."""
    return schemas.AgentOut.model_validate(agent.as_public())


class BrokerContext:
    """The collaborators and checks every part of the broker's service shares (one per broker process)."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        adapter: IdentityProvider,
        policy: Policy,
        tools: ToolMap,
        clock: Clock,
        signing_key: SigningKey,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.db = db
        # Each tenant's agents on its IdP, people in its realm; a bare provider (a test's fake) holds everything.
        self.adapter = adapter if isinstance(adapter, TenantIdps) else TenantIdps(adapter, realm_issuer=settings.issuer)
        self.policy = policy
        self.tools = tools
        self.clock = clock  # the broker's own time; a tenant's time is self.now(tenant)
        self.signing_key = signing_key
        self.http = http
        self._agent_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        with self.session() as session:
            moves = [
                ClockMove(m.tenant, m.at, timedelta(seconds=m.offset_seconds))
                for m in session.scalars(select(TenantClockMove))
            ]
        self.clocks = TenantClocks(clock, moves)
        self._attach_lent_hydras()

    def _attach_lent_hydras(self) -> None:
        """After a restart: each live tenant on a pool Hydra holds it again."""
        pool = {address.tenant: address for address in self.settings.hydra_pool_addresses}
        with self.session() as session:
            held = [
                (tenant.name, tenant.hydra)
                for tenant in session.scalars(select(Tenant).where(Tenant.deleted_at.is_(None)))
                if tenant.hydra
            ]
        for name, hydra in held:
            if hydra not in pool:
                raise IdpFailed(
                    f"tenant {name!r} holds Hydra {hydra}, which this stack does not run",
                    "start the stack with SANDBOX_HYDRA_POOL as large as when the tenant was made",
                )
            self.adapter.attach(name, pool[hydra])

    def idp_title(self, tenant: str) -> str:
        """How messages name the IdP that holds the tenant's agents."""
        return self.adapter.capabilities(tenant).title

    def agents_issuer(self, tenant: str) -> str:
        """The issuer of the tenant's agents' tokens: its Hydra, or its realm."""
        return self.adapter.agents_issuer(tenant) or self.settings.issuer(tenant)

    def now(self, tenant: str | None = None) -> datetime:
        """The tenant's time (the broker's own for acts of no tenant): see :mod:`sandbox.broker.clock`."""
        return self.clocks.now(tenant)

    @cached_property
    def transmitter(self) -> Transmitter:
        """The SSF transmitter every broker process shares: one issuer, one key, streams in the database."""
        return Transmitter(self.settings.transmitter_url, self.db, self.signing_key, self.http, self.clock.now)

    def agent_subject(self, agent_id: str, agent: dict[str, Any], tenant: str) -> AgentSubject:
        """How security events name the agent (its public view ``agent``): its client at its issuer."""
        with self.session() as session:
            stored = session.get(Agent, agent_id)
            service_account = stored.service_account_id if stored else None
        return AgentSubject(self.agents_issuer(tenant), agent["client_id"], service_account or None)

    # Plumbing.
    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self.db.session() as session:
                yield session
        except StorageError as exc:
            raise StorageFailed(exc.cause, exc.fix) from exc

    @asynccontextmanager
    async def agent_lock(self, agent_id: str) -> AsyncIterator[None]:
        """One state-changing operation on an agent at a time: in this process, and (on PostgreSQL) in every
        broker process sharing the database. A second caller waits, then sees what the first one left."""
        async with self._agent_locks[agent_id]:
            try:
                async with self.db.exclusive(f"agent:{agent_id}"):
                    yield
            except StorageError as exc:
                raise StorageFailed(exc.cause, exc.fix) from exc

    def visible_tenant(self, session: Session, principal: Principal, tenant: str) -> Tenant:
        """The tenant, if the caller may see it; another tenant's resources are 404, never 403."""
        found = session.get(Tenant, tenant)
        if found is None or found.deleted_at is not None or (not principal.is_operator and principal.tenant != tenant):
            raise NotFound(f"no tenant {tenant!r}", "check the tenant name; an admin sees only their own tenant")
        return found

    def visible_agent(self, session: Session, principal: Principal, agent_id: str, tenant: str | None = None) -> Agent:
        """The agent, if the caller may see it (and it is of ``tenant``, when named); else 404."""
        agent = session.get(Agent, agent_id)
        visible = agent is not None and (principal.is_operator or principal.tenant == agent.tenant)
        if agent is None or not visible or (tenant is not None and agent.tenant != tenant):
            raise NotFound(f"no agent {agent_id!r}", "list the tenant's agents with `mcp-sandbox agents list`")
        return agent

    async def enable_held(
        self,
        principal: Principal,
        tenant: str,
        agent_id: str,
        *,
        held: str,
        only: str,
        action: str,
        reason: str,
        settle: Callable[[Agent], float] = lambda _: 0.0,
        reset: Callable[[Agent, datetime], None],
    ) -> schemas.AgentOut:
        """Enable a ``held`` (dormant, suspended) agent's client again and make it active, in one audited change.

        The caller holds the agent's lock. ``settle`` says how many seconds to wait before enabling, ``reset`` clears
        what the hold set; a failure at the IdP leaves the agent as it was.
        """
        with self.session() as session:
            agent = self.visible_agent(session, principal, agent_id, tenant)
            if agent.status != held:
                raise Conflict(f"agent {agent.name!r} is {agent.status}, not {held}", only)
            client = agent.idp_id or ""
            wait = settle(agent)
        if wait > 0:
            await asyncio.sleep(wait)
        with idp_failure("re-enabling the agent's client", f"; it stays {held}", "retry"):
            await self.adapter.set_client_enabled(tenant, client, True)

        def activate(_: Session, stored: Agent, now: datetime) -> None:
            stored.status = "active"
            reset(stored, now)

        return self.change_agent(
            principal, tenant, agent_id, action, activate, {"status": held}, {"status": "active"}, reason
        )

    def change_agent(
        self,
        principal: Principal,
        tenant: str,
        agent_id: str,
        action: str,
        change: Callable[[Session, Agent, datetime], None],
        before: dict[str, Any],
        after: dict[str, Any],
        reason: str,
    ) -> schemas.AgentOut:
        """An admin's change to the stored agent (``change(session, agent, now)``, after the IdP's part is done)
        and its audit entry, in one commit; the agent as the API shows it."""
        now = self.now(tenant)
        with self.session() as session:
            stored = self.visible_agent(session, principal, agent_id, tenant)
            change(session, stored, now)
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=principal.actor,
                action=action,
                at=now,
                before=before,
                after=after,
                reason=reason,
            )
            return agent_out(stored)

    def require_mfa(self, principal: Principal, act: str) -> None:
        if not principal.mfa:
            raise MfaRequired(
                f"{act} needs a login that proves MFA (amr contains otp), and this token does not",
                "log in again with your one-time code (`mcp-sandbox admin login`) and retry",
            )

    def registered_servers(self, session: Session) -> dict[str, ResourceServer]:
        return {server.url: server for server in session.scalars(select(ResourceServer))}
