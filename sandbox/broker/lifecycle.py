"""Lifecycle policy at work (issue 19): credential age and access reviews by risk tier.

Two parts, each composed into the broker's service (``service.credential_age``, ``service.access_reviews``):

- :class:`CredentialAgeKeeper` flags credentials near and past their role's maximum age (audit, monitoring) and,
  with ``rotate: automatic``, rotates an old client secret itself, with the policy's grace. The agent then picks
  its new secret up with the old one (:meth:`CredentialAgeKeeper.pick_up`), during the grace only, so a config
  that names the secret by file or variable keeps working once the file or variable holds the new one.
- :class:`AccessReviews` puts agents whose risk tier's review interval has passed into the review queue (beside
  dormant agents) and recommends removing the scopes the agent did not use in that interval; an admin accepts.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.base import FINAL, SYSTEM, BrokerContext, idp_failure
from sandbox.broker.credentials import secret_fingerprint
from sandbox.broker.errors import BadRequest, BrokerError, Conflict, NotFound
from sandbox.broker.lifecycle_policy import CredentialAge, RoleLifecycle
from sandbox.broker.monitoring import unused_scopes
from sandbox.broker.store import Agent, AuditEntry, Credential, UsageEvent

log = logging.getLogger(__name__)

Rotate = Callable[..., Awaitable[schemas.Rotated]]

AGING, EXPIRED, AUTO_ROTATED = "agent.credential_aging", "agent.credential_expired", "agent.rotated"
PICKED_UP, ACCESS_REVIEWED = "agent.credential_picked_up", "agent.access_reviewed"


def _last(session: Session, agent_id: str, action: str) -> AuditEntry | None:
    return session.scalars(
        select(AuditEntry)
        .where(AuditEntry.agent_id == agent_id, AuditEntry.action == action)
        .order_by(AuditEntry.seq.desc())
    ).first()


def _after(entry: AuditEntry | None) -> dict[str, Any]:
    return json.loads(entry.after) if entry is not None and entry.after else {}


# Credential age ------------------------------------------------------------------------------------------------


class CredentialAgeKeeper:
    def __init__(self, context: BrokerContext, rotate: Rotate) -> None:
        self.context = context
        self.rotate = rotate

    def _lifecycle(self, role: str) -> RoleLifecycle | None:
        found = self.context.policy.roles.get(role)
        return found.lifecycle if found else None

    def age(self, session: Session, agent: Agent, now: datetime) -> CredentialAge | None:
        """The age of the agent's current credential against its role's maximum (None: no credential)."""
        lifecycle = self._lifecycle(agent.role)
        current = session.scalars(
            select(Credential).where(Credential.agent_id == agent.id, Credential.state == "current")
        ).first()
        if lifecycle is None or current is None:
            return None
        return lifecycle.credential_age(current.created_at, now)

    def report(self, session: Session, agent: Agent) -> schemas.CredentialAgeOut:
        """What monitoring shows: the credential's age, its maximum, ok/near/past, and what the broker will do."""
        lifecycle = self._lifecycle(agent.role)
        age = self.age(session, agent, self.context.now(agent.tenant))
        if lifecycle is None or age is None:
            return schemas.CredentialAgeOut(state="unknown")
        return schemas.CredentialAgeOut.model_validate(
            {**age.as_dict(), "rotate": lifecycle.rotate, "warn_days": lifecycle.warn_days}
        )

    def report_of(self, agent_id: str) -> schemas.CredentialAgeOut:
        """:meth:`report` of one agent (the caller has been checked)."""
        with self.context.session() as session:
            agent = session.get(Agent, agent_id)
            return self.report(session, agent) if agent is not None else schemas.CredentialAgeOut(state="unknown")

    async def sweep(self, tenant: str | None = None) -> dict[str, int]:
        """Flag old credentials (once per credential and state) and rotate those the policy rotates automatically."""
        done = {"credentials_flagged": 0, "credentials_rotated": 0}
        with self.context.session() as session:
            query = select(Agent).where(Agent.status == "active")
            if tenant is not None:
                query = query.where(Agent.tenant == tenant)
            agents = list(session.scalars(query))
            due: list[tuple[str, str, int, str]] = []
            for agent in agents:
                now = self.context.now(agent.tenant)
                age = self.age(session, agent, now)
                lifecycle = self._lifecycle(agent.role)
                if age is None or lifecycle is None or age.state == "ok":
                    continue
                if self._flag(session, agent, age, now):
                    done["credentials_flagged"] += 1
                automatic = lifecycle.rotate == "automatic" and agent.credential_type == "client_secret"
                if age.state == "past" and automatic:
                    maximum = age.limit.days if age.limit else "-"
                    reason = f"credential age {age.age.days} days reached the maximum of {maximum}"
                    due.append((agent.tenant, agent.id, lifecycle.grace_seconds, reason))
        for agent_tenant, agent_id, grace, reason in due:
            try:
                await self.rotate(None, agent_tenant, agent_id, grace, reason=reason)
                done["credentials_rotated"] += 1
            except BrokerError as exc:
                log.warning("automatic rotation not done yet", extra={"agent": agent_id, "reason": exc.cause})
        return done

    def _flag(self, session: Session, agent: Agent, age: CredentialAge, now: datetime) -> bool:
        action = EXPIRED if age.state == "past" else AGING
        current = session.scalars(
            select(Credential).where(Credential.agent_id == agent.id, Credential.state == "current")
        ).first()
        fingerprint = current.fingerprint if current else None
        if _after(_last(session, agent.id, action)).get("credential") == fingerprint:
            return False  # this credential was flagged so already
        audit.record(
            session,
            tenant=agent.tenant,
            agent_id=agent.id,
            actor=SYSTEM,
            action=action,
            at=now,
            after={"credential": fingerprint, **age.as_dict()},
            reason=f"credential is {age.age.days} days old; the role's maximum is "
            f"{age.limit.days if age.limit else '-'} days",
        )
        return True

    async def pick_up(self, client_id: str, secret: str) -> schemas.CredentialPickupOut:
        """The new secret of an automatic rotation, for the agent that proves it holds the old one (grace only)."""
        unknown = NotFound(
            "no credential from an automatic rotation awaits this client and secret",
            "use the agent's current secret while the rotation's grace lasts; after it, ask an admin to rotate",
        )
        with self.context.session() as session:
            agent = session.scalars(
                select(Agent).where(Agent.client_id == client_id, Agent.status == "rotating")
            ).first()
            if agent is None:
                raise unknown
            previous = session.scalars(
                select(Credential).where(Credential.agent_id == agent.id, Credential.state == "previous")
            ).first()
            rotation = _last(session, agent.id, AUTO_ROTATED)
            automatic = rotation is not None and rotation.actor == SYSTEM
            if previous is None or not automatic:
                raise unknown
            if not hmac.compare_digest(previous.fingerprint, secret_fingerprint(secret)):
                raise unknown
            tenant, idp_id, grace_ends = agent.tenant, agent.idp_id or "", agent.grace_ends_at
            agent_id = agent.id
        with idp_failure("reading the rotated secret", "; nothing was handed out", "retry"):
            new_secret = await self.context.adapter.client_secret(tenant, idp_id)
        with self.context.session() as session:
            audit.record(
                session,
                tenant=tenant,
                agent_id=agent_id,
                actor=f"{client_id} (agent)",
                action=PICKED_UP,
                at=self.context.now(tenant),
                after={"credential": secret_fingerprint(new_secret)},
                reason="the agent took its new secret with its old one",
            )
        return schemas.CredentialPickupOut(
            client_id=client_id,
            client_secret=new_secret,
            grace_ends_at=grace_ends.isoformat() if grace_ends else None,
        )


# Access reviews ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewDue:
    reason: str  # dormant | access_review
    risk_tier: str | None
    due_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "risk_tier": self.risk_tier,
            "due_at": self.due_at.isoformat() if self.due_at else None,
        }


class AccessReviews:
    def __init__(self, context: BrokerContext) -> None:
        self.context = context

    def _due(self, session: Session, agent: Agent) -> ReviewDue | None:
        role = self.context.policy.roles.get(agent.role)
        if role is None:
            return None
        tier = role.lifecycle.risk_tier
        if agent.status == "dormant":
            return ReviewDue("dormant", tier, agent.dormant_since)
        if agent.status not in ("active", "rotating"):
            return None
        reviewed = _last(session, agent.id, ACCESS_REVIEWED)
        since = datetime.fromisoformat(reviewed.at) if reviewed else (agent.activated_at or agent.created_at)
        due_at = role.lifecycle.review_due(since)
        if due_at is None or due_at > self.context.now(agent.tenant):
            return None
        return ReviewDue("access_review", tier, due_at)

    def queue(self, principal: Principal, tenant: str) -> list[schemas.AgentOut]:
        """Dormant agents, then agents whose access review is due, the longest overdue first."""
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agents = session.scalars(select(Agent).where(Agent.tenant == tenant).order_by(Agent.created_at))
            found = [(agent.as_public(), due) for agent in agents if (due := self._due(session, agent))]
        dormant = [(a, d) for a, d in found if d.reason == "dormant"]
        reviews = sorted((p for p in found if p[1].reason != "dormant"), key=lambda p: p[1].due_at or datetime.max)
        return [
            schemas.AgentOut.model_validate({**agent, "review": due.as_dict()}) for agent, due in [*dormant, *reviews]
        ]

    def recommendation(self, principal: Principal, tenant: str, agent_id: str) -> schemas.AccessReviewOut:
        """The scopes the agent did not use in its tier's review interval: the change the review recommends."""
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
            agent = self.context.visible_agent(session, principal, agent_id, tenant)
            return self._recommend(session, agent)

    def _recommend(self, session: Session, agent: Agent) -> schemas.AccessReviewOut:
        role = self.context.policy.roles.get(agent.role)
        interval = role.lifecycle.review_interval_days if role else None
        if agent.status in FINAL or interval is None:
            raise Conflict(
                f"agent {agent.name!r} has no access review ({agent.status}, role {agent.role!r} has no risk tier)",
                "give the role a risk_tier in the policy, or review a live agent",
            )
        now = self.context.now(agent.tenant)
        window = timedelta(days=interval)
        usage = list(session.scalars(select(UsageEvent).where(UsageEvent.agent_id == agent.id)))
        unused = unused_scopes(agent.as_public(), usage, self.context.tools, since=now - window)
        due = self._due(session, agent)
        return schemas.AccessReviewOut(
            agent_id=agent.id,
            risk_tier=role.lifecycle.risk_tier if role else None,
            due=due is not None and due.reason == "access_review",
            due_at=due.due_at.isoformat() if due and due.due_at else None,
            window_days=interval,
            scopes=list(agent.scopes),
            unused_scopes=unused,
            recommended={"remove_scopes": unused},
        )

    async def accept(
        self, principal: Principal, tenant: str, agent_id: str, remove_scopes: list[str] | None, reason: str = ""
    ) -> schemas.AgentOut:
        """Record the review; remove the recommended scopes the admin accepts (all of them when not named)."""
        async with self.context.agent_lock(agent_id):
            with self.context.session() as session:
                self.context.visible_tenant(session, principal, tenant)
                agent = self.context.visible_agent(session, principal, agent_id, tenant)
                if agent.status not in ("active", "rotating"):
                    raise Conflict(f"agent {agent.name!r} is {agent.status}", "only live agents get access reviews")
                if self.context.policy.needs_mfa(agent.environment):
                    self.context.require_mfa(principal, f"changing an agent's scopes in {agent.environment}")
                recommended = self._recommend(session, agent).unused_scopes
                removing = recommended if remove_scopes is None else remove_scopes
                if extra := sorted(set(removing) - set(recommended)):
                    raise BadRequest(
                        f"scopes {extra} are not recommended for removal (the agent used them, or lacks them)",
                        f"remove only scopes from the recommendation: {recommended}",
                    )
                before = list(agent.scopes)
                after = [scope for scope in before if scope not in removing]
                idp_id = agent.idp_id or ""
            if after != before:
                with idp_failure(f"narrowing agent {agent_id}'s scopes", "; its scopes are unchanged", "retry"):
                    await self.context.adapter.set_default_scopes(tenant, idp_id, after)

            def narrowed(_: Session, stored: Agent, __: datetime) -> None:
                stored.scopes = after

            return self.context.change_agent(
                principal,
                tenant,
                agent_id,
                ACCESS_REVIEWED,
                narrowed,
                {"scopes": before},
                {"scopes": after, "removed": sorted(set(before) - set(after))},
                reason or "access review",
            )
