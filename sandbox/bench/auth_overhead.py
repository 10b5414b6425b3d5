"""Auth overhead at the MCP server: the same tool call with token validation and without, side by side.

Three instances of the reference server, one process each, started here alike (``mcp-sandbox mcp-server``, the
stack's settings, the first tenant's issuer, no broker): ``--mode jwt``, ``--mode introspect`` (with its own
introspection client in the realm, and its answer cache), and ``--no-auth`` (a switch for benchmarks only); and a
fourth server, the same tool behind the ``mcp`` SDK's own bearer middleware with a verifier equivalent to ``jwt``
mode (:mod:`sandbox.bench.sdk_server`). One client calls the same tool on the four in turn, one call at a time,
with the same token, so the requests are identical and only the validation differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.agent.mcp_http import served
from sandbox.agent.tokens import ClientSecretCredential, fetch_token
from sandbox.bench.clients import McpCaller
from sandbox.bench.registry import BenchContext, benchmark, target
from sandbox.bench.stack_start import MCP_SANDBOX
from sandbox.bench.stats import ratio, summarize
from sandbox.config import Settings
from sandbox.idp import identity_provider
from sandbox.idp.provider import AgentClientSpec
from sandbox.mcp_server.timing import parse_server_timing
from sandbox.oidc import discover_async
from sandbox.stack.ports import free_port
from sandbox.stack.process import is_alive, spawn, stop
from sandbox.stack.readiness import wait_for_http

WARM_UP = 30
ANALYTICS = "mcp:tool:analytics.read"  # the scope of the tool called
SDK = "sdk bearer"  # the same tool behind the mcp SDK's own bearer middleware, with an equivalent verifier
TARGETS = {"jwt": 1.05, "introspect": 1.25}  # the most a p50 may grow over the same call without auth


@contextlib.asynccontextmanager
async def sdk_bearer_server(settings: Settings, tenant: str) -> AsyncIterator[str]:
    """The same tool behind the ``mcp`` SDK's own bearer middleware (:mod:`sandbox.bench.sdk_server`); its URL."""
    port = free_port(settings.host)
    command = [sys.executable, "-m", "sandbox.bench.sdk_server", "--port", str(port)]
    command += ["--issuer", settings.issuer(tenant), "--scope", ANALYTICS]
    with tempfile.TemporaryDirectory(prefix="bench-sdk-server-") as scratch:
        log = Path(scratch) / "sdk-server.log"
        record = spawn(command, env={**os.environ, **settings.as_environment()}, log_path=log)
        try:
            health = f"http://{settings.host}:{port}/health"
            alive = lambda: is_alive(record)  # noqa: E731
            await asyncio.to_thread(wait_for_http, "sdk bearer server", health, timeout=60, alive=alive, log=log)
            yield f"http://{settings.host}:{port}/mcp"
        finally:
            await asyncio.to_thread(stop, record)


@contextlib.asynccontextmanager
async def reference_server(
    settings: Settings,
    tenant: str,
    *,
    mode: str = "jwt",
    no_auth: bool = False,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[str]:
    """One more reference MCP server on a loopback port, trusting ``tenant``, until the block ends; its /mcp URL."""
    port = port or free_port(settings.host)
    command = [MCP_SANDBOX, "mcp-server", "--mode", mode, "--port", str(port), "--issuer", settings.issuer(tenant)]
    command += ["--no-auth"] if no_auth else []
    with tempfile.TemporaryDirectory(prefix="bench-mcp-server-") as scratch:
        log = Path(scratch) / "mcp-server.log"
        record = spawn(command, env={**os.environ, **settings.as_environment(), **(env or {})}, log_path=log)
        try:
            health = f"http://{settings.host}:{port}/health"
            alive = lambda: is_alive(record)  # noqa: E731
            name = "mcp-server --no-auth" if no_auth else f"mcp-server --mode {mode}"
            await asyncio.to_thread(wait_for_http, name, health, timeout=60, alive=alive, log=log)
            yield f"http://{settings.host}:{port}/mcp"
        finally:
            await asyncio.to_thread(stop, record)


@dataclass
class Samples:
    """Each server's call latencies (ms) and, per call, the server's own steps from its ``Server-Timing`` header."""

    calls: dict[str, list[float]]
    steps: dict[str, dict[str, list[float]]]


def _measure(
    mcp: McpCaller, targets: dict[str, tuple[str, str | None]], token: str, calls: int, budget: float
) -> Samples:
    """Sequential calls, the servers in turn (rotating who goes first); latency in ms per server."""
    names = list(targets)
    samples = Samples({name: [] for name in names}, {name: {} for name in names})
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
            samples.calls[name].append((time.perf_counter() - began) * 1000)
            if not served(response):
                raise RuntimeError(f"{name}: the tool call got HTTP {response.status_code}")
            for step, ms in parse_server_timing(response.headers.get("server-timing", "")).items():
                samples.steps[name].setdefault(step, []).append(ms)
    return samples


def _median(values: list[float]) -> float:
    return float(summarize(values)["median"])


def _server_steps(steps: dict[str, list[float]]) -> str:
    return ", ".join(f"{step} {_median(values):.3f}" for step, values in steps.items()) or "none reported"


def _why_added(mode: str, samples: Samples) -> str:
    """Where a mode's added median went, from the calls' own Server-Timing (medians per step, ms)."""
    ours, bare = samples.steps[mode], samples.steps["no auth"]
    call, baseline = _median(samples.calls[mode]), _median(samples.calls["no auth"])
    lines = [f"{call - baseline:.3f} ms more at the median, on a call that takes {baseline:.3f} ms without auth"]
    if ours and bare:
        changed = {step: _median(values) - _median(bare[step]) for step, values in ours.items() if step in bare}
        inside = sum(changed.values())
        lines.append(
            f"the server's own steps (Server-Timing, median ms) with {mode}: {_server_steps(ours)}; without auth: "
            f"{_server_steps(bare)}; step by step that is "
            + ", ".join(f"{step} {delta:+.3f}" for step, delta in changed.items())
            + f" ({inside:+.3f} ms inside the endpoint, {call - baseline - inside:+.3f} ms outside it: HTTP, "
            "the server's other middleware and the client)"
        )
    return "; ".join(lines)


def _why_versus_sdk(samples: Samples) -> str:
    ours, theirs, bare = (_median(samples.calls[name]) for name in ("jwt", SDK, "no auth"))
    return (
        f"median {ours:.3f} ms ours vs {theirs:.3f} ms behind the SDK's bearer middleware with the same verifier "
        f"(and {bare:.3f} ms without auth); our endpoint's steps (Server-Timing, median ms): "
        f"{_server_steps(samples.steps['jwt'])}: read is the body read for the tool's own scope (the SDK checks one "
        "scope for all calls), authorize the zone, routing-header, throttle and tool-scope checks"
    )


@benchmark("auth-overhead", "Tool-call latency with token validation vs the same server without auth")
async def auth_overhead(context: BenchContext) -> dict[str, Any]:
    settings = context.settings
    tenant = settings.tenants[0]
    adapter = identity_provider(settings)
    mcp = McpCaller(threads=2)
    made: list[str] = []  # Keycloak clients to remove: the introspect server's own, and the agent
    try:
        async with contextlib.AsyncExitStack() as servers:
            no_auth_url = await servers.enter_async_context(reference_server(settings, tenant, no_auth=True))
            jwt_url = await servers.enter_async_context(reference_server(settings, tenant, mode="jwt"))
            port, secret = free_port(settings.host), secrets.token_urlsafe(32)
            introspect_url = f"http://{settings.host}:{port}/mcp"
            made.append(await adapter.create_resource_server_client(tenant, introspect_url, secret))
            introspect = reference_server(
                settings, tenant, mode="introspect", port=port, env={"SANDBOX_MCP_INTROSPECTION_SECRET": secret}
            )
            introspect_url = await servers.enter_async_context(introspect)
            sdk_url = await servers.enter_async_context(sdk_bearer_server(settings, tenant))
            client_id = f"bench-auth-{uuid.uuid4().hex[:12]}"
            audiences = [jwt_url, introspect_url, sdk_url]
            spec = AgentClientSpec(client_id, client_id, [ANALYTICS], audiences, token_lifetime=300)
            agent = await adapter.create_agent_client(tenant, spec)
            made.append(agent.id)
            token_url = (await discover_async(settings.issuer(tenant))).token_endpoint
            token = (await fetch_token(token_url, ClientSecretCredential(client_id, agent.secret or ""))).access_token
            targets = {}
            named = (("no auth", no_auth_url), ("jwt", jwt_url), ("introspect", introspect_url), (SDK, sdk_url))
            for name, url in named:
                targets[name] = (url, await mcp.open_session(url, token))
            calls = context.size(500, 30)
            samples = await asyncio.to_thread(_measure, mcp, targets, token, calls, context.size(90, 30))
    finally:
        mcp.close()
        for internal_id in made:
            await adapter.delete_client(tenant, internal_id)
    for name, values in samples.calls.items():
        context.distributions[f"tool call, {name}"] = values
    summaries = {name: summarize(values) for name, values in samples.calls.items()}
    baseline = summaries["no auth"]
    results: dict[str, Any] = {
        "tool": "analytics.query",
        "calls_per_server": len(samples.calls["no auth"]),
        **summaries,
    }
    results["server_steps_ms"] = {
        name: {step: summarize(values) for step, values in steps.items()} for name, steps in samples.steps.items()
    }
    for mode, limit in TARGETS.items():
        p50 = ratio(summaries[mode]["median"], baseline["median"])
        results[f"{mode}_vs_no_auth"] = {
            "p50_ratio": p50,
            "p95_ratio": ratio(summaries[mode]["p95"], baseline["p95"]),
            "p99_ratio": ratio(summaries[mode]["p99"], baseline["p99"]),
            "p50_added_ms": round(summaries[mode]["median"] - baseline["median"], 3),
            **target(f"p50 ratio <= {limit:.2f}", f"p50 ratio {p50:.3f}", p50 <= limit, _why_added(mode, samples)),
        }
    ours, theirs = summaries["jwt"], summaries[SDK]
    versus_sdk = ratio(ours["median"], theirs["median"])
    results["jwt_vs_sdk_bearer"] = {
        "p50_ratio": versus_sdk,
        "p95_ratio": ratio(ours["p95"], theirs["p95"]),
        "p50_added_ms": round(ours["median"] - theirs["median"], 3),
        **target("p50 ratio <= 1.00", f"p50 ratio {versus_sdk:.3f}", versus_sdk <= 1.0, _why_versus_sdk(samples)),
    }
    results["introspection_cache_ttl_s"] = settings.mcp_introspection_cache_ttl
    results["note"] = (
        "three fresh instances started alike, one client, one call at a time, the servers in turn, the same token "
        "to each (the server without auth ignores it)"
    )
    return results
