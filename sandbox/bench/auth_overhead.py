"""Auth overhead at the MCP server: the same tool call with token validation and without, side by side.

The stack's ``jwt`` and ``introspect`` servers (one process each) are compared with one more instance of the same
server, one process, started here with ``mcp-sandbox mcp-server --no-auth`` (a switch for benchmarks only). One
client calls the same tool on the three in turn, one call at a time, with the same token, so the requests are
identical and only the validation differs; the introspect server answers from its cache between refreshes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sandbox.agent.tokens import fetch_token
from sandbox.bench.agents import McpCaller, OperatorBroker
from sandbox.bench.registry import BenchContext, benchmark
from sandbox.bench.stack_start import MCP_SANDBOX
from sandbox.bench.stats import ratio, summarize
from sandbox.certify.mcp_http import served
from sandbox.config import Settings
from sandbox.stack.ports import free_port
from sandbox.stack.process import is_alive, spawn, stop
from sandbox.stack.readiness import wait_for_http

WARM_UP = 30
TARGETS = {"jwt": 1.10, "introspect": 1.25}  # the most a p50 may grow over the same call without auth


@contextlib.asynccontextmanager
async def server_without_auth(settings: Settings, tenant: str) -> AsyncIterator[str]:
    """The reference MCP server without auth on a free loopback port, until the block ends; its /mcp URL."""
    port = free_port(settings.host)
    command = [MCP_SANDBOX, "mcp-server", "--no-auth", "--mode", "jwt", "--port", str(port)]
    command += ["--issuer", settings.issuer(tenant)]
    with tempfile.TemporaryDirectory(prefix="bench-no-auth-") as scratch:
        log = Path(scratch) / "mcp-server-no-auth.log"
        record = spawn(command, env={**os.environ, **settings.as_environment()}, log_path=log)
        try:
            health = f"http://{settings.host}:{port}/health"
            alive = lambda: is_alive(record)  # noqa: E731
            await asyncio.to_thread(wait_for_http, "mcp-server --no-auth", health, timeout=60, alive=alive, log=log)
            yield f"http://{settings.host}:{port}/mcp"
        finally:
            await asyncio.to_thread(stop, record)


def _measure(
    mcp: McpCaller, targets: dict[str, tuple[str, str | None]], token: str, calls: int, budget: float
) -> dict[str, list[float]]:
    """Sequential calls, the servers in turn (rotating who goes first); latency in ms per server."""
    names = list(targets)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        for _ in range(WARM_UP):
            mcp.call_blocking(targets[name][0], token, targets[name][1])
    deadline = time.perf_counter() + budget
    for round_ in range(calls):
        if time.perf_counter() > deadline:
            break
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            url, session = targets[name]
            began = time.perf_counter()
            response = mcp.call_blocking(url, token, session)
            samples[name].append((time.perf_counter() - began) * 1000)
            if not served(response):
                raise RuntimeError(f"{name}: the tool call got HTTP {response.status_code}")
    return samples


@benchmark("auth-overhead", "Tool-call latency with token validation vs the same server without auth")
async def auth_overhead(context: BenchContext) -> dict[str, Any]:
    settings = context.settings
    tenant = settings.tenants[0]
    jwt_url, introspect_url = settings.mcp_server("jwt").url, settings.mcp_server("introspect").url
    broker = OperatorBroker(settings, threads=2)
    mcp = McpCaller(threads=2)
    try:
        agent = await broker.provision(tenant, servers=[jwt_url, introspect_url])
        token = (await fetch_token(agent.token_url, agent.credential)).access_token
        async with server_without_auth(settings, tenant) as no_auth_url:
            targets = {}
            for name, url in (("no auth", no_auth_url), ("jwt", jwt_url), ("introspect", introspect_url)):
                targets[name] = (url, await mcp.open_session(url, token))
            calls = context.size(1000, 30)
            samples = await asyncio.to_thread(_measure, mcp, targets, token, calls, context.size(120, 30))
    finally:
        await broker.close()
        mcp.close()
    for name, values in samples.items():
        context.distributions[f"tool call, {name}"] = values
    summaries = {name: summarize(values) for name, values in samples.items()}
    baseline = summaries["no auth"]
    results: dict[str, Any] = {"tool": "analytics.query", "calls_per_server": len(samples["no auth"]), **summaries}
    for mode, limit in TARGETS.items():
        p50 = ratio(summaries[mode]["median"], baseline["median"])
        results[f"{mode}_vs_no_auth"] = {
            "p50_ratio": p50,
            "p95_ratio": ratio(summaries[mode]["p95"], baseline["p95"]),
            "p99_ratio": ratio(summaries[mode]["p99"], baseline["p99"]),
            "target": f"p50 ratio <= {limit:.2f}",
            "measured": f"p50 ratio {p50:.3f}",
            "target_met": p50 <= limit,
        }
    results["introspection_cache_ttl_s"] = settings.mcp_introspection_cache_ttl
    results["note"] = (
        "one client, one call at a time, the three servers in turn, the same token to each (the server without auth "
        "ignores it); the stack's servers also queue usage reports for the broker (off the request path)"
    )
    return results
