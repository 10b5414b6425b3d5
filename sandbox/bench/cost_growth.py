"""Cost growth: one tenant grown to 100, 1,000 and 10,000 agents (``--quick`` stops at 1,000), and what each size
costs.

The tenant grows through the broker (8 provisions at a time). At each size: the latency of provisioning and
revoking a few probe agents, client-credentials grants per second for one of the tenant's agents, the latency of
the broker's agents list, and the resident memory of Keycloak, the broker and the MCP servers. Then the grown
agents are revoked, and the ``jwt+events`` server's memory is read again at each size of the revocations it holds
(a revocation is kept as long as a token it covers can live).

Growth is bounded by a time budget (30 minutes; 5 in quick mode): when it runs out, the figures stop at the last
size reached, and ``at_size.stopped`` says where. The grown agents are always revoked at the end. A provision or
revoke the broker refuses (the IdP failed) is counted and named in the figures; the benchmark goes on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.admin.client import BrokerRefused
from sandbox.agent.tokens import TokenClient
from sandbox.bench.clients import BenchAgent, OperatorBroker
from sandbox.bench.pacing import bounded
from sandbox.bench.registry import BenchContext, benchmark
from sandbox.bench.stats import ratio, split, summarize
from sandbox.stack.process import rss_bytes
from sandbox.stack.state import load_state

SIZES = (100, 1000, 10000)
QUICK_SIZES = (100, 1000)
CONCURRENCY = 8
PROBES = 10  # agents provisioned and revoked at each size, timed one by one
GRANTS = 200  # client-credentials grants at each size
LISTS = 5  # agents-list calls at each size
#: The whole benchmark's time budget (s); growth stops at the size it reached when it is spent.
BUDGET, QUICK_BUDGET = 1800, 300
#: Provisions the broker may refuse while a tenant grows or is probed (each is counted and named); one more stops
#: the growth.
MAX_FAILED_PROVISIONS = 20


@dataclass
class Failed:
    """The calls the broker refused, by kind: each is counted and the first few named in the figures."""

    provisions: list[str] = field(default_factory=list)
    revokes: list[str] = field(default_factory=list)

    @property
    def too_many(self) -> bool:
        return len(self.provisions) > MAX_FAILED_PROVISIONS


def _rss_mib(context: BenchContext) -> dict[str, float]:
    state = load_state(context.settings)
    if state is None:
        return {}
    return {
        name: round(rss_bytes(entry.process) / 2**20, 1)
        for name, entry in state.components.items()
        if entry.process is not None
    }


async def _grants_per_second(agent: BenchAgent, count: int) -> float:
    async with TokenClient(agent.token_url, agent.credential) as client:
        await client.fetch()  # the connection, before timing

        async def worker(share: int) -> None:
            for _ in range(share):
                await client.fetch()

        began = time.perf_counter()
        await asyncio.gather(*(worker(share) for share in split(count, CONCURRENCY)))
        return round(count / (time.perf_counter() - began), 1)


async def _timed(samples: list[float], call: Any) -> Any:
    began = time.perf_counter()
    result = await call()
    samples.append((time.perf_counter() - began) * 1000)
    return result


async def _revoke(broker: OperatorBroker, agent: BenchAgent, failed: list[str]) -> None:
    """Revoke ``agent``; a revoke the broker refuses (the IdP failed) is counted, and the benchmark goes on."""
    try:
        await broker.revoke(agent)
    except BrokerRefused as exc:  # the broker retries it by itself; the benchmark's close revokes it again
        failed.append(str(exc))


async def _measure(
    context: BenchContext, broker: OperatorBroker, tenant: str, grown: list[BenchAgent], failed: Failed
) -> dict:
    provision_ms: list[float] = []
    revoke_ms: list[float] = []
    list_ms: list[float] = []
    for _ in range(PROBES):  # one at a time: the latency of one call on a tenant this size
        try:
            probe = await _timed(provision_ms, lambda: broker.provision(tenant))
        except BrokerRefused as exc:  # counted with the growth's failures; its latency is not a provision's
            failed.provisions.append(str(exc))
            continue
        try:
            await _timed(revoke_ms, lambda probe=probe: broker.revoke(probe))
        except BrokerRefused as exc:  # counted; its latency is not a revoke's
            failed.revokes.append(str(exc))
    grants = await _grants_per_second(grown[-1], context.size(GRANTS, GRANTS // 2))
    listed = 0
    for _ in range(LISTS):
        listed = len(await _timed(list_ms, lambda: broker.get(f"/tenants/{tenant}/agents", status="active")))
    return {
        "agents": len(grown),
        "agents_listed": listed,
        "provision_call": summarize(provision_ms),
        "revoke_call": summarize(revoke_ms),
        "token_grants_per_second": grants,
        "agents_list_call": summarize(list_ms),
        "rss_mib": _rss_mib(context),
    }


def _held(context: BenchContext) -> dict[str, float]:
    """Resident memory of each MCP server (MiB)."""
    return {name: mib for name, mib in _rss_mib(context).items() if name.startswith("mcp")}


@benchmark("cost-growth", "One tenant grown to 100, 1,000 and 10,000 agents: what each size costs")
async def cost_growth(context: BenchContext) -> dict[str, Any]:
    settings = context.settings
    tenant = settings.tenants[0]
    sizes = QUICK_SIZES if context.quick else SIZES
    deadline = time.perf_counter() + (QUICK_BUDGET if context.quick else BUDGET)
    broker = OperatorBroker(settings, threads=CONCURRENCY)
    grown: list[BenchAgent] = []
    at_size: dict[str, Any] = {}
    memory_with_revocations: dict[str, Any] = {}
    growth_seconds: dict[str, float] = {}
    failed = Failed()

    async def provision() -> BenchAgent | None:
        """One more agent; a provision the broker refuses (the IdP failed) is counted, and growth goes on."""
        try:
            return await broker.provision(tenant)
        except BrokerRefused as exc:
            failed.provisions.append(str(exc))
            return None

    began = time.perf_counter()
    try:
        for size in sizes:
            started = time.perf_counter()
            while len(grown) < size and time.perf_counter() < deadline and not failed.too_many:
                more = await bounded(
                    (provision for _ in range(size - len(grown))), concurrency=CONCURRENCY, deadline=deadline
                )
                grown.extend(agent for agent in more if agent is not None)
            growth_seconds[str(size)] = round(time.perf_counter() - started, 1)
            if failed.too_many:
                refused = len(failed.provisions)
                at_size["stopped"] = f"{refused} provisions failed at {len(grown)} agents, growing to {size}"
                break
            if len(grown) < size:
                at_size["stopped"] = f"the time budget ran out at {len(grown)} agents, growing to {size}"
                break
            at_size[str(size)] = await _measure(context, broker, tenant, grown, failed)
        memory_with_revocations["0"] = _held(context)
        revoked = 0
        for size in sizes:  # the grown agents revoked in the same steps; the jwt+events server holds each
            batch = grown[revoked:size]
            if len(batch) < size - revoked:
                break
            await bounded(
                (lambda agent=agent: _revoke(broker, agent, failed.revokes) for agent in batch), concurrency=CONCURRENCY
            )
            revoked = size
            memory_with_revocations[str(size)] = _held(context)
    finally:
        await broker.close()  # revokes whatever is still live
    figures: dict[str, Any] = {
        "sizes": list(sizes),
        "concurrency": CONCURRENCY,
        "probes_per_size": PROBES,
        "seconds_to_grow_to": growth_seconds,
        "failed_provisions": {"count": len(failed.provisions), "first": failed.provisions[:3]},
        "failed_revokes": {"count": len(failed.revokes), "first": failed.revokes[:3]},
        "at_size": at_size,
        "mcp_server_rss_mib_with_revocations_held": memory_with_revocations,
        "seconds": round(time.perf_counter() - began, 1),
    }
    for size, measured in at_size.items():
        if isinstance(measured, dict):
            agents = float(size)
            context.growth.setdefault("provision call, median ms", []).append(
                (agents, measured["provision_call"]["median"])
            )
            context.growth.setdefault("revoke call, median ms", []).append((agents, measured["revoke_call"]["median"]))
            context.growth.setdefault("agents list call, median ms", []).append(
                (agents, measured["agents_list_call"]["median"])
            )
            context.growth.setdefault("token grants/s", []).append((agents, measured["token_grants_per_second"]))
            for name, mib in measured["rss_mib"].items():
                context.growth.setdefault(f"RSS {name}, MiB", []).append((agents, mib))
    first, last, wanted = str(sizes[0]), str(sizes[-1]), str(SIZES[-1])
    missing = (
        f"quick mode stops at {sizes[-1]} agents" if context.quick else at_size.get("stopped", "")
    ) or f"the tenant did not reach {wanted} agents"
    if first in at_size and last in at_size:
        small, large = at_size[first], at_size[last]
        figures[f"provision_at_{last}_vs_{first}"] = {
            "ratio": ratio(large["provision_call"]["median"], small["provision_call"]["median"]),
            "note": "median provision call at the largest size over the smallest",
        }
        figures[f"grants_at_{last}_vs_{first}"] = {
            "ratio": ratio(large["token_grants_per_second"], small["token_grants_per_second"]),
        }
    held = memory_with_revocations.get(last)
    if held:
        figures[f"mcp_server_rss_with_{last}_revocations_mib"] = max(held.values())
    if last != wanted or wanted not in at_size:  # the targets' figures are at 10,000: say why they are missing
        names = (
            f"provision_at_{wanted}_vs_{first}",
            f"grants_at_{wanted}_vs_{first}",
            f"mcp_server_rss_with_{wanted}_revocations_mib",
        )
        figures["not_measured"] = {name: f"not measured: {missing}" for name in names if name not in figures}
    return figures
