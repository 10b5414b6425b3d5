"""A tenant's own clock (sandbox only): moved forward through the API so dormancy and graces can be tested.

Enabled by ``SANDBOX_BROKER_MOVABLE_CLOCK`` (the stack sets it; a production-like deployment leaves it off). See
:mod:`sandbox.broker.clock` for how a tenant's time relates to real time.
"""

from __future__ import annotations

from datetime import timedelta

from sandbox.broker import audit, schemas
from sandbox.broker.auth import Principal
from sandbox.broker.base import BrokerContext
from sandbox.broker.clock import MAX_ADVANCE
from sandbox.broker.errors import BadRequest, Forbidden
from sandbox.broker.store import TenantClockMove


class ClockService:
    """Each tenant's clock: read it, move it forward (sandbox only)."""

    def __init__(self, context: BrokerContext) -> None:
        self.context = context

    def show(self, principal: Principal, tenant: str) -> schemas.ClockOut:
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
        return self._clock_view(tenant)

    def advance(self, principal: Principal, tenant: str, delta: timedelta, reason: str = "") -> schemas.ClockOut:
        """Move the tenant's clock forward by ``delta`` (operator or the tenant's admin; sandbox only)."""
        with self.context.session() as session:
            self.context.visible_tenant(session, principal, tenant)
        if not self.context.settings.broker_movable_clock:
            raise Forbidden(
                f"the clock of tenant {tenant!r} cannot be moved: this broker keeps real time",
                "run it with SANDBOX_BROKER_MOVABLE_CLOCK=true (sandbox only; the stack sets it)",
            )
        if not timedelta() < delta <= MAX_ADVANCE:
            raise BadRequest(f"cannot advance a clock by {delta}", "give a positive duration of at most 3650 days")
        before = self.context.now(tenant)
        move = self.context.clocks.advance(tenant, delta)
        with self.context.session() as session:
            session.add(TenantClockMove(tenant=tenant, at=move.at, offset_seconds=move.offset.total_seconds()))
            audit.record(
                session,
                tenant=tenant,
                actor=principal.actor,
                action="tenant.clock_advanced",
                at=self.context.now(tenant),
                before={"now": before.isoformat()},
                after={"now": self.context.now(tenant).isoformat(), "offset_seconds": move.offset.total_seconds()},
                reason=reason or f"advanced by {delta}",
            )
        return self._clock_view(tenant)

    def _clock_view(self, tenant: str) -> schemas.ClockOut:
        real, offset = self.context.clock.now(), self.context.clocks.offset(tenant)
        return schemas.ClockOut(
            tenant=tenant,
            now=(real + offset).isoformat(),
            real_now=real.isoformat(),
            offset_seconds=offset.total_seconds(),
            movable=self.context.settings.broker_movable_clock,
            moves=[
                schemas.ClockMoveOut(at=move.at.isoformat(), offset_seconds=move.offset.total_seconds())
                for move in self.context.clocks.moves(tenant)
            ],
        )
