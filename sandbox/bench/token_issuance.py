"""Token issuance: client-credentials grants per second from a tenant realm (plain HTTP on loopback)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import psutil

from sandbox.agent.tokens import ClientSecretCredential, TokenClient
from sandbox.bench.registry import BenchContext, benchmark
from sandbox.bench.stats import split, summarize
from sandbox.idp import identity_provider
from sandbox.idp.provider import AgentClientSpec
from sandbox.oidc import discover_async
from sandbox.stack.state import load_state

CONCURRENCY = 8


def _keycloak_cpu_seconds(context: BenchContext) -> float | None:
    state = load_state(context.settings)
    entry = state.components.get("keycloak") if state else None
    if entry is None or entry.process is None:
        return None
    try:
        root = psutil.Process(entry.process.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return None


@benchmark("token-issuance", "Client-credentials grants per second from a tenant realm")
async def token_issuance(context: BenchContext) -> dict[str, Any]:
    settings = context.settings
    tenant = settings.tenants[0]
    adapter = identity_provider(settings)
    client_id = f"bench-tokens-{uuid.uuid4().hex[:8]}"
    agent = await adapter.create_agent_client(
        tenant,
        AgentClientSpec(client_id, client_id, ["mcp:tool:analytics.read"], [settings.mcp_url], token_lifetime=300),
    )
    assert agent.secret is not None
    total = context.size(2000, 100)
    latencies: list[float] = []
    try:
        token_url = (await discover_async(settings.issuer(tenant))).token_endpoint
        async with TokenClient(token_url, ClientSecretCredential(agent.client_id, agent.secret)) as client:
            for _ in range(10):  # warm-up: connections, JIT
                await client.fetch()

            async def worker(count: int) -> None:
                for _ in range(count):
                    began = time.perf_counter()
                    await client.fetch()
                    latencies.append((time.perf_counter() - began) * 1000)

            cpu_before = _keycloak_cpu_seconds(context)
            began = time.perf_counter()
            await asyncio.gather(*(worker(share) for share in split(total, CONCURRENCY)))
            elapsed = time.perf_counter() - began
            cpu_after = _keycloak_cpu_seconds(context)
    finally:
        await adapter.delete_client(tenant, agent.id)
    cores = os.cpu_count() or 1
    rate = len(latencies) / elapsed
    context.distributions["token issuance latency"] = latencies
    result: dict[str, Any] = {
        "grants": len(latencies),
        "concurrency": CONCURRENCY,
        "grants_per_second": round(rate, 1),
        "cores": cores,
        "grants_per_second_per_core": round(rate / cores, 1),
        "latency": summarize(latencies),
        "tls": False,
        "reference": "Keycloak's sizing guide: about 120 grants/s per vCPU with TLS",
        "note": "the load generator shares the machine's cores with Keycloak",
    }
    if cpu_before is not None and cpu_after is not None and cpu_after > cpu_before:
        result["keycloak_cpu_seconds"] = round(cpu_after - cpu_before, 2)
        result["grants_per_keycloak_cpu_second"] = round(len(latencies) / (cpu_after - cpu_before), 1)
    return result
