"""Each tenant's time: the broker's clock plus the tenant's offset; real-time activity mapped with the offset
in force when it happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.broker.clock import ClockMove, TenantClocks

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FixedClock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at


def test_a_tenant_moves_alone() -> None:
    base = FixedClock()
    clocks = TenantClocks(base)
    clocks.advance("a", timedelta(days=31))
    assert clocks.now("a") == T0 + timedelta(days=31)
    assert clocks.now("b") == T0 and clocks.now() == T0
    base.at = T0 + timedelta(hours=1)
    assert clocks.now("a") == T0 + timedelta(days=31, hours=1)


def test_activity_keeps_the_offset_in_force_when_it_happened() -> None:
    base = FixedClock()
    clocks = TenantClocks(base)
    before = T0 - timedelta(minutes=5)
    base.at = T0
    clocks.advance("a", timedelta(days=31))
    after = T0 + timedelta(minutes=5)
    assert clocks.at("a", before) == before  # 31 days old at the tenant's now
    assert clocks.at("a", after) == after + timedelta(days=31)  # fresh at the tenant's now
    assert clocks.at("b", after) == after
    base.at = T0 + timedelta(hours=1)
    clocks.advance("a", timedelta(days=1))
    assert clocks.offset("a") == timedelta(days=32)
    assert clocks.at("a", after) == after + timedelta(days=31)


def test_moves_are_restored_in_order_and_never_go_back() -> None:
    moves = [ClockMove("a", T0 + timedelta(hours=2), timedelta(days=3)), ClockMove("a", T0, timedelta(days=1))]
    clocks = TenantClocks(FixedClock(), moves)
    assert clocks.offset("a") == timedelta(days=3)
    assert [m.offset for m in clocks.moves("a")] == [timedelta(days=1), timedelta(days=3)]
    with pytest.raises(ValueError, match="only moves forward"):
        clocks.advance("a", timedelta(seconds=-1))
