"""Rotation under load: tool calls per second, and failures, while the broker rotates the agent's secret, vs the
same load without a rotation.

Workers call a tool on the stack's ``jwt+events`` server without pause. Each gets a new token every
``RENEW_AFTER`` seconds with the secret it holds then, so tokens are requested with the old secret after the
rotation (the grace must cover them) and with the new one once a worker picks it up. Short phases alternate
between none and one rotation (a quarter of the way in; the previous grace is ended before it); a rotation phase
lasts until the rotate call has returned and every worker can have renewed its token, however long that takes.
Each rotation phase's calls per second is compared with the mean of the phases without rotation on either side of
it; the ratio is the median of those pair ratios, with their spread. Afterwards the last grace is ended
early, and the first secret must be refused and the latest accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.agent.mcp_http import served
from sandbox.agent.tokens import ClientSecretCredential, TokenClient, TokenError, TokenRefused
from sandbox.bench.clients import BenchAgent, McpCaller, OperatorBroker
from sandbox.bench.registry import BenchContext, benchmark, target
from sandbox.bench.stats import ratio, summarize

WORKERS = 4
RENEW_AFTER = 1.0
GRACE_SECONDS = 300
MAX_CALLS_PER_PHASE = 100_000
MAX_ROTATION = 60.0  # seconds a rotation phase may run over, waiting for the rotate call and the pickups
#: Phases of equal length, alternating, so a machine whose load drifts weighs on both kinds alike. Each rotation
#: phase with the phases on either side of it is one pair; the ratio is the median over the pairs (at least 5 in a
#: full run), shown with its spread.
PHASES, QUICK_PHASES = (False, True) * 5 + (False,), (False, True, False)
TARGET_RATIO = 0.95


@dataclass
class Secret:
    """The secret the agent's configuration holds now; workers read it when they renew their token."""

    value: str = field(repr=False)
    rotated_at: float | None = None  # perf_counter when the broker's rotate answer arrived


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    calls: int = 0
    token_requests: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    pickups: list[float] = field(default_factory=list)  # ms from the rotate answer to a worker's new-secret token
    rates: list[float] = field(default_factory=list)  # calls per second of each of its phases

    def figures(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "calls_per_second": round(self.calls / self.seconds, 1),
            "calls_per_second_by_phase": [round(rate, 1) for rate in self.rates],
            "failures": len(self.failures),
            "first_failures": self.failures[:3],
            "token_requests": self.token_requests,
            "call_latency": summarize(self.latencies),
        }


async def _worker(
    agent: BenchAgent, secret: Secret, url: str, mcp: McpCaller, phase: Phase, until: Callable[[], bool]
) -> None:
    held = secret.value
    tokens = TokenClient(agent.token_url, ClientSecretCredential(agent.client_id, held))
    token: str | None = None
    session: str | None = None
    fetched = 0.0
    try:
        while not until() and phase.calls < MAX_CALLS_PER_PHASE:
            if token is None or time.perf_counter() - fetched > RENEW_AFTER:
                picking_up = secret.value != held  # the configuration changed: the new secret from now on
                if picking_up:
                    held = secret.value
                    await tokens.aclose()
                    tokens = TokenClient(agent.token_url, ClientSecretCredential(agent.client_id, held))
                phase.token_requests += 1
                try:
                    token = (await tokens.fetch()).access_token
                except TokenError as exc:
                    phase.failures.append(f"token request: {exc}")
                    await asyncio.sleep(0.1)
                    continue
                fetched = time.perf_counter()
                if picking_up and secret.rotated_at is not None:
                    phase.pickups.append((fetched - secret.rotated_at) * 1000)
                if session is None:
                    session = await mcp.open_session(url, token)
            began = time.perf_counter()
            response = await mcp.call(url, token, session)
            if served(response):
                phase.calls += 1
                phase.latencies.append((time.perf_counter() - began) * 1000)
            else:
                phase.failures.append(f"tool call: HTTP {response.status_code}")
    finally:
        await tokens.aclose()


async def _run_phase(
    phase: Phase, agent: BenchAgent, secret: Secret, mcp: McpCaller, url: str, seconds: float, rotate: Any = None
) -> None:
    """The workers for ``seconds`` more of ``phase``; with ``rotate``, that coroutine function runs a quarter in, and
    the phase lasts until every worker can have picked up the new secret (at most ``MAX_ROTATION`` s more)."""
    began = time.perf_counter()
    calls_before = phase.calls
    settled = asyncio.Event()

    def over() -> bool:
        now = time.perf_counter()
        return now > began + seconds + MAX_ROTATION or (now > began + seconds and settled.is_set())

    async def rotation() -> None:
        await asyncio.sleep(seconds / 4)
        await rotate()
        await asyncio.sleep(RENEW_AFTER)  # every worker renews its token, with the new secret, within this
        settled.set()

    if rotate is None:
        settled.set()
    workers = [_worker(agent, secret, url, mcp, phase, over) for _ in range(WORKERS)]
    await asyncio.gather(*workers, *([rotation()] if rotate else []))
    elapsed = time.perf_counter() - began
    phase.seconds += elapsed
    phase.rates.append((phase.calls - calls_before) / elapsed)


@benchmark("rotation", "Rotation under load: calls per second and failures during a secret rotation vs without")
async def rotation_under_load(context: BenchContext) -> dict[str, Any]:
    settings = context.settings
    url = settings.mcp_url
    seconds = context.size(3, 2)
    phases = QUICK_PHASES if context.quick else PHASES
    broker = OperatorBroker(settings, threads=2)
    mcp = McpCaller(threads=WORKERS)
    without, during = Phase("without rotation"), Phase("during rotation")
    rotate_ms: list[float] = []
    try:
        agent = await broker.provision(settings.tenants[0], servers=[url])
        first_secret = agent.secret
        began = time.perf_counter()  # one rotation (no grace) before any load, to compare the rotate call with
        secret = Secret(await broker.rotate(agent, 0))
        rotate_without_load_ms = (time.perf_counter() - began) * 1000

        async def rotate() -> None:
            began = time.perf_counter()
            new_secret = await broker.rotate(agent, GRACE_SECONDS)
            secret.rotated_at = time.perf_counter()
            rotate_ms.append((secret.rotated_at - began) * 1000)
            secret.value = new_secret

        for rotating in phases:
            if rotating and rotate_ms:
                await broker.end_grace(agent)  # one rotation at a time: the last one's grace ends first
            await _run_phase(
                during if rotating else without, agent, secret, mcp, url, seconds, rotate if rotating else None
            )
        await broker.end_grace(agent)
        first_refused = await _refused(agent, first_secret)
        latest_accepted = not await _refused(agent, secret.value)
    finally:
        await broker.close()
        mcp.close()
    for phase in (without, during):
        context.distributions[f"tool call under load, {phase.name}"] = phase.latencies
    pairs = _pair_ratios(phases, without.rates, during.rates)
    throughput_ratio = _median(pairs)
    failures = len(during.failures)
    return {
        "workers": WORKERS,
        "phases": ", ".join("rotation" if rotating else "none" for rotating in phases),
        "phase_seconds": seconds,
        "token_renewed_every_s": RENEW_AFTER,
        "grace_seconds": GRACE_SECONDS,
        "without_rotation": without.figures(),
        "during_rotation": during.figures(),
        "rotate_call": summarize(rotate_ms),
        "rotate_call_without_load_ms": round(rotate_without_load_ms, 1),
        "new_secret_picked_up_after": summarize(during.pickups) if during.pickups else None,
        "throughput_ratio": throughput_ratio,
        "throughput_ratio_of_each_pair": pairs,
        "throughput_ratio_spread": {"min": min(pairs), "median": throughput_ratio, "max": max(pairs), "n": len(pairs)},
        "throughput_ratio_pooled": ratio(during.calls / during.seconds, without.calls / without.seconds),
        **target(
            f"zero failures during rotations and throughput ratio >= {TARGET_RATIO}",
            f"{failures} failures, throughput ratio {throughput_ratio:.3f} (median of {len(pairs)} pairs, "
            f"{min(pairs):.3f}-{max(pairs):.3f})",
            failures == 0 and throughput_ratio >= TARGET_RATIO,
            _why(without, during, summarize(rotate_ms)["median"], rotate_without_load_ms),
        ),
        "first_secret_refused_after_graces_ended": first_refused,
        "latest_secret_accepted": latest_accepted,
    }


def _pair_ratios(phases: tuple[bool, ...], without: list[float], during: list[float]) -> list[float]:
    """For each rotation phase, its calls per second over the mean of the phases without rotation beside it."""
    rates: list[float] = []
    quiet, busy = iter(without), iter(during)
    for rotating in phases:
        rates.append(next(busy) if rotating else next(quiet))
    pairs = []
    for index, rotating in enumerate(phases):
        if rotating:
            beside = [rates[i] for i in (index - 1, index + 1) if 0 <= i < len(phases) and not phases[i]]
            pairs.append(ratio(rates[index], sum(beside) / len(beside)))
    return pairs


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else round((ordered[middle - 1] + ordered[middle]) / 2, 3)


def _why(without: Phase, during: Phase, rotate_ms: float, rotate_without_load_ms: float) -> str:
    def spread(phase: Phase) -> str:
        return f"{min(phase.rates):.0f}-{max(phase.rates):.0f}"

    reasons = [
        f"calls per second ranged {spread(without)} in the phases without rotation and {spread(during)} in those "
        "with one; a rotation adds work on the same cores as the load: Keycloak's (the new secret, the rotated one "
        "kept), the broker's, and each worker's new token client and token; the rotate call took "
        f"{rotate_ms:.0f} ms at the median under the load, {rotate_without_load_ms:.0f} ms without it (the broker "
        "also takes in the MCP server's usage report of every call)"
    ]
    if during.failures:
        reasons.insert(0, f"{len(during.failures)} failures, first: {during.failures[0]}")
    return "; ".join(reasons)


async def _refused(agent: BenchAgent, secret: str) -> bool:
    async with TokenClient(agent.token_url, ClientSecretCredential(agent.client_id, secret)) as tokens:
        try:
            await tokens.fetch()
        except TokenRefused:
            return True
    return False
