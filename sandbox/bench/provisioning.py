"""Provisioning throughput: agents provisioned and revoked per second through the broker, vs the same Keycloak
Admin API calls made directly (create the client with its service account, read its secret; disable it, delete it);
and, when the stack lends Hydras, through the broker for a tenant whose agents are on an Ory Hydra.

Both paths run with the same concurrency, in alternating rounds, so a machine whose load changes during the run
weighs on both alike; the direct path runs every ``DIRECT_EVERY``-th round (fewer agents: its rate needs no more,
and the run stays short). The broker also checks policy, records each agent and an
audit entry, and pushes a revocation event to each server with an event endpoint.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.bench.clients import BenchAgent, OperatorBroker, tenant_on_hydra
from sandbox.bench.pacing import bounded
from sandbox.bench.registry import BenchContext, benchmark, target
from sandbox.bench.stats import ratio, summarize
from sandbox.idp import CertifyingProvider, identity_provider
from sandbox.idp.provider import AgentClient, AgentClientSpec

CONCURRENCY = 8
ROUND = 50
DIRECT_EVERY = 4
TARGET_RATIO = 0.8
TARGET_AGENTS, TARGET_SECONDS = 1000, 120


class Lane:
    """One way of provisioning and revoking agents, with each call's latency and each phase's wall time; through
    the broker, also the broker's own account of when each step of its work ended (``steps_ms``)."""

    def __init__(self) -> None:
        self.agents = 0
        self.provision_seconds = 0.0
        self.revoke_seconds = 0.0
        self.provision_ms: list[float] = []
        self.revoke_ms: list[float] = []
        self.provision_steps: list[dict[str, float]] = []
        self.revoke_steps: list[dict[str, float]] = []

    async def _timed(self, samples: list[float], call: Callable[[], Awaitable[Any]]) -> Any:
        began = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - began) * 1000)
        return result

    async def round(
        self, count: int, provision: Callable[[], Awaitable[Any]], revoke: Callable[[Any], Awaitable[Any]]
    ) -> None:
        began = time.perf_counter()
        made = await bounded(
            (lambda: self._timed(self.provision_ms, provision) for _ in range(count)), concurrency=CONCURRENCY
        )
        provisioned = time.perf_counter()
        await bounded(
            (lambda agent=agent: self._timed(self.revoke_ms, lambda: revoke(agent)) for agent in made),
            concurrency=CONCURRENCY,
        )
        self.agents += len(made)
        self.provision_seconds += provisioned - began
        self.revoke_seconds += time.perf_counter() - provisioned

    def figures(self) -> dict[str, Any]:
        total = self.provision_seconds + self.revoke_seconds
        return {
            "agents": self.agents,
            "provisioned_per_second": round(self.agents / self.provision_seconds, 2),
            "revoked_per_second": round(self.agents / self.revoke_seconds, 2),
            "lifecycles_per_second": round(self.agents / total, 2),
            "seconds": round(total, 2),
            "provision_call": summarize(self.provision_ms),
            "revoke_call": summarize(self.revoke_ms),
            **({"provision_steps_ms": _steps(self.provision_steps)} if self.provision_steps else {}),
            **({"revoke_steps_ms": _steps(self.revoke_steps)} if self.revoke_steps else {}),
        }


def _steps(reports: list[dict[str, float]]) -> dict[str, Any]:
    """Each step the broker reported, as a distribution of when it ended after its work began (in step order)."""
    names = dict.fromkeys(name for report in reports for name in report)
    return {name: summarize([r[name] for r in reports if name in r]) for name in names}


def _through_broker(
    broker: OperatorBroker, tenant: str, lane: Lane
) -> tuple[Callable[[], Awaitable[BenchAgent]], Callable[[BenchAgent], Awaitable[None]]]:
    """Provision and revoke through the broker, keeping the steps it reports in its answers on ``lane``."""

    async def provision() -> BenchAgent:
        agent = await broker.provision(tenant)
        if agent.steps_ms:
            lane.provision_steps.append(agent.steps_ms)
        return agent

    async def revoke(agent: BenchAgent) -> None:
        steps = (await broker.revoke(agent)).get("steps_ms")
        if steps:
            lane.revoke_steps.append(dict(steps))

    return provision, revoke


class DirectKeycloak:
    """The Admin API calls the broker makes for an agent, made directly: what provisioning costs without it."""

    def __init__(self, adapter: CertifyingProvider, tenant: str, audiences: list[str]) -> None:
        self.adapter = adapter
        self.tenant = tenant
        self.audiences = audiences
        self.live: dict[str, AgentClient] = {}

    async def provision(self) -> AgentClient:
        client_id = f"bench-direct-{uuid.uuid4().hex[:12]}"
        spec = AgentClientSpec(
            client_id=client_id,
            name=f"{client_id} (mcp-sandbox bench)",
            scopes=["mcp:tool:analytics.read"],
            audiences=self.audiences,
            token_lifetime=300,
            attributes={"mcp-sandbox.agent-id": str(uuid.uuid4()), "mcp-sandbox.tenant": self.tenant},
        )
        client = await self.adapter.create_agent_client(self.tenant, spec)
        self.live[client.id] = client
        return client

    async def revoke(self, client: AgentClient) -> None:
        await self.adapter.set_client_enabled(self.tenant, client.id, False)
        await self.adapter.delete_client(self.tenant, client.id)
        self.live.pop(client.id, None)

    async def close(self) -> None:
        for client in list(self.live.values()):
            await self.adapter.delete_client(self.tenant, client.id)


def _why_slower(broker: dict[str, Any], direct: dict[str, Any]) -> str:
    """Where the broker's extra time per call went, from this run's own figures: the calls' medians, the broker's
    own steps (when each ended after its work began), and the rest of the call outside those steps."""
    calls = [("provision", "provision_call", "provision_steps_ms"), ("revoke", "revoke_call", "revoke_steps_ms")]
    medians = ", ".join(
        f"{name} {broker[call]['median']:.0f} ms vs {direct[call]['median']:.0f} ms" for name, call, _ in calls
    )
    parts = [f"median call through the broker vs Keycloak directly: {medians}"]
    ended: list[str] = []
    outside: list[str] = []
    for name, call, key in calls:
        steps = broker.get(key)
        if not steps:
            continue
        ended.append(f"{name}: " + ", ".join(f"{step} {s['median']:.0f}" for step, s in steps.items()))
        last = max(s["median"] for s in steps.values())
        outside.append(f"{name} {broker[call]['median'] - last:.0f} ms")
    if ended:
        parts.append(f"the broker's steps ended (median ms after its work began) on {'; on '.join(ended)}")
        parts.append(
            "the rest of the call, outside those steps (call median minus the last step's median: the HTTP hop, "
            "the API's admin-token check, the thread pools, and on revoke the final record): " + ", ".join(outside)
        )
    else:
        parts.append("the broker reported no steps of its work, so where its time went is not measured")
    return "; ".join(parts)


@benchmark("provisioning", "Agents provisioned and revoked per second: through the broker vs Keycloak directly")
async def provisioning(context: BenchContext) -> dict[str, Any]:
    settings = context.settings
    tenant = settings.tenants[0]
    wanted = context.size(TARGET_AGENTS, 10)
    deadline = time.perf_counter() + context.size(150, 60)
    broker = OperatorBroker(settings, threads=CONCURRENCY)
    direct = DirectKeycloak(identity_provider(settings), tenant, [s.url for s in settings.mcp_servers])
    through_broker, directly, on_hydra = Lane(), Lane(), Lane()

    provision_through_broker, revoke_through_broker = _through_broker(broker, tenant, through_broker)

    with tenant_on_hydra(settings) as hydra_tenant:
        try:
            rounds = 0
            while through_broker.agents < wanted and time.perf_counter() < deadline:
                count = min(ROUND, wanted - through_broker.agents)
                await through_broker.round(count, provision_through_broker, revoke_through_broker)
                if rounds % DIRECT_EVERY == 0:
                    await directly.round(count, direct.provision, direct.revoke)
                    if hydra_tenant is not None:  # the same rounds through the broker, the agents on a Hydra
                        await on_hydra.round(count, *_through_broker(broker, hydra_tenant, on_hydra))
                rounds += 1
        finally:
            await broker.close()
            await direct.close()
    lanes = [("broker", through_broker), ("direct", directly)] + (
        [("broker on hydra", on_hydra)] if on_hydra.agents else []
    )
    for name, path in lanes:
        context.distributions[f"provision, {name}"] = path.provision_ms
        context.distributions[f"revoke, {name}"] = path.revoke_ms
    broker_figures, direct_figures = through_broker.figures(), directly.figures()
    hydra_figures = on_hydra.figures() if on_hydra.agents else None

    def versus(rate: str) -> float:
        return ratio(broker_figures[rate], direct_figures[rate])

    lifecycle_ratio = versus("lifecycles_per_second")
    ran = broker_figures["agents"]
    reached = ran >= TARGET_AGENTS
    seconds_for_target = broker_figures["seconds"] * TARGET_AGENTS / ran
    return {
        "concurrency": CONCURRENCY,
        "round": ROUND,
        "broker": broker_figures,
        "direct": direct_figures,
        # The same broker calls for a tenant whose agents are on an Ory Hydra (its people on Keycloak), in the
        # direct path's rounds; None when the stack lends no Hydra.
        "broker_on_hydra": hydra_figures,
        "hydra_vs_keycloak_through_broker": {
            rate: ratio(hydra_figures[rate], broker_figures[rate])
            for rate in ("provisioned_per_second", "revoked_per_second", "lifecycles_per_second")
        }
        if hydra_figures
        else None,
        "broker_vs_direct": {
            "provision_ratio": versus("provisioned_per_second"),
            "revoke_ratio": versus("revoked_per_second"),
            "lifecycle_ratio": lifecycle_ratio,
            **target(
                f"lifecycle ratio >= {TARGET_RATIO}",
                f"ratio {lifecycle_ratio:.3f}",
                lifecycle_ratio >= TARGET_RATIO,
                _why_slower(broker_figures, direct_figures),
            ),
        },
        f"broker_seconds_for_{TARGET_AGENTS}_agents": {
            "seconds": round(seconds_for_target, 1),
            "projected": not reached,  # from the agents that ran within the time budget
            **target(
                f"under {TARGET_SECONDS} s",
                f"{seconds_for_target:.0f} s" + (f" (projected from {ran} agents)" if not reached else ""),
                reached and seconds_for_target < TARGET_SECONDS,
                f"{broker_figures['lifecycles_per_second']} agents provisioned and revoked per second through the "
                f"broker, {CONCURRENCY} at a time"
                + ("" if reached else f"; {'quick mode asks for' if context.quick else 'the time budget let'} {ran}"),
            ),
        },
    }
