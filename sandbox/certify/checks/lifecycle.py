"""revocation, tenant: the product's promises about agents' lives and tenants' data."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from sandbox.agent.mcp_http import served, tool_error
from sandbox.agent.tokens import ClientSecretCredential, fetch_token
from sandbox.certify.context import Context, check
from sandbox.certify.manifest import MARKER
from sandbox.certify.model import Reference, mcp, rfc
from sandbox.modes import MODES


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@check(
    "revocation",
    "product",
    "Refuses a revoked agent within the budget of its mode",
    "An agent provisioned through the broker is served (on 2025-11-25 on a session it opened); the broker "
    "revokes it (disables and deletes it in Keycloak and, in jwt+events mode, pushes its signed revocation event "
    "to the server); within the manifest's budget its token is answered 401 on a new request and refused on the "
    "session opened before the revocation, and every later request is refused too. A jwt-only server cannot "
    "learn of a revocation: there the check measures the token's expiry, and says so; the wait is bounded by the "
    "token lifetime the manifest declares.",
    rfc(7009, "2", "Token Revocation"),
    rfc(7662, "2.2", "Introspection Response"),
    Reference("RFC 8935 (push delivery of security event tokens)", "https://www.rfc-editor.org/rfc/rfc8935.html"),
)
def revocation(ctx: Context) -> None:
    declared = ctx.manifest.revocation
    if declared is None:
        ctx.skip("the manifest declares no revocation mode (revocation: {mode, budget})")
    world = ctx.world
    broker = world.broker()
    events_url = (declared.events_url or f"{origin(ctx.url)}/events") if MODES[declared.mode].receives_events else None
    broker.ensure_registered(ctx.url, events_url)
    role, environment = broker.role(declared.role, declared.environment)
    agent = broker.provision(world.home, ctx.url, role, environment, declared.lifetime)
    credential = ClientSecretCredential(agent.client_id, agent.secret)
    audience = world.token_audience(ctx.url)
    token = world.known.add(
        world.runner.run(fetch_token(agent.token_endpoint, credential, audience=audience)).access_token
    )
    session = ctx.session(token, f"an agent the broker provisioned ({role}/{environment})")
    listed = ctx.list_tools(token, session)
    ctx.control("its tools/list is served", served(listed), listed)
    answer = broker.revoke(agent, "mcp-sandbox certify: revocation check")
    if MODES[declared.mode].receives_events:
        delivery = next((event for event in answer.get("events", []) if event.get("server") == ctx.url), {})
        ctx.expect(
            f"the server takes the broker's revocation event at {events_url}",
            bool(delivery.get("delivered")),
            seen=json.dumps(delivery),
        )
    budget = declared.seconds
    expiry = declared.mode == "jwt"
    what = "expired" if expiry else "revoked"
    polled = refused_after(ctx, token, session, budget)
    ctx.expect(
        f"the {what} agent's token is answered 401 on a new request within {budget:g} s ({declared.mode})",
        polled.fresh.status_code == 401,
        polled.fresh,
        f"after {polled.elapsed:.1f} s: HTTP {polled.fresh.status_code}",
    )
    if session is not None and polled.on_session is not None:
        ctx.expect(
            f"the session it opened before the revocation is refused within {budget:g} s",
            not served(polled.on_session),
            polled.on_session,
            f"after {polled.elapsed:.1f} s: HTTP {polled.on_session.status_code}",
        )
    later = {ctx.wire.opening_method: ctx.opening(token), "tools/list": ctx.list_tools(token, session)}
    for label, response in later.items():
        ctx.expect(f"a later {label} with the {what} token is refused", not served(response), response)
    if expiry:
        lifetime = declared.lifetime
        ctx.remark(
            f"jwt mode: this measured the token's expiry ({lifetime} s lifetime), not a revocation; a jwt-only "
            f"server cannot learn of one (refused after {polled.elapsed:.1f} s)"
        )


@dataclass(frozen=True)
class Polled:
    fresh: httpx.Response  # the opening request with the token
    on_session: httpx.Response | None  # tools/list on the session opened before (2025-11-25)
    elapsed: float


def refused_after(ctx: Context, token: str, session: str | None, budget: float) -> Polled:
    """Poll the opening request (and the session) with the revoked token until both are refused, or the budget
    ends."""
    began = time.monotonic()
    interval = min(1.0, max(0.1, budget / 20))
    while True:
        fresh = ctx.opening(token)
        on_session = ctx.list_tools(token, session) if session is not None else None
        elapsed = time.monotonic() - began
        if (fresh.status_code == 401 and (on_session is None or not served(on_session))) or elapsed >= budget:
            return Polled(fresh, on_session, elapsed)
        time.sleep(interval)


def with_marker(arguments: dict[str, Any], marker: str) -> dict[str, Any]:
    return json.loads(json.dumps(arguments).replace(MARKER, marker))


@check(
    "tenant",
    "product",
    "Never serves one tenant's data to another tenant's token",
    "An agent of the home tenant writes a unique marker (the manifest's tenant_data.write) and reads it back; "
    "an agent of the other tenant, with the same scopes, reads (tenant_data.read) and must not see it.",
    mcp("Access Token Privilege Restriction", "access-token-privilege-restriction"),
)
def tenant(ctx: Context) -> None:
    probe = ctx.manifest.tenant_data
    if probe is None:
        ctx.skip("the manifest declares no tenant_data probe (a write and a read call)")
    world = ctx.world
    if world.other is None:
        ctx.skip("the manifest names one tenant; tenant isolation needs two")
    tools = ctx.manifest.tools
    scopes = {tools[probe.write.tool].scope, tools[probe.read.tool].scope}
    marker = f"certify-{uuid.uuid4().hex[:12]}"
    home = world.agent(scopes).token()
    home_session = ctx.session(home, f"an agent of {world.home}")
    written = ctx.call(home, home_session, probe.write.tool, with_marker(probe.write.arguments, marker))
    ctx.control(f"{world.home}'s agent writes the marker ({probe.write.tool})", served(written), written)
    ctx.control(f"{probe.write.tool} succeeds", not tool_error(written), written)
    read = ctx.call(home, home_session, probe.read.tool, with_marker(probe.read.arguments, marker))
    ctx.control(f"{world.home}'s agent reads it back ({probe.read.tool})", marker in read.text, read)
    other = world.agent(scopes, tenant=world.other).token()
    other_session = ctx.session(other, f"an agent of {world.other}")
    theirs = ctx.call(other, other_session, probe.read.tool, with_marker(probe.read.arguments, marker))
    ctx.control(f"{world.other}'s agent is served {probe.read.tool}", served(theirs), theirs)
    ctx.expect(f"{world.other}'s agent does not see {world.home}'s marker", marker not in theirs.text, theirs)
