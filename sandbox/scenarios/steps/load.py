"""Rotation under load: agent workers keep calling while the credential rotates; not one call may fail.

Workers hold credentials as real deployments do: half of them adopt the new credential as soon as it is
issued, the other half only later in the grace period (slow adopters), so the old credential is in use
during the grace. Every worker fetches a fresh token every few calls with the credential it holds.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from sandbox.agent.tokens import Credential, TokenRefused
from sandbox.scenarios.context import AgentHandle, RunContext
from sandbox.scenarios.library import StepFailed, require, step
from sandbox.scenarios.steps.agents import agent_path, record, rotate_credential
from sandbox.scenarios.steps.call_load import CallLoad, LoadArgs

Evidence = dict[str, Any]


class RotateUnderLoad(LoadArgs):
    grace: int = Field(default=120, ge=1, le=3600)
    end_grace: bool = Field(default=True, description="End the grace once every worker holds the new credential.")


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

    async def aclose(self) -> None:
        await self.client.aclose()


@step("rotate_under_load", RotateUnderLoad)
async def rotate_under_load(context: RunContext, args: RotateUnderLoad) -> Evidence:
    """Rotate the agent's credential while workers call a tool; zero failed calls, and the old credential dies."""
    agent = context.agents[args.agent]
    # before any worker starts: the rotation's own check would end inside the workers' task group
    require(context, "key_rotation" if agent.spec.credential == "private_key_jwt" else "dual_secret_rotation")
    old = agent.require_credential()
    load = CallLoad(context, agent, args, "while its credential rotates")
    holders = [Holder(agent, old) for _ in range(args.workers)]

    async def choreography() -> Evidence:
        """Rotate at 30 % of the calls, let slow adopters switch at 60 %, end the grace at 70 %."""
        await load.until(lambda: load.done >= args.calls * 0.3)
        rotation = await rotate_credential(context, agent, args.grace, args.by)
        load.mark("rotated")
        new = agent.require_credential()
        for holder in holders[::2]:
            holder.offer(new)
        await load.until(lambda: load.done >= args.calls * 0.6)
        for holder in holders[1::2]:
            holder.offer(new)
        await load.until(lambda: all(holder.credential is new for holder in holders))
        load.mark("all workers on the new credential")
        if args.end_grace:
            await load.until(lambda: load.done >= args.calls * 0.7)
            answer = await context.broker("POST", f"{agent_path(agent)}/rotation/end", by=args.by, agent=agent, body={})
            record(agent, answer)
            load.mark("grace ended")
        return rotation

    rotation = await load.run(holders, choreography, dpop=agent.dpop)
    evidence = {**load.evidence(), "rotation": rotation}
    load.require_all_made_and_none_failed("during the rotation", evidence)
    if args.end_grace:
        try:
            async with agent.token_client(old) as client:
                await client.fetch()
        except TokenRefused as refused:
            evidence["old_credential_after_grace"] = f"refused ({refused.error})"
        else:
            raise StepFailed("the old credential refused after the grace", "a token was issued", evidence)
    return evidence
