"""Lifecycle steps: provision, approve, change role, rotate, revoke, dormancy, onboarding as code."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from sandbox.admin.apply import apply_agents_file
from sandbox.admin.client import BrokerClient, BrokerRefused
from sandbox.broker.schemas import AgentStatus
from sandbox.errors import SandboxError
from sandbox.harness.provisioning import credential_for, new_key
from sandbox.idp.capabilities import BY_IDP
from sandbox.scenarios.context import AgentHandle, RunContext
from sandbox.scenarios.library import StepFailed, require, step
from sandbox.scenarios.steps.base import StepArgs

Evidence = dict[str, Any]


def agent_path(agent: AgentHandle) -> str:
    return f"/tenants/{agent.tenant.name}/agents/{agent.require_provisioned()}"


def refusal(error: BrokerRefused) -> str:
    """The broker's refusal with its cause, so the console and JUnit say why without opening the report."""
    cause = error.body.get("cause") or error.body.get("detail")
    return f"refused ({error.status} {error.error})" + (f": {cause}" if cause else "")


def record(agent: AgentHandle, answer: dict[str, Any]) -> Evidence:
    agent.status = answer["status"]
    return {key: answer.get(key) for key in ("id", "client_id", "status", "role", "environment", "scopes")}


# provision ----------------------------------------------------------------------------------------------------


class Provision(StepArgs):
    agent: str
    by: str | None = Field(default=None, description="The admin who asks; the tenant's first admin by default.")
    expect: Literal["active", "pending_approval", "refused"] = "active"


@step("provision", Provision, shorthand="agent")
async def provision(context: RunContext, args: Provision) -> Evidence:
    """Provision the declared agent through the broker; it gets its credential once."""
    agent = context.agents[args.agent]
    spec = agent.spec
    if spec.mode == "delegated":
        require(context, "token_exchange")  # a delegated agent's client is made for the exchange
    if spec.zone is not None:
        require(context, "network_zones")  # the IdP refuses its token requests from elsewhere
    if spec.binding == "dpop":
        require(context, "dpop_binding")  # the IdP binds its tokens to its key
    if spec.binding == "mtls":
        require(context, "mtls_binding")  # the IdP binds its tokens to its client certificate
        if agent.https_token_url is None:
            raise StepFailed(
                f"agent {args.agent!r} (binding mtls) to take tokens on the stack's Keycloak HTTPS port",
                "its IdP is not the stack's own Keycloak (an external one has no HTTPS port of the sandbox's CA)",
            )
    key = new_key(f"{args.agent}-1") if spec.credential == "private_key_jwt" else None
    body: dict[str, Any] = {
        "name": args.agent,
        "owner": context.faker.company_email(),
        "role": spec.role,
        "environment": spec.environment,
        "mode": spec.mode,
        "credential_type": spec.credential,
        "binding": spec.binding,
        "metadata": {"scenario": context.header.name},
    }
    if key is not None:
        body["jwk"] = key.as_dict(private=False)
    if spec.token_lifetime is not None:
        body["token_lifetime"] = spec.token_lifetime
    if spec.servers is not None:
        body["servers"] = list(context.servers(None).values()) if spec.servers == ["*"] else [
            url for name in spec.servers for url in context.servers(name).values()
        ]  # fmt: skip
    try:
        answer = await context.broker(
            "POST", f"/tenants/{agent.tenant.name}/agents", by=args.by, agent=agent, body=body
        )
    except BrokerRefused as error:
        if args.expect == "refused":
            return {"refused": error.status, "error": error.error, "detail": str(error)}
        raise StepFailed(args.expect, refusal(error), {"detail": str(error)}) from None
    agent.id, agent.client_id = answer["agent"]["id"], answer["agent"]["client_id"]
    agent.audiences = list(answer["agent"].get("audiences") or [])
    agent.credential = credential_for(answer["credential"], key)
    evidence = record(agent, answer["agent"])
    if answer["agent"]["status"] != args.expect:
        raise StepFailed(args.expect, answer["agent"]["status"], evidence)
    return evidence


# approvals ----------------------------------------------------------------------------------------------------


class Decide(StepArgs):
    agent: str
    by: str
    expect: Literal["done", "refused"] = "done"
    reason: str = ""


async def decide(context: RunContext, args: Decide, action: str) -> Evidence:
    agent = context.agents[args.agent]
    try:
        answer = await context.broker(
            "POST", f"{agent_path(agent)}/{action}", by=args.by, agent=agent, body={"reason": args.reason}
        )
    except BrokerRefused as error:
        if args.expect == "refused":
            return {"refused": error.status, "error": error.error, "detail": str(error)}
        raise StepFailed(f"{action} to be accepted", refusal(error), {"detail": str(error)}) from None
    if args.expect == "refused":
        raise StepFailed(f"{action} by {args.by} to be refused", f"accepted: agent is {answer['status']}")
    return record(agent, answer)


@step("approve", Decide)
async def approve(context: RunContext, args: Decide) -> Evidence:
    """Approve a pending agent as the admin named (the broker wants another admin than the requester, with MFA)."""
    require(context, "disable_without_delete")  # a pending agent's client is off until approved
    return await decide(context, args, "approve")


@step("deny", Decide)
async def deny(context: RunContext, args: Decide) -> Evidence:
    """Deny a pending agent."""
    return await decide(context, args, "deny")


# role change --------------------------------------------------------------------------------------------------


class ChangeRole(StepArgs):
    agent: str
    role: str
    environment: Literal["staging", "production"] | None = None
    by: str | None = None
    reason: str = "scenario"


@step("change_role", ChangeRole)
async def change_role(context: RunContext, args: ChangeRole) -> Evidence:
    """Give the agent another role; nothing on the agent's side changes."""
    agent = context.agents[args.agent]
    body: dict[str, Any] = {"role": args.role, "reason": args.reason}
    if args.environment:
        body["environment"] = args.environment
    answer = await context.broker("POST", f"{agent_path(agent)}/role", by=args.by, agent=agent, body=body)
    return record(agent, answer)


# rotation -----------------------------------------------------------------------------------------------------


class Rotate(StepArgs):
    agent: str
    grace: int = Field(default=60, ge=0, le=3600, description="Seconds the old credential keeps working.")
    by: str | None = None


async def rotate_credential(context: RunContext, agent: AgentHandle, grace: int, by: str | None) -> Evidence:
    """Rotate through the broker; the agent keeps the old credential as `previous` and takes the new one."""
    require(context, "key_rotation" if agent.spec.credential == "private_key_jwt" else "dual_secret_rotation")
    key = None
    body: dict[str, Any] = {"grace_seconds": grace, "reason": "scenario"}
    if agent.spec.credential == "private_key_jwt":
        generation = context.values.get(f"{agent.name}/key", 1) + 1
        context.remember(f"{agent.name}/key", generation)
        key = new_key(f"{agent.name}-{generation}")
        body["jwk"] = key.as_dict(private=False)
    answer = await context.broker("POST", f"{agent_path(agent)}/rotate", by=by, agent=agent, body=body)
    agent.previous, agent.credential = agent.credential, credential_for(answer["credential"], key)
    evidence = record(agent, answer["agent"])
    evidence["grace_ends_at"] = answer.get("grace_ends_at")
    evidence["dependencies"] = answer.get("dependencies")
    return evidence


@step("rotate", Rotate, shorthand="agent")
async def rotate(context: RunContext, args: Rotate) -> Evidence:
    """Rotate the agent's credential with a grace period (see `rotate_under_load` for rotation during traffic)."""
    return await rotate_credential(context, context.agents[args.agent], args.grace, args.by)


class AgentOnly(StepArgs):
    agent: str
    by: str | None = None


@step("end_grace", AgentOnly, shorthand="agent")
async def end_grace(context: RunContext, args: AgentOnly) -> Evidence:
    """End a rotation's grace period now: the old credential stops working."""
    agent = context.agents[args.agent]
    answer = await context.broker("POST", f"{agent_path(agent)}/rotation/end", by=args.by, agent=agent, body={})
    return record(agent, answer)


# revocation ---------------------------------------------------------------------------------------------------


class Revoke(StepArgs):
    agent: str
    by: str | None = None
    expect: Literal["revoked", "already_revoked"] = "revoked"
    reason: str = "scenario"


@step("revoke", Revoke, shorthand="agent")
async def revoke(context: RunContext, args: Revoke) -> Evidence:
    """Revoke the agent; the broker verifies with the agent's latest token that each of its servers now says 401."""
    require(context, "token_revocation")
    agent = context.agents[args.agent]
    body: dict[str, Any] = {"reason": args.reason}
    if agent.token is not None:
        body["verify_token"] = agent.token.access_token
    answer = await context.broker("POST", f"{agent_path(agent)}/revoke", by=args.by, agent=agent, body=body)
    if agent.revoked_at is None:
        agent.revoked_at = time.monotonic()
    evidence = record(agent, answer["agent"])
    evidence.update(events=answer["events"], verification=answer["verification"])
    outcome = "already_revoked" if answer["already_revoked"] else "revoked"
    if outcome != args.expect:
        raise StepFailed(args.expect, outcome, evidence)
    # The broker's own check is evidence: a jwt-mode server keeps accepting a token until it expires, and
    # `expect_401_within` holds each server to its mode's budget.
    return evidence


# suspension ---------------------------------------------------------------------------------------------------


class ExpectSuspended(StepArgs):
    agent: str
    within: float = Field(
        default=30, gt=0, le=600, description="Seconds the broker may take to suspend it (usage reports, scans)."
    )
    rule: Literal["refused_calls", "failed_token_requests", "outside_zone_calls"] | None = Field(
        default=None, description="The anomaly rule that must have suspended it."
    )
    by: str | None = None


@step("expect_suspended", ExpectSuspended)
async def expect_suspended(context: RunContext, args: ExpectSuspended) -> Evidence:
    """The broker suspends the agent for an anomaly (within ``within`` s); from then on, like after a revoke,
    ``expect_401_within`` holds each server to its mode's budget, counted from the suspension."""
    if args.rule == "failed_token_requests":
        require(context, "event_emission")  # the broker counts them from the IdP's recorded events
    agent = context.agents[args.agent]
    deadline = time.monotonic() + args.within
    while True:
        answer = await context.broker("GET", agent_path(agent), by=args.by, agent=agent)
        if answer["status"] == "suspended":
            break
        if time.monotonic() > deadline:
            raise StepFailed(f"suspended within {args.within:g}s", answer["status"], record(agent, answer))
        await asyncio.sleep(0.2)
    clock = await context.broker("GET", f"/tenants/{agent.tenant.name}/clock", by=args.by, agent=agent)
    # When the suspension happened, on this process's monotonic clock: the tenant's time now, less its time then.
    ago = (datetime.fromisoformat(clock["now"]) - datetime.fromisoformat(answer["suspended_at"])).total_seconds()
    agent.revoked_at = time.monotonic() - max(ago, 0.0)
    audit = await context.broker("GET", f"/tenants/{agent.tenant.name}/audit", by=args.by, agent=agent,
                                 params={"agent_id": agent.id})  # fmt: skip
    entry = next((e for e in reversed(audit) if e["action"] == "agent.suspended"), None)
    evidence = record(agent, answer)
    evidence.update(suspended_at=answer["suspended_at"], seconds_ago=round(ago, 3), audit=entry)
    if entry is None:
        raise StepFailed("an agent.suspended audit entry", "none", evidence)
    rule = (entry.get("after") or {}).get("rule")
    if args.rule is not None and rule != args.rule:
        raise StepFailed(f"suspended by rule {args.rule}", f"by rule {rule}", evidence)
    return evidence


class Resume(StepArgs):
    agent: str
    by: str | None = None
    expect: Literal["resumed", "refused"] = "resumed"
    reason: str = "scenario"


@step("resume", Resume, shorthand="agent")
async def resume(context: RunContext, args: Resume) -> Evidence:
    """An admin resumes the suspended agent (needs MFA): its credential works again, new tokens are accepted."""
    agent = context.agents[args.agent]
    try:
        answer = await context.broker(
            "POST", f"{agent_path(agent)}/resume", by=args.by, agent=agent, body={"reason": args.reason}
        )
    except BrokerRefused as error:
        if args.expect == "refused":
            return {"refused": error.error, "status": error.status, "cause": error.body.get("cause")}
        raise StepFailed("resumed", refusal(error)) from error
    evidence = record(agent, answer)
    if args.expect == "refused":
        raise StepFailed("refused", answer["status"], evidence)
    agent.revoked_at = None  # active again: its next calls take a fresh token
    agent.token = None
    return evidence


# status, dormancy and the clock --------------------------------------------------------------------------------


class ExpectStatus(StepArgs):
    agent: str
    status: AgentStatus
    by: str | None = None


@step("expect_status", ExpectStatus)
async def expect_status(context: RunContext, args: ExpectStatus) -> Evidence:
    """The broker reports this status for the agent."""
    agent = context.agents[args.agent]
    answer = await context.broker("GET", agent_path(agent), by=args.by, agent=agent)
    evidence = record(agent, answer)
    if answer["status"] != args.status:
        raise StepFailed(args.status, answer["status"], evidence)
    return evidence


class AdvanceClock(StepArgs):
    days: float = Field(default=0, ge=0, le=3650)
    hours: float = Field(default=0, ge=0, le=87600)
    tenant: str | None = None
    by: str | None = None

    def summary(self) -> str:
        return f"{self.days:g} days {self.hours:g} hours".replace(" 0 hours", "")


@step("advance_clock", AdvanceClock)
async def advance_clock(context: RunContext, args: AdvanceClock) -> Evidence:
    """Move the broker's clock for this scenario's tenant (time-based policy: dormancy, grace)."""
    tenant = context.tenants[args.tenant or next(iter(context.tenants))]
    body = {"advance": {"days": args.days, "hours": args.hours}}
    by = args.by or next(iter(tenant.admins))
    return await context.broker("POST", f"/tenants/{tenant.name}/clock", by=by, body=body)


class DormancyScan(StepArgs):
    references: ClassVar[dict[str, str]] = {**StepArgs.references, "expect_dormant": "agents"}

    tenant: str | None = None
    by: str | None = None
    expect_dormant: list[str] = Field(description="The scenario's agents the scan must find dormant, exactly.")

    def summary(self) -> str:
        return f"expect dormant {', '.join(self.expect_dormant) or 'none'}"


@step("dormancy_scan", DormancyScan)
async def dormancy_scan(context: RunContext, args: DormancyScan) -> Evidence:
    """Run the dormancy scan; exactly the agents named become dormant and enter the review queue."""
    require(context, "disable_without_delete")  # a dormant agent's client is off, kept for review
    tenant = context.tenants[args.tenant or next(iter(context.tenants))]
    by = args.by or next(iter(tenant.admins))
    if not BY_IDP[context.idp].supports("event_emission"):
        await usage_reported(context, by)  # without IdP events, the broker judges by the usage servers report
    answer = await context.broker("POST", f"/tenants/{tenant.name}/dormancy/scan", by=by, body={})
    by_id = {agent.id: name for name, agent in context.agents.items() if agent.id}
    dormant = sorted(by_id.get(entry["id"], entry["name"]) for entry in answer["dormant"])
    queue = await context.broker("GET", f"/tenants/{tenant.name}/review-queue", by=by)
    queued = sorted(
        by_id.get(entry["id"], entry["name"])
        for entry in queue
        if (entry.get("review") or {}).get("reason") == "dormant"
    )
    evidence = {"dormant": dormant, "review_queue": queued, "as_of": answer["as_of"], "errors": answer["errors"]}
    if dormant != sorted(args.expect_dormant) or queued != sorted(args.expect_dormant):
        raise StepFailed(f"dormant and queued: {sorted(args.expect_dormant)}", f"{dormant} / queued {queued}", evidence)
    for name in dormant:
        context.agents[name].status = "dormant"
    return evidence


async def usage_reported(context: RunContext, by: str) -> None:
    """Wait until the broker has the usage reports of every call the scenario's agents made (servers send them in
    batches, off the request path), as the monitoring step does."""
    for agent in context.agents.values():
        if not agent.reported_calls or agent.id is None or agent.status in ("revoked", "rejected"):
            continue
        for _ in range(40):
            report = await context.broker("GET", f"{agent_path(agent)}/monitoring", by=by, agent=agent)
            if report["tool_calls"] >= agent.reported_calls:
                break
            await asyncio.sleep(0.25)


class Review(StepArgs):
    agent: str
    decision: Literal["keep", "revoke"]
    by: str | None = None


@step("review", Review)
async def review(context: RunContext, args: Review) -> Evidence:
    """Decide a dormant agent's review: keep (re-enabled) or revoke."""
    agent = context.agents[args.agent]
    body = {"decision": args.decision, "reason": "scenario review"}
    answer = await context.broker("POST", f"{agent_path(agent)}/review", by=args.by, agent=agent, body=body)
    if args.decision == "revoke" and agent.revoked_at is None:
        agent.revoked_at = time.monotonic()
    return record(agent, answer)


class Wait(StepArgs):
    seconds: float = Field(gt=0, le=120)

    def summary(self) -> str:
        return f"{self.seconds:g}s"


@step("wait", Wait, shorthand="seconds")
async def wait(context: RunContext, args: Wait) -> Evidence:
    """Let real time pass (a grace period running out, a token expiring)."""
    await asyncio.sleep(args.seconds)
    return {"waited": args.seconds}


# onboarding as code -------------------------------------------------------------------------------------------


class Apply(StepArgs):
    file: str = Field(description="An agents file, relative to the scenario file; `{tenant}` is filled in.")
    by: str | None = None
    expect: Literal["applied", "refused"] = "applied"
    changes: dict[Literal["create", "change", "revoke"], int] | None = Field(
        default=None, description="How many of each change the plan must hold (omitted kinds: zero)."
    )

    def summary(self) -> str:
        return f"{self.file} expect {self.expect}"


@step("apply", Apply, shorthand="file")
async def apply(context: RunContext, args: Apply) -> Evidence:
    """Bring the tenant's agents to what an agents file declares (policy checked before any change)."""
    tenant, admin = context.admin(args.by)
    source = Path(context.values["scenario_dir"]) / args.file
    rendered = Path(context.values["workdir"]) / source.name
    rendered.write_text(source.read_text().replace("{tenant}", tenant.name))
    token = await admin.login()

    def run() -> tuple[Any, dict[str, Any]]:
        with BrokerClient(context.settings.broker_url, token) as client:
            return apply_agents_file(client, rendered)

    try:
        plan, _ = await asyncio.to_thread(run)
    except SandboxError as error:  # a refused plan names the file and line; nothing was changed
        if args.expect == "refused":
            return {"refused": str(error).replace(str(rendered), args.file)}
        raise StepFailed("the file to apply", f"refused: {error}") from None
    kinds = {"create": "create", "change_role": "change", "revoke": "revoke"}
    counts = {kind: 0 for kind in kinds.values()}
    for change in plan.changes:
        counts[kinds[change.action]] += 1
    evidence = {"changes": counts, "plan": [change.describe() for change in plan.changes]}
    if args.expect == "refused":
        raise StepFailed("the file to be refused before any change", f"applied {counts}", evidence)
    wanted = {kind: (args.changes or {}).get(kind, 0) for kind in counts}  # type: ignore[call-overload]
    if args.changes is not None and counts != wanted:
        raise StepFailed(f"changes {wanted}", f"{counts}", evidence)
    return evidence
