"""session-binding: a session is usable only by the principal that created it."""

from __future__ import annotations

from sandbox.agent.mcp_http import served
from sandbox.certify.context import Context, check
from sandbox.certify.model import mcp_security
from sandbox.certify.revision import LEGACY


@check(
    "session-binding",
    "MUST",
    "Binds a session to the principal that created it",
    "Another agent of the same tenant, with the same scopes, and an agent of another tenant, each first served "
    "on a session of its own (so a refusal is the binding, not the token), use the owner's Mcp-Session-Id with "
    "their own valid tokens: tools/list and a tool call are not served.",
    mcp_security("Session Hijacking", "session-hijacking"),
    revisions=(LEGACY,),
)
def session_binding(ctx: Context) -> None:
    world = ctx.world
    token = world.full_agent().token()
    session = ctx.session(token, "the owner")
    if session is None:
        ctx.skip("the server assigns no Mcp-Session-Id (stateless): there is no session to take over")
    listed = ctx.list_tools(token, session)
    ctx.control("the owner's tools/list on its session is served", served(listed), listed)
    tool, probe = next(iter(ctx.manifest.tools.items()))
    intruders = {f"another agent of {world.home}": world.agent(ctx.manifest.scopes(), label="intruder")}
    if world.other is not None:
        intruders[f"an agent of {world.other}"] = world.full_agent(world.other)
    for who, intruder in intruders.items():
        stolen = intruder.token()
        own = ctx.session(stolen, who)
        served_own = ctx.call(stolen, own, tool, probe.arguments)
        ctx.control(f"{who} is served {tool} on its own session", served(served_own), served_own)
        listed = ctx.list_tools(stolen, session)
        ctx.expect(f"{who} is not served tools/list on the owner's session", not served(listed), listed)
        called = ctx.call(stolen, session, tool, probe.arguments)
        ctx.expect(f"{who} is not served {tool} on the owner's session", not served(called), called)
