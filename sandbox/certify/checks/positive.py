"""positive: a valid token with the right scope is served, every declared tool included."""

from __future__ import annotations

from sandbox.agent.mcp_http import served, tool_error, tool_names
from sandbox.certify.context import Context, check
from sandbox.certify.model import mcp, rfc


@check(
    "positive",
    "MUST",
    "Serves a valid token with the right scope",
    "A token of the sandbox issuer, for this server, with every declared scope, is served the opening request "
    "(initialize; server/discover), lists the tools and calls each declared tool's probe. Every negative check "
    "repeats such a request as its control.",
    mcp("Token Handling", "token-handling"),
    rfc(6750, "2.1", "Authorization Request Header Field"),
    prepare=lambda world: world.prepare_agents([frozenset(world.manifest.scopes())]),
)
def positive(ctx: Context) -> None:
    token = ctx.world.full_agent().token()
    response = ctx.opening(token)
    opening = ctx.wire.opening_method
    ctx.expect(f"{opening} with a valid token is answered 200 with a JSON-RPC result", served(response), response)
    if not served(response):
        return
    session = ctx.session(token, "the agent")
    listed = ctx.list_tools(token, session)
    ctx.expect("tools/list is served", served(listed), listed)
    missing = sorted(set(ctx.manifest.tools) - tool_names(listed))
    ctx.expect(
        "tools/list shows every tool the manifest declares",
        not missing,
        listed,
        f"not listed: {', '.join(missing)}" if missing else "all listed",
    )
    for tool, probe in ctx.manifest.tools.items():
        called = ctx.call(token, session, tool, probe.arguments)
        error = " (the tool itself reported an error: an auth check passes, but see the probe's arguments)"
        what = f"{tool} (its probe call) is served" + (error if served(called) and tool_error(called) else "")
        ctx.expect(what, served(called), called)
