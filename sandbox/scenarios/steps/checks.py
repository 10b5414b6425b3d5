"""Steps that check what the broker recorded (audit, monitoring, isolation) and generated configs in use."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from sandbox.admin.client import BrokerRefused
from sandbox.agent.mcp_config import McpClientConfig
from sandbox.agent.sdk import connect, provider_from_config
from sandbox.scenarios.context import RunContext
from sandbox.scenarios.library import StepFailed, require, require_for_servers, step
from sandbox.scenarios.steps.agents import agent_path
from sandbox.scenarios.steps.base import StepArgs
from sandbox.scenarios.steps.tools import arguments_for

Evidence = dict[str, Any]


class ExpectAudit(StepArgs):
    agent: str
    actions: list[str] = Field(description="Audit actions that must appear for the agent, in this order.")
    by: str | None = None
    actor: str | None = Field(default=None, description="An admin named in the scenario who must be an actor.")

    def summary(self) -> str:
        return f"{self.agent}: {' → '.join(self.actions)}"


@step("expect_audit", ExpectAudit)
async def expect_audit(context: RunContext, args: ExpectAudit) -> Evidence:
    """The agent's audit trail holds these actions in order, each with an actor and a time."""
    agent = context.agents[args.agent]
    entries = await context.broker(
        "GET", f"/tenants/{agent.tenant.name}/audit", by=args.by, agent=agent, params={"agent_id": agent.id}
    )
    trail = [entry["action"] for entry in entries]
    evidence = {"trail": [{k: e.get(k) for k in ("action", "actor", "at", "reason")} for e in entries]}
    position = 0
    for action in args.actions:
        try:
            position = trail.index(action, position) + 1
        except ValueError:
            raise StepFailed(f"audit actions {args.actions} in order", f"{trail}", evidence) from None
    if any(not entry.get("actor") or not entry.get("at") for entry in entries):
        raise StepFailed("an actor and a time on every entry", "an entry without them", evidence)
    if args.actor is not None and not any(args.actor in str(entry.get("actor")) for entry in entries):
        raise StepFailed(
            f"{args.actor} among the actors", f"{sorted({str(e.get('actor')) for e in entries})}", evidence
        )
    return evidence


class ExpectMonitoring(StepArgs):
    agent: str
    by: str | None = None
    failed_token_requests: int = Field(default=0, ge=0, description="At least this many.")
    denied_tool_calls: int = Field(default=0, ge=0, description="At least this many.")
    unused_scopes: list[str] | None = Field(default=None, description="Exactly these scopes reported unused.")


@step("expect_monitoring", ExpectMonitoring)
async def expect_monitoring(context: RunContext, args: ExpectMonitoring) -> Evidence:
    """Failed token requests, denied calls and unused scopes show up in the agent's monitoring report."""
    agent = context.agents[args.agent]
    if args.failed_token_requests:
        require(context, "event_emission")  # failed token requests are the IdP's events of the client
    wanted = (args.failed_token_requests, args.denied_tool_calls, args.unused_scopes)
    report: dict[str, Any] = {}
    for _ in range(40):  # usage reports reach the broker in batches, off the request path: allow a few seconds
        report = await context.broker("GET", f"{agent_path(agent)}/monitoring", by=args.by, agent=agent)
        seen = (report["failed_token_requests"], report["denied_tool_calls"], sorted(report["unused_scopes"]))
        if seen[0] >= wanted[0] and seen[1] >= wanted[1] and (wanted[2] is None or seen[2] == sorted(wanted[2])):
            return report
        await asyncio.sleep(0.25)
    raise StepFailed(
        f"failed tokens ≥ {wanted[0]}, denied calls ≥ {wanted[1]}, unused scopes {wanted[2]}",
        f"{report.get('failed_token_requests')}, {report.get('denied_tool_calls')}, {report.get('unused_scopes')}",
        report,
    )


class ExpectHidden(StepArgs):
    agent: str
    by: str = Field(description="An admin of another tenant, who must not see or touch the agent.")

    def summary(self) -> str:
        return f"{self.agent} hidden from {self.by}"


@step("expect_hidden", ExpectHidden)
async def expect_hidden(context: RunContext, args: ExpectHidden) -> Evidence:
    """An admin of another tenant gets 404, never data, for the agent, its audit and its revocation."""
    agent = context.agents[args.agent]
    path = agent_path(agent)
    attempts = {
        "read": ("GET", path, None),
        "audit": ("GET", f"/tenants/{agent.tenant.name}/audit", None),
        "monitoring": ("GET", f"{path}/monitoring", None),
        "rotate": ("POST", f"{path}/rotate", {"grace_seconds": 0}),
        "revoke": ("POST", f"{path}/revoke", {"reason": "attempt from another tenant"}),
        "revoke by id": ("POST", f"/revoke/{agent.id}", {"reason": "attempt from another tenant"}),
    }
    evidence: Evidence = {}
    for what, (method, target, body) in attempts.items():
        try:
            answer = await context.broker(method, target, by=args.by, body=body)
        except BrokerRefused as refused:
            evidence[what] = refused.status
            if refused.status != 404:
                raise StepFailed(f"404 for {what}", f"{refused.status}", evidence) from None
            continue
        raise StepFailed(f"404 for {what}", f"an answer: {str(answer)[:200]}", evidence)
    return evidence


class SdkCall(StepArgs):
    agent: str
    tool: str
    arguments: dict[str, Any] | None = None
    server: str = Field(default="jwt+events", description="The server of the config to connect to.")
    credential_source: Literal["env", "file"] = "env"
    by: str | None = None


@step("sdk_call", SdkCall)
async def sdk_call(context: RunContext, args: SdkCall) -> Evidence:
    """Generate the agent's MCP config, hand it its credential as the config says, and call a tool with the SDK."""
    agent = context.agents[args.agent]
    require_for_servers(context, context.servers(args.server))
    credential = agent.require_credential()
    secret = getattr(credential, "secret", None)
    if secret is None:
        raise StepFailed("an agent with a client secret", "a private_key_jwt agent (the config names a secret)")
    workdir = context.values["workdir"]
    reference = f"AGENT_{args.agent.upper().replace('-', '_')}_SECRET"
    environ: dict[str, str] = {}
    if args.credential_source == "env":
        environ[reference] = secret
    else:
        reference = f"{workdir}/{args.agent}.secret"
        with open(reference, "w") as out:
            out.write(secret)
    body = {"path": f"{workdir}/{args.agent}.mcp.json", "credential_source": args.credential_source,
            "credential_reference": reference}  # fmt: skip
    answer = await context.broker("POST", f"{agent_path(agent)}/mcp-config", by=args.by, agent=agent, body=body)
    if secret in str(answer):
        raise StepFailed("a config without the secret", "the secret inside the config")
    url = context.servers(args.server)[args.server]
    arguments = await arguments_for(context, agent, args.tool, args.arguments)
    config = McpClientConfig.read(answer, "the broker's config")
    auth = provider_from_config(config, url, environ)
    async with connect(url, auth) as client:
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        result = await client.call_tool(args.tool, arguments)
    evidence = {"config_servers": sorted(config.mcp_servers), "tools": tools, "is_error": result.is_error}
    if result.is_error:
        raise StepFailed(f"{args.tool} to succeed through the SDK", "a tool error", evidence)
    return evidence
