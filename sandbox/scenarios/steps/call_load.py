"""Calls under load: workers call one tool until the step's count is made, while a choreography acts on the agent.

What the load steps share (rotation under load, credential age under load): the arguments, the workers' loop (a
fresh token every few calls, each call counted and sampled), a bounded wait for a condition, and the evidence. A
failure anywhere stops every worker; the step's own checks come after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from pydantic import Field

from sandbox.agent.pickup import PickupFailed
from sandbox.agent.tokens import TokenEndpointUnavailable, TokenRefused
from sandbox.scenarios.calls import TransportFailed
from sandbox.scenarios.context import AgentHandle, RunContext
from sandbox.scenarios.library import StepFailed
from sandbox.scenarios.results import LoadSample, LoadSeries
from sandbox.scenarios.steps.base import StepArgs
from sandbox.scenarios.steps.tools import arguments_for

Evidence = dict[str, Any]


class LoadArgs(StepArgs):
    """The arguments of a step that calls under load."""

    agent: str
    workers: int = Field(default=5, ge=1, le=32)
    calls: int = Field(default=1000, ge=10, le=20000, description="Tool calls in total, across the workers.")
    tool: str = "analytics.query"
    refresh_every: int = Field(default=20, ge=1, description="Each worker gets a new token every this many calls.")
    server: str | None = None
    by: str | None = None
    time_limit: float = Field(default=300, gt=0, le=900, description="The load stops here, whatever the count.")

    def summary(self) -> str:
        return f"{self.agent}: {self.workers} workers, {self.calls} calls"


class Worker(Protocol):
    """One caller: it holds a token, refreshes it (taking whatever credential it now holds), and closes."""

    token: str | None

    async def refresh(self) -> None: ...

    async def aclose(self) -> None: ...


class CallLoad:
    """One load: ``await load.run(workers, choreography)``, then ``load.evidence()`` and ``load.require(...)``."""

    def __init__(self, context: RunContext, agent: AgentHandle, args: LoadArgs, while_what: str) -> None:
        self.context, self.agent, self.args = context, agent, args
        self.series = LoadSeries(f"{args.agent}: {args.workers} workers calling {args.tool} {while_what}")
        context.load.append(self.series)
        self.done = self.started = 0
        self.failures: list[str] = []
        self.began = time.monotonic()
        self.deadline = self.began + args.time_limit

    def mark(self, name: str) -> None:
        self.series.marks[name] = time.monotonic() - self.began

    async def until(self, condition: Callable[[], bool], what: str | None = None) -> None:
        """Wait for ``condition`` while the workers call; past the time limit the step fails, naming ``what``."""
        while not condition():
            if time.monotonic() > self.deadline:
                wanted = what or f"{self.args.calls} calls within {self.args.time_limit:.0f}s"
                raise StepFailed(wanted, f"not within {self.args.time_limit:.0f}s ({self.done} calls made)")
            await asyncio.sleep(0.01)

    async def run(
        self, workers: Sequence[Worker], choreography: Callable[[], Awaitable[Evidence]], dpop: Any = None
    ) -> Evidence:
        """Run the workers and the choreography together; returns what the choreography returned."""
        context, agent, args = self.context, self.agent, self.args
        url = next(iter(context.servers(args.server).values()))
        arguments = await arguments_for(context, agent, args.tool, None)
        self.began = time.monotonic()
        self.deadline = self.began + args.time_limit

        async def work(worker: Worker) -> None:
            calls = 0
            while self.started < args.calls and time.monotonic() < self.deadline:
                self.started += 1  # claimed before awaiting, so the workers together make exactly `calls` calls
                try:
                    if worker.token is None or calls % args.refresh_every == 0:
                        await worker.refresh()
                    outcome = await asyncio.to_thread(
                        context.mcp.call_tool,
                        url,
                        agent.client_id or agent.name,
                        worker.token,
                        args.tool,
                        arguments,
                        dpop,
                    )
                    ok, status = outcome.outcome == "allowed", outcome.outcome
                except TokenRefused as refused:
                    ok, status = False, f"token refused: {refused.error} ({refused.description[:160]})"
                except TokenEndpointUnavailable as unavailable:
                    ok, status = False, f"no token: {unavailable.reason}"
                except (TransportFailed, PickupFailed) as failed:
                    ok, status = False, f"no answer: {failed}"
                self.done += 1
                calls += 1
                self.series.samples.append(LoadSample(time.monotonic() - self.began, ok, status))
                if not ok:
                    self.failures.append(status)

        try:
            async with asyncio.TaskGroup() as group:  # a failure anywhere stops every worker
                acted = group.create_task(choreography())
                for worker in workers:
                    group.create_task(work(worker))
        except* StepFailed as failed:
            raise failed.exceptions[0] from None
        finally:
            for worker in workers:
                await worker.aclose()
        self.elapsed = time.monotonic() - self.began
        return acted.result()

    def evidence(self) -> Evidence:
        return {
            "calls": self.done,
            "failed": len(self.failures),
            "failures": sorted(set(self.failures))[:5],
            "calls_per_second": round(self.done / self.elapsed, 1),
            "marks_s": {k: round(v, 2) for k, v in self.series.marks.items()},
        }

    def require_all_made_and_none_failed(self, during: str, evidence: Evidence) -> None:
        if self.done < self.args.calls:
            raise StepFailed(f"{self.args.calls} calls", f"{self.done} in the time limit", evidence)
        if self.failures:
            raise StepFailed(f"zero failed calls {during}", f"{len(self.failures)} failed", evidence)
