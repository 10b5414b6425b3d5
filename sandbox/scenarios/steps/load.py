"""Rotation under load: agent workers keep calling while the credential rotates; not one call may fail.

Workers hold credentials as real deployments do: half of them adopt the new credential as soon as it is
issued, the other half only later in the grace period (slow adopters), so the old credential is in use
during the grace. Every worker fetches a fresh token every few calls with the credential it holds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import Field

from sandbox.agent.tokens import Credential, TokenEndpointUnavailable, TokenRefused
from sandbox.scenarios.calls import TransportFailed
from sandbox.scenarios.context import AgentHandle, RunContext
from sandbox.scenarios.library import StepFailed, require, step
from sandbox.scenarios.results import LoadSample, LoadSeries
from sandbox.scenarios.steps.agents import agent_path, record, rotate_credential
from sandbox.scenarios.steps.base import StepArgs
from sandbox.scenarios.steps.tools import arguments_for

Evidence = dict[str, Any]


class RotateUnderLoad(StepArgs):
    agent: str
    workers: int = Field(default=5, ge=1, le=32)
    calls: int = Field(default=1000, ge=10, le=20000, description="Tool calls in total, across the workers.")
    tool: str = "analytics.query"
    grace: int = Field(default=120, ge=1, le=3600)
    refresh_every: int = Field(default=20, ge=1, description="Each worker gets a new token every this many calls.")
    end_grace: bool = Field(default=True, description="End the grace once every worker holds the new credential.")
    server: str | None = None
    by: str | None = None
    time_limit: float = Field(default=300, gt=0, le=900, description="The load stops here, whatever the count.")

    def summary(self) -> str:
        return f"{self.agent}: {self.workers} workers, {self.calls} calls"


class Holder:
    """What one worker holds: a credential, a token client for it, and the token in use.

    A new credential is handed over with :meth:`offer`; the worker takes it at its next token refresh, as a
    deployment picks up new configuration, so no request ever runs on a client being replaced.
    """

    def __init__(self, agent: AgentHandle, credential: Credential) -> None:
        self.agent = agent
        self.credential = credential
        self.client = agent.token_client(credential)
        self.token: str | None = None
        self.offered: Credential | None = None

    def offer(self, credential: Credential) -> None:
        self.offered = credential

    async def refresh(self) -> None:
        if self.offered is not None:
            await self.client.aclose()
            self.credential, self.offered = self.offered, None
            self.client = self.agent.token_client(self.credential)
        self.token = (await self.client.fetch()).access_token


@step("rotate_under_load", RotateUnderLoad)
async def rotate_under_load(context: RunContext, args: RotateUnderLoad) -> Evidence:
    """Rotate the agent's credential while workers call a tool; zero failed calls, and the old credential dies."""
    agent = context.agents[args.agent]
    # before any worker starts: the rotation's own check would end inside the workers' task group
    require(context, "key_rotation" if agent.spec.credential == "private_key_jwt" else "dual_secret_rotation")
    old = agent.require_credential()
    url = next(iter(context.servers(args.server).values()))
    arguments = await arguments_for(context, agent, args.tool, None)
    series = LoadSeries(f"{args.agent}: {args.workers} workers calling {args.tool} while its credential rotates")
    context.load.append(series)
    holders = [Holder(agent, old) for _ in range(args.workers)]
    done = started = 0
    began = time.monotonic()
    deadline = began + args.time_limit
    failures: list[str] = []

    async def work(holder: Holder) -> None:
        nonlocal done, started
        calls = 0
        while started < args.calls and time.monotonic() < deadline:
            started += 1  # claimed before awaiting, so the workers together make exactly `calls` calls
            try:
                if holder.token is None or calls % args.refresh_every == 0:
                    await holder.refresh()
                outcome = await asyncio.to_thread(
                    context.mcp.call_tool,
                    url,
                    agent.client_id or agent.name,
                    holder.token,
                    args.tool,
                    arguments,
                    agent.dpop,
                )
                ok, status = outcome.outcome == "allowed", outcome.outcome
            except TokenRefused as refused:
                ok, status = False, f"token refused: {refused.error} ({refused.description[:160]})"
            except TokenEndpointUnavailable as unavailable:
                ok, status = False, f"no token: {unavailable.reason}"
            except TransportFailed as failed:
                ok, status = False, f"no answer: {failed}"
            done += 1
            calls += 1
            series.samples.append(LoadSample(time.monotonic() - began, ok, status))
            if not ok:
                failures.append(status)

    async def choreography() -> Evidence:
        """Rotate at 30 % of the calls, let slow adopters switch at 60 %, end the grace at 70 %."""
        await until(lambda: done >= args.calls * 0.3)
        rotation = await rotate_credential(context, agent, args.grace, args.by)
        series.marks["rotated"] = time.monotonic() - began
        new = agent.require_credential()
        for holder in holders[::2]:
            holder.offer(new)
        await until(lambda: done >= args.calls * 0.6)
        for holder in holders[1::2]:
            holder.offer(new)
        await until(lambda: all(holder.credential is new for holder in holders))
        series.marks["all workers on the new credential"] = time.monotonic() - began
        if args.end_grace:
            await until(lambda: done >= args.calls * 0.7)
            answer = await context.broker("POST", f"{agent_path(agent)}/rotation/end", by=args.by, agent=agent, body={})
            record(agent, answer)
            series.marks["grace ended"] = time.monotonic() - began
        return rotation

    async def until(condition: Any) -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise StepFailed(f"{args.calls} calls within {args.time_limit:.0f}s", f"{done} calls")
            await asyncio.sleep(0.01)

    try:
        async with asyncio.TaskGroup() as group:  # a failure anywhere stops every worker
            rotation = group.create_task(choreography())
            for holder in holders:
                group.create_task(work(holder))
    except* StepFailed as failed:
        raise failed.exceptions[0] from None
    finally:
        for holder in holders:
            await holder.client.aclose()
    elapsed = time.monotonic() - began
    evidence = {
        "calls": done,
        "failed": len(failures),
        "failures": sorted(set(failures))[:5],
        "calls_per_second": round(done / elapsed, 1),
        "marks_s": {k: round(v, 2) for k, v in series.marks.items()},
        "rotation": rotation.result(),
    }
    if done < args.calls:
        raise StepFailed(f"{args.calls} calls", f"{done} in the time limit", evidence)
    if failures:
        raise StepFailed("zero failed calls during the rotation", f"{len(failures)} failed", evidence)
    if args.end_grace:
        try:
            async with agent.token_client(old) as client:
                await client.fetch()
        except TokenRefused as refused:
            evidence["old_credential_after_grace"] = f"refused ({refused.error})"
        else:
            raise StepFailed("the old credential refused after the grace", "a token was issued", evidence)
    return evidence
