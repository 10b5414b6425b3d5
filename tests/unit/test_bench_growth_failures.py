"""cost-growth counts the provisions and revokes the broker refuses while a tenant grows and shrinks, and goes on;
too many refused provisions stop the growth with a note. A fake broker stands in for the stack (the benchmark
itself runs against the real one)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from sandbox.admin.client import BrokerRefused
from sandbox.bench import cost_growth
from sandbox.bench.registry import BenchContext
from sandbox.config import Settings


class RefusingBroker:
    """Provisions agents, refusing the calls whose number is in ``refuse`` (as the broker does when the IdP fails)."""

    def __init__(self, refuse: set[int] | None = None, *, always: bool = False) -> None:
        self.calls = itertools.count(1)
        self.refuse = refuse or set()
        self.always = always

    async def provision(self, tenant: str) -> str:
        call = next(self.calls)
        if self.always or call in self.refuse:
            raise BrokerRefused(503, "idp_unavailable", f"the IdP failed on call {call}", "retry", {})
        return f"agent-{call}"

    async def revoke(self, agent: str) -> None:
        pass

    async def get(self, path: str, **params: Any) -> list[str]:  # the agents list
        return ["agent"]

    async def close(self) -> None:
        pass


def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, broker: RefusingBroker) -> dict[str, Any]:
    monkeypatch.setattr(cost_growth, "OperatorBroker", lambda settings, threads: broker)

    async def measured(context: Any, broker: Any, tenant: str, grown: list[Any], failed: Any) -> dict[str, Any]:
        call = {"median": 1.0}
        return {
            "agents": len(grown),
            "provision_call": call,
            "revoke_call": call,
            "agents_list_call": call,
            "token_grants_per_second": 1.0,
            "rss_mib": {},
        }

    monkeypatch.setattr(cost_growth, "_measure", measured)
    monkeypatch.setattr(cost_growth, "_held", lambda context: {})
    context = BenchContext(Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache"), quick=True)
    return asyncio.run(cost_growth.cost_growth(context))


def probe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, broker: RefusingBroker
) -> tuple[dict[str, Any], cost_growth.Failed]:
    """One size's probes against ``broker``: what they measured, and the calls it refused."""

    async def grants(agent: Any, count: int) -> float:
        return 1.0

    monkeypatch.setattr(cost_growth, "_grants_per_second", grants)
    monkeypatch.setattr(cost_growth, "_rss_mib", lambda context: {})
    context = BenchContext(Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache"), quick=True)
    failed = cost_growth.Failed()
    measured = asyncio.run(cost_growth._measure(context, broker, "t", ["agent"], failed))  # type: ignore[arg-type]
    return measured, failed


def test_refused_provisions_are_counted_and_the_tenant_still_reaches_each_size(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    figures = run(monkeypatch, tmp_path, RefusingBroker({5, 50, 500}))
    assert [(size, at["agents"]) for size, at in figures["at_size"].items()] == [("100", 100), ("1000", 1000)]
    assert figures["failed_provisions"]["count"] == 3
    assert "the IdP failed on call 5" in figures["failed_provisions"]["first"][0]


def test_a_broker_that_refuses_every_provision_stops_the_growth_with_a_note(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    figures = run(monkeypatch, tmp_path, RefusingBroker(always=True))
    assert figures["failed_provisions"]["count"] > cost_growth.MAX_FAILED_PROVISIONS
    assert figures["at_size"]["stopped"].startswith(f"{figures['failed_provisions']['count']} provisions failed at 0")


def test_a_refused_probe_is_counted_and_the_size_is_still_measured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The probes at each size are provisions too: one the broker refuses is a failure counted, not a crash."""
    measured, failed = probe(monkeypatch, tmp_path, RefusingBroker({2, 4}))
    assert len(failed.provisions) == 2 and "the IdP failed on call 2" in failed.provisions[0]
    assert measured["provision_call"]["n"] == cost_growth.PROBES - 2
    assert measured["revoke_call"]["n"] == cost_growth.PROBES - 2


class RevokeRefusingBroker(RefusingBroker):
    """Refuses every third revoke, as the broker does when the IdP drops the call that removes a client."""

    def __init__(self) -> None:
        super().__init__()
        self.revokes = itertools.count(1)
        self.revoked: list[str] = []

    async def revoke(self, agent: str) -> None:
        if next(self.revokes) % 3 == 0:
            raise BrokerRefused(503, "idp_unavailable", f"the IdP failed while removing {agent}", "retry", {})
        self.revoked.append(agent)


def test_refused_revokes_are_counted_and_every_other_agent_is_still_revoked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broker = RevokeRefusingBroker()
    figures = run(monkeypatch, tmp_path, broker)
    assert figures["failed_revokes"]["count"] == 333  # 1,000 grown agents revoked, every third refused
    assert "the IdP failed while removing agent-3" in figures["failed_revokes"]["first"][0]
    assert len(broker.revoked) == 667
    assert figures["mcp_server_rss_mib_with_revocations_held"].keys() == {"0", "100", "1000"}


def test_a_refused_probe_revoke_is_counted_and_left_out_of_the_latencies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    measured, failed = probe(monkeypatch, tmp_path, RevokeRefusingBroker())
    assert len(failed.revokes) == cost_growth.PROBES // 3
    assert measured["revoke_call"]["n"] == cost_growth.PROBES - cost_growth.PROBES // 3
    assert measured["provision_call"]["n"] == cost_growth.PROBES
