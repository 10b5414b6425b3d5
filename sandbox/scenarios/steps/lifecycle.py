"""Lifecycle policy steps (issue 19): credential age under load, the review queue, access reviews."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field

from sandbox.agent.pickup import pick_up_secret, write_secret_file
from sandbox.agent.tokens import ClientSecretCredential, TokenClient
from sandbox.scenarios.context import AgentHandle, RunContext
from sandbox.scenarios.library import StepFailed, require, step
from sandbox.scenarios.steps.agents import agent_path, record
from sandbox.scenarios.steps.base import StepArgs
from sandbox.scenarios.steps.call_load import CallLoad, LoadArgs

Evidence = dict[str, Any]


# credential age -------------------------------------------------------------------------------------------------


class AgeUnderLoad(LoadArgs):
    days: float = Field(default=31, gt=0, le=3650, description="How far the tenant's clock moves mid-load.")
    workers: int = Field(default=3, ge=1, le=16)
    calls: int = Field(default=300, ge=10, le=5000, description="Tool calls in total, across the workers.")
    refresh_every: int = Field(default=10, ge=1, description="Each worker gets a new token every this many calls.")

    def summary(self) -> str:
        return f"{self.agent}: {self.workers} workers, {self.calls} calls, clock +{self.days:g} days"


class SecretFileWorker:
    """One agent worker that reads its client secret from a file, as a generated MCP config names it.

    At each token refresh it asks the broker whether an automatic rotation left a new secret (authenticating with
    the one in the file), writes it to the file if so, then takes whatever the file holds.
    """

    def __init__(self, agent: AgentHandle, path: Path, broker_url: str, http: httpx.AsyncClient) -> None:
        self.agent, self.path, self.broker_url, self.http = agent, path, broker_url, http
        self.secret = ""
        self.client: TokenClient | None = None
        self.token: str | None = None
        self.picked_up = False

    async def refresh(self) -> None:
        client_id = self.agent.client_id or ""
        on_file = self.path.read_text()
        new = await pick_up_secret(self.http, self.broker_url, client_id, on_file)
        if new is not None and new != on_file:
            write_secret_file(self.path, new)
            self.picked_up = True
        on_file = self.path.read_text()
        if on_file != self.secret or self.client is None:
            if self.client is not None:
                await self.client.aclose()
            self.secret = on_file
            self.client = TokenClient(self.agent.tenant.token_url, ClientSecretCredential(client_id, on_file))
        self.token = (await self.client.fetch()).access_token

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


@step("age_under_load", AgeUnderLoad)
async def age_under_load(context: RunContext, args: AgeUnderLoad) -> Evidence:
    """Workers keep calling with the secret from a file while the tenant clock moves past the credential's maximum
    age: the broker rotates it, the workers pick the new secret up through the file, and not one call fails."""
    require(context, "dual_secret_rotation")  # the broker rotates with a grace the IdP must keep
    agent = context.agents[args.agent]
    old = agent.require_credential()
    if not isinstance(old, ClientSecretCredential):
        raise StepFailed("a client_secret agent (the broker rotates secrets itself)", type(old).__name__)
    secret_file = Path(context.values["workdir"]) / f"{args.agent}.secret"
    write_secret_file(secret_file, old.secret)
    load = CallLoad(context, agent, args, "while its credential ages")
    http = httpx.AsyncClient(timeout=30)
    workers = [SecretFileWorker(agent, secret_file, context.settings.broker_url, http) for _ in range(args.workers)]

    async def choreography() -> Evidence:
        await load.until(lambda: load.done >= args.calls * 0.3, f"{args.calls} calls")
        tenant = agent.tenant
        moved = await context.broker(
            "POST",
            f"/tenants/{tenant.name}/clock",
            by=args.by,
            agent=agent,
            body={"advance": {"days": args.days, "hours": 0}, "reason": "scenario: credential age"},
        )
        load.mark(f"clock +{args.days:g} days")
        await load.until(lambda: secret_file.read_text() != old.secret, "the new secret in the agent's file")
        load.mark("new secret picked up")
        await load.until(lambda: all(w.secret != old.secret for w in workers), "every worker on the new secret")
        load.mark("all workers on the new secret")
        return {"clock": moved["now"]}

    try:
        moved = await load.run(workers, choreography)
    finally:
        await http.aclose()
    state = await context.broker("GET", agent_path(agent), by=args.by, agent=agent)
    evidence: Evidence = {
        **load.evidence(),
        "clock": moved["clock"],
        "agent": record(agent, state),
        "grace_ends_at": state.get("grace_ends_at"),
    }
    agent.previous, agent.credential = old, ClientSecretCredential(old.client_id, secret_file.read_text())
    load.require_all_made_and_none_failed("across the automatic rotation", evidence)
    if state["status"] != "rotating":
        raise StepFailed("the agent in its rotation's grace (status rotating)", state["status"], evidence)
    return evidence


# risk tiers and access reviews -------------------------------------------------------------------------------------


class ReviewQueue(StepArgs):
    references: ClassVar[dict[str, str]] = {**StepArgs.references, "expect": "agents"}

    tenant: str | None = None
    by: str | None = None
    expect: list[str] = Field(description="The scenario's agents in the review queue, in its order, exactly.")

    def summary(self) -> str:
        return f"expect {', '.join(self.expect) or 'nothing'}"


@step("review_queue", ReviewQueue)
async def review_queue(context: RunContext, args: ReviewQueue) -> Evidence:
    """The tenant's review queue holds exactly these agents, in this order (dormant first, then the most overdue
    access reviews by risk tier)."""
    tenant = context.tenants[args.tenant or next(iter(context.tenants))]
    by = args.by or next(iter(tenant.admins))
    queue = await context.broker("GET", f"/tenants/{tenant.name}/review-queue", by=by)
    by_id = {agent.id: name for name, agent in context.agents.items() if agent.id}
    queued = [by_id.get(entry["id"], entry["name"]) for entry in queue]
    evidence = {"queue": [{"agent": by_id.get(e["id"], e["name"]), **(e.get("review") or {})} for e in queue]}
    if queued != args.expect:
        raise StepFailed(f"queue {args.expect}", f"{queued}", evidence)
    return evidence


class AccessReview(StepArgs):
    agent: str
    by: str | None = None
    expect_due: bool = Field(default=True, description="The review must be due (its risk tier's interval passed).")
    expect_unused: list[str] = Field(description="Exactly the scopes the review recommends removing.")
    accept: bool = Field(default=True, description="Accept the recommendation: the scopes are removed.")


@step("access_review", AccessReview)
async def access_review(context: RunContext, args: AccessReview) -> Evidence:
    """The agent's access review recommends removing exactly the scopes it did not use in its tier's interval;
    the admin accepts, and the agent's next token lacks them."""
    agent = context.agents[args.agent]
    path = f"{agent_path(agent)}/access-review"
    wanted = sorted(args.expect_unused)
    review: dict[str, Any] = {}
    for _ in range(40):  # usage reports reach the broker in batches, off the request path: allow a few seconds
        review = await context.broker("GET", path, by=args.by, agent=agent)
        if sorted(review["unused_scopes"]) == wanted:
            break
        await asyncio.sleep(0.25)
    evidence: Evidence = {"review": review}
    if sorted(review.get("unused_scopes", [])) != wanted:
        raise StepFailed(f"recommended removal of {wanted}", f"{review.get('unused_scopes')}", evidence)
    if review["due"] != args.expect_due:
        raise StepFailed(f"review due: {args.expect_due}", f"due: {review['due']}", evidence)
    if args.accept:
        answer = await context.broker("POST", path, by=args.by, agent=agent, body={"reason": "scenario review"})
        evidence["agent"] = record(agent, answer)
        if remaining := set(answer["scopes"]) & set(wanted):
            raise StepFailed(f"{wanted} removed", f"still holds {sorted(remaining)}", evidence)
    return evidence
