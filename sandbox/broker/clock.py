"""The broker's clocks: the system clock in service, a movable one in tests, and each tenant's own time.

A tenant's time is the broker's clock plus the tenant's offset. The offset is zero unless the tenant's clock was
moved forward (sandbox only: ``POST /tenants/{t}/clock``), so scenarios running in parallel, each in its own
tenant, move time without disturbing each other. Dormancy, grace periods and every timestamp the broker records
for a tenant are in the tenant's time.

Activity that others report (Keycloak's login and token-exchange events, MCP servers' usage reports) carries
real time. :meth:`TenantClocks.at` maps it into the tenant's time with the offset in force when it happened:
a token issued before a 31-day move stays 31 days old, a token issued after it counts as issued "now".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

#: How far a tenant's clock moves forward at once, at most.
MAX_ADVANCE = timedelta(days=3650)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class MovableClock:
    """Real time plus an offset that tests move forward (``advance(days=31)``)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass(frozen=True)
class ClockMove:
    """A tenant's clock was moved at ``at`` (the broker's own time); from then on it runs ``offset`` ahead."""

    tenant: str
    at: datetime
    offset: timedelta


class TenantClocks:
    """Each tenant's time: ``base`` plus the offset of the tenant's latest move (none: the base time itself)."""

    def __init__(self, base: Clock, moves: Iterable[ClockMove] = ()) -> None:
        self.base = base
        self._moves: dict[str, list[ClockMove]] = {}
        for move in sorted(moves, key=lambda m: m.at):
            self._moves.setdefault(move.tenant, []).append(move)

    def offset(self, tenant: str | None) -> timedelta:
        moves = self._moves.get(tenant or "")
        return moves[-1].offset if moves else timedelta()

    def now(self, tenant: str | None = None) -> datetime:
        return self.base.now() + self.offset(tenant)

    def at(self, tenant: str | None, real: datetime) -> datetime:
        """The tenant's time of something that happened at ``real``: shifted by the offset in force then."""
        offset = timedelta()
        for move in self._moves.get(tenant or "", []):
            if move.at > real:
                break
            offset = move.offset
        return real + offset

    def advance(self, tenant: str, delta: timedelta) -> ClockMove:
        """Move the tenant's clock forward by ``delta`` from now on; return the move (to be stored)."""
        if delta < timedelta():
            raise ValueError("a tenant's clock only moves forward")
        move = ClockMove(tenant, self.base.now(), self.offset(tenant) + delta)
        self._moves.setdefault(tenant, []).append(move)
        return move

    def moves(self, tenant: str) -> list[ClockMove]:
        return list(self._moves.get(tenant, []))
