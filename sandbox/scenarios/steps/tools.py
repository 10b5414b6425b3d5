"""Agent-side steps: tokens from the tenant's token endpoint, tool calls to MCP servers, revocation budgets."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from sandbox.admin.login import user_login
from sandbox.agent.tokens import Token, TokenRefused
from sandbox.modes import MODES, revocation_mode
from sandbox.scenarios.calls import CallOutcome
from sandbox.scenarios.context import AgentHandle, RunContext
from sandbox.scenarios.library import StepFailed, require, require_for_servers, step
from sandbox.scenarios.steps.base import StepArgs

Evidence = dict[str, Any]


# tokens -------------------------------------------------------------------------------------------------------


def refusal(refused: TokenRefused, expect: str, wanted: str) -> Evidence:
    """The token endpoint said no: evidence when that was expected, a failed step when not."""
    evidence = {"refused": refused.error, "status": refused.status, "description": refused.description}
    if expect == "refused":
        return evidence
    raise StepFailed(wanted, f"refused ({refused.error})", evidence)


class GetToken(StepArgs):
    agent: str
    credential: Literal["current", "previous", "wrong"] = Field(
        default="current", description="wrong: the agent's client id with a secret that is not its own."
    )
    expect: Literal["issued", "refused"] = "issued"
    scopes: list[str] | None = Field(default=None, description="The exact tool scopes the token must carry.")
    binding: Literal["bearer", "dpop", "mtls"] | None = Field(
        default=None,
        description="How the token must be bound: dpop, to the agent's own DPoP key (cnf.jkt, token type DPoP); "
        "mtls, to the agent's own client certificate (cnf.x5t#S256); bearer, to nothing.",
    )
    lifetime: int | None = Field(
        default=None, gt=0, description="The token's exp - iat must be this many seconds (or one more: a clock tick)."
    )
    from_zone: str | None = Field(
        default=None, description="Ask from this network zone of the policy instead of the agent's own."
    )
    refusal_says: str | None = Field(
        default=None, description="With expect: refused, text the refusal's error_description must contain."
    )
    resource: str | None = Field(
        default=None,
        description="A revocation mode or scenario server: ask with RFC 8707 resource= for a token for that one "
        "server; its aud must name exactly that server.",
    )
    references: ClassVar[dict[str, str]] = {**StepArgs.references, "resource": "servers"}


def source_of(context: RunContext, agent: AgentHandle, zone: str | None) -> str | None:
    """The address a step's requests come from: the zone it names, else the agent's own zone (if any)."""
    return context.zone_address(zone) if zone else agent.source


@step("get_token", GetToken, shorthand="agent")
async def get_token(context: RunContext, args: GetToken) -> Evidence:
    """Ask the tenant's token endpoint for a client-credentials token with the agent's credential."""
    agent = context.agents[args.agent]
    resource = None
    if args.resource is not None:
        require(context, "resource_indicators")
        (resource,) = context.servers(args.resource).values()
    try:
        source = source_of(context, agent, args.from_zone)
        if resource is None:
            token = await agent.fetch_token(args.credential, source)
        else:  # resource= alone: no audience= the harness would otherwise add for an IdP that needs it
            credential = agent.require_credential(args.credential)
            async with agent.token_client(credential, source, audience=False) as client:
                token = await client.fetch(resource=resource)
            if args.credential == "current":
                agent.token = token  # the agent holds it: later steps call with it
    except TokenRefused as refused:
        evidence = refusal(refused, args.expect, "a token")
        if args.refusal_says is not None and args.refusal_says not in refused.description:
            raise StepFailed(
                f"a refusal that says {args.refusal_says!r}", repr(refused.description), evidence
            ) from None
        return evidence
    claims = token.claims()
    evidence = {k: claims.get(k) for k in ("iss", "azp", "aud", "scope", "sub", "exp", "iat", "cnf", "sandbox_zone")}
    evidence["token_type"] = token.token_type
    if resource is not None and args.expect == "issued" and claims.get("aud") not in (resource, [resource]):
        raise StepFailed(f"aud {resource} alone", f"aud {claims.get('aud')}", evidence)
    if args.expect == "refused":
        raise StepFailed(f"the {args.credential} credential to be refused", "a token was issued", evidence)
    if args.binding is not None:
        check_binding(agent, token, args.binding, evidence)
    if args.scopes is not None:
        tool_scopes = {s for s in token.scopes if s.startswith("mcp:tool:")}
        if tool_scopes != set(args.scopes):
            raise StepFailed(f"scopes {sorted(args.scopes)}", f"{sorted(tool_scopes)}", evidence)
    if args.lifetime is not None:
        check_lifetime(claims, args.lifetime, evidence)
    return evidence


def check_lifetime(claims: dict[str, Any], lifetime: int, evidence: Evidence) -> None:
    """exp - iat is the lifetime the policy sets. An IdP may read its clock twice (Keycloak does: once for iat, once
    for exp), so a second boundary between the two reads adds one second; any other difference is a wrong lifetime."""
    lived = int(claims["exp"]) - int(claims["iat"])
    evidence["lifetime_s"] = lived
    if lived not in (lifetime, lifetime + 1):
        raise StepFailed(f"exp - iat = {lifetime}s", f"{lived}s", evidence)


#: What each binding ties a token to: what the agent holds, the ``cnf`` member naming it, and the token's type.
BOUND_TO = {"mtls": ("client certificate", "x5t#S256", "Bearer"), "dpop": ("DPoP key", "jkt", "DPoP")}


def check_binding(agent: AgentHandle, token: Token, binding: str, evidence: Evidence) -> None:
    """The token is bound as expected: to the agent's own DPoP key or client certificate, or to nothing."""
    cnf = token.claims().get("cnf")
    if binding == "bearer":
        if cnf is not None or token.token_type.lower() != "bearer":
            raise StepFailed("an unbound bearer token", f"a {token.token_type} token with cnf {cnf}", evidence)
        return
    what, member, token_type = BOUND_TO[binding]
    held = agent.certificate if binding == "mtls" else agent.dpop
    if held is None:
        raise StepFailed(f"agent {agent.name!r} to hold a {what}", "it has none", evidence)
    bound = cnf.get(member) if isinstance(cnf, dict) else None
    if bound != held.thumbprint or token.token_type.lower() != token_type.lower():
        raise StepFailed(
            f"a {token_type} token bound to the agent's {what} (cnf.{member} {held.thumbprint})",
            f"a {token.token_type} token with cnf {cnf}",
            evidence,
        )


# tool calls ---------------------------------------------------------------------------------------------------

Expectation = Literal["allowed", "401", "403", "tool_error"]


class CallTool(StepArgs):
    agent: str
    tool: str
    arguments: dict[str, Any] | None = Field(default=None, description="Generated from the seed when omitted.")
    expect: Expectation = "allowed"
    server: str | None = Field(default=None, description="A revocation mode or a scenario server; default: all.")
    data_tenant: str | None = Field(default=None, description="The tenant whose data an allowed call must return.")
    token: Literal["latest", "fresh"] = Field(
        default="latest", description="latest: the token the agent holds (even if revoked); fresh: a new one."
    )
    from_zone: str | None = Field(
        default=None, description="Call from this network zone of the policy instead of the agent's own."
    )


async def arguments_for(context: RunContext, agent: AgentHandle, tool: str, given: dict[str, Any] | None) -> dict:
    """Plausible arguments from the seed; a service name comes from the tenant's data when the agent may read it."""
    if given is not None:
        return given
    fake = context.faker
    if tool == "analytics.query":
        return {"query": "daily_active_users", "days": 7}
    if tool == "invoices.list":
        return {"limit": 5}
    if tool == "invoices.create":
        return {"customer": fake.company(), "amount_cents": fake.random_int(1_000, 500_000)}
    if tool == "logs.read":
        return {"limit": 5}
    if tool == "deploy.trigger":
        version = f"{fake.random_int(1, 9)}.{fake.random_int(0, 20)}.{fake.random_int(0, 50)}"
        return {"service": await a_service(context, agent), "environment": agent.spec.environment, "version": version}
    return {}


async def a_service(context: RunContext, agent: AgentHandle) -> str:
    """One of the tenant's services, as deploy.status shows it (a made-up name if the agent cannot look)."""
    key = f"{agent.tenant.name}/service"
    if key not in context.values:
        token = await agent.current_token()
        url = next(iter(context.agent_servers(agent, None).values()))
        outcome = await asyncio.to_thread(
            context.mcp.call_tool,
            url,
            agent.client_id or agent.name,
            token.access_token,
            "deploy.status",
            {},
            agent.dpop,
            agent.source,
            agent.certificate,
        )
        deployments = (outcome.result or {}).get("deployments") if outcome.outcome == "allowed" else None
        if not deployments:
            return f"{context.faker.word()}-api"
        context.remember(key, deployments[0]["service"])
    return str(context.values[key])


@step("call_tool", CallTool)
async def call_tool(context: RunContext, args: CallTool) -> Evidence:
    """Call a tool as the agent on each server; every answer must be the expected one."""
    agent = context.agents[args.agent]
    agent.require_provisioned()
    require_for_servers(context, context.servers(args.server))
    arguments = await arguments_for(context, agent, args.tool, args.arguments)
    if args.token == "fresh":
        token = await agent.fetch_token()
    elif agent.revoked_at is not None and agent.token is not None:
        token = agent.token  # a revoked agent still holds its last token: that is what the step is about
    else:
        token = await agent.current_token()
    evidence: Evidence = {"arguments": arguments}
    source = source_of(context, agent, args.from_zone)
    if source:
        evidence["from"] = source
    for name, url in context.agent_servers(agent, args.server).items():
        outcome = await asyncio.to_thread(
            context.mcp.call_tool,
            url,
            agent.client_id or agent.name,
            token.access_token,
            args.tool,
            arguments,
            agent.dpop,
            source,
            agent.certificate,
        )
        evidence[name] = outcome.evidence()
        if outcome.outcome in ("allowed", "403", "tool_error") and name in MODES:
            agent.reported_calls += 1  # the stack's servers report it to the broker (the usage it judges by)
        if outcome.outcome != args.expect:
            raise StepFailed(f"{args.expect} from {name}", describe(outcome), evidence)
        if args.data_tenant is not None:
            # The MCP server names a tenant as the broker's trust list (or its --issuer TENANT=URL) does.
            expected_tenant = context.tenants[args.data_tenant].name
            served_tenant = (outcome.result or {}).get("tenant")
            if served_tenant != expected_tenant:
                raise StepFailed(f"data of tenant {expected_tenant}", f"data of {served_tenant}", evidence)
    return evidence


def describe(outcome: CallOutcome) -> str:
    if outcome.outcome in ("allowed", "tool_error"):
        return outcome.outcome
    return f"{outcome.status}" + (f" ({outcome.challenge})" if outcome.challenge else "")


class ReplayToken(StepArgs):
    references: ClassVar[dict[str, str]] = {**StepArgs.references, "caller": "agents"}

    agent: str = Field(description="The agent whose latest token is taken.")
    caller: str | None = Field(
        default=None,
        description="The agent of the scenario that replays it, with a DPoP proof made with its own key (binding "
        "dpop) or over TLS with its own client certificate (binding mtls); default: a caller with no key and no "
        "certificate, sending the token as a bearer token (over TLS, when the token's agent has binding mtls).",
    )
    tool: str = "analytics.query"
    arguments: dict[str, Any] | None = Field(default=None, description="Generated from the seed when omitted.")
    expect: Expectation = "401"
    error: str | None = Field(
        default=None, description="The error the 401's challenge must name, e.g. invalid_token, invalid_dpop_proof."
    )
    server: str | None = Field(default=None, description="A revocation mode or a scenario server; default: all.")


@step("replay_token", ReplayToken)
async def replay_token(context: RunContext, args: ReplayToken) -> Evidence:
    """Another caller takes the agent's token and calls a tool with it: a bearer token works for anyone, a
    sender-constrained one only for the holder of its key."""
    agent = context.agents[args.agent]
    agent.require_provisioned()
    key, certificate = None, None
    if args.caller is not None:
        caller = context.agents[args.caller]
        key, certificate = caller.dpop, caller.certificate
        if key is None and certificate is None:
            raise StepFailed(
                f"caller {args.caller!r} to hold a DPoP key or a client certificate (binding dpop or mtls)",
                "it holds neither",
            )
    arguments = await arguments_for(context, agent, args.tool, args.arguments)
    token = await agent.current_token()
    principal = f"replay of {agent.client_id or agent.name} by {args.caller or 'a caller without its key'}"
    presented = "DPoP, the caller's own proof" if key else "Bearer, no proof"
    if certificate is not None:
        presented = "Bearer over TLS with the caller's own client certificate"
    elif agent.certificate is not None:
        presented = "Bearer over TLS without a client certificate"
    evidence: Evidence = {"presented_as": presented}
    # A certificate-bound token is replayed where it is used: on the TLS listeners.
    holder = context.agents[args.caller] if args.caller is not None and certificate is not None else agent
    for name, url in context.agent_servers(holder, args.server).items():
        outcome = await asyncio.to_thread(
            context.mcp.call_tool, url, principal, token.access_token, args.tool, arguments, key, None, certificate
        )
        evidence[name] = outcome.evidence()
        if outcome.outcome != args.expect:
            raise StepFailed(f"{args.expect} from {name}", describe(outcome), evidence)
        if args.error is not None and f'error="{args.error}"' not in (outcome.challenge or ""):
            raise StepFailed(f'a challenge with error="{args.error}" from {name}', describe(outcome), evidence)
    return evidence


class ListTools(StepArgs):
    agent: str
    expect: list[str] = Field(description="Exactly the tools tools/list must show the agent.")
    server: str | None = None

    def summary(self) -> str:
        return f"{self.agent} sees {', '.join(self.expect) or 'nothing'}"


@step("list_tools", ListTools)
async def list_tools(context: RunContext, args: ListTools) -> Evidence:
    """tools/list shows the agent exactly the tools its scopes allow."""
    agent = context.agents[args.agent]
    token = await agent.current_token()
    evidence: Evidence = {}
    for name, url in context.agent_servers(agent, args.server).items():
        outcome, names = await asyncio.to_thread(
            context.mcp.list_tools,
            url,
            agent.client_id or agent.name,
            token.access_token,
            agent.dpop,
            None,
            agent.certificate,
        )
        evidence[name] = sorted(names)
        if outcome.outcome != "allowed" or names != set(args.expect):
            raise StepFailed(
                f"tools {sorted(args.expect)} from {name}", f"{describe(outcome)} {sorted(names)}", evidence
            )
    return evidence


# revocation budget --------------------------------------------------------------------------------------------


class Expect401Within(StepArgs):
    agent: str
    seconds: float | None = Field(default=None, gt=0, le=600, description="Budget; default: each mode's own.")
    tool: str = "analytics.query"
    server: str | None = None

    def summary(self) -> str:
        within = f"{self.seconds:g}s" if self.seconds else "each mode's budget"
        return f"{self.agent} within {within}"


def budget(context: RunContext, mode: str, agent: AgentHandle, override: float | None) -> float:
    """Each mode's own budget (``sandbox.modes``): a round trip, the introspection cache, or the token's life."""
    if override is not None:
        return override
    settings = context.settings
    remaining = (agent.token.expires_at - time.time()) if agent.token else 0.0
    return revocation_mode(mode).budget(
        token_remaining=remaining, cache_ttl=settings.mcp_introspection_cache_ttl, leeway=settings.mcp_leeway
    )


@step("expect_401_within", Expect401Within)
async def expect_401_within(context: RunContext, args: Expect401Within) -> Evidence:
    """After a revoke, each server answers the agent's old token with 401 within its revocation mode's budget."""
    agent = context.agents[args.agent]
    if agent.token is None or agent.revoked_at is None:
        raise StepFailed("a revoked agent that held a token", "no token or not revoked yet")
    require_for_servers(context, context.servers(None))
    arguments = await arguments_for(context, agent, args.tool, None)

    async def until_refused(name: str, url: str) -> Evidence:
        mode = name if name in MODES else context.header.servers[name].mode
        allowed = budget(context, mode, agent, args.seconds)
        deadline = agent.revoked_at + allowed  # type: ignore[operator]
        while True:
            outcome = await asyncio.to_thread(
                context.mcp.call_tool,
                url,
                agent.client_id or agent.name,
                agent.token.access_token,
                args.tool,
                arguments,
                agent.dpop,
                agent.source,
                agent.certificate,
            )
            elapsed = time.monotonic() - agent.revoked_at  # type: ignore[operator]
            if outcome.status == 401:
                return {"mode": mode, "budget_s": round(allowed, 2), "refused_after_s": round(elapsed, 3)}
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"401 from {name} within {allowed:.1f}s of the revoke",
                    f"{describe(outcome)} after {elapsed:.1f}s",
                    {"mode": mode, "budget_s": allowed},
                )
            await asyncio.sleep(0.05)

    names = context.agent_servers(agent, args.server)
    results = await asyncio.gather(*(until_refused(name, url) for name, url in names.items()))
    return dict(zip(names, results, strict=True))


# delegation ---------------------------------------------------------------------------------------------------


class ExchangeToken(StepArgs):
    agent: str
    user: str
    scopes: list[str] | None = Field(default=None, description="Scopes to ask for; default: the agent's own.")
    expect: Literal["issued", "refused"] = "issued"
    expect_scopes: list[str] | None = Field(default=None, description="The exact tool scopes the token must carry.")
    consent: bool = Field(
        default=True, description="Whether the user lets the agent act for them at login (false: a plain login)."
    )

    def summary(self) -> str:
        return f"{self.agent} for {self.user}" + (f" expect {self.expect}" if self.expect != "issued" else "")


@step("exchange_token", ExchangeToken)
async def exchange_token(context: RunContext, args: ExchangeToken) -> Evidence:
    """The user logs in and consents to the agent; the agent exchanges that token for one that acts for the user."""
    require(context, "token_exchange")
    agent = context.agents[args.agent]
    issued = context.users[args.user]
    tenant = context.tenants[context.header.tenant_of_user(args.user)]
    delegate_to = [agent.client_id or ""] if args.consent else []
    login = await user_login(tenant.issuer, args.user, issued["password"], delegate_to=delegate_to)
    user_claims = Token(login.access_token, 0, "").claims()
    scope = " ".join(args.scopes) if args.scopes is not None else None
    try:
        async with agent.token_client(agent.require_credential()) as client:
            token = await client.exchange(login.access_token, scope)
    except TokenRefused as refused:
        return refusal(refused, args.expect, "a token acting for the user")
    claims = token.claims()
    evidence = {k: claims.get(k) for k in ("sub", "azp", "aud", "scope", "act")}
    if args.expect == "refused":
        raise StepFailed("the exchange to be refused", "a token was issued", evidence)
    if claims.get("sub") != user_claims.get("sub") or claims.get("azp") != agent.client_id:
        raise StepFailed(f"sub = {args.user}, azp = the agent", f"sub {claims.get('sub')}, azp {claims.get('azp')}")
    tool_scopes = sorted(s for s in token.scopes if s.startswith("mcp:tool:"))
    if args.expect_scopes is not None and tool_scopes != sorted(args.expect_scopes):
        raise StepFailed(f"scopes {sorted(args.expect_scopes)}", f"{tool_scopes}", evidence)
    agent.token = token  # the agent now acts for the user: its next calls carry this token
    return evidence
