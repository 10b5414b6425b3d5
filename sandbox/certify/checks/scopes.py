"""tool-scope: least privilege per tool, not only per endpoint."""

from __future__ import annotations

from sandbox.agent.mcp_http import served
from sandbox.certify.context import Context, check
from sandbox.certify.model import mcp_security


@check(
    "tool-scope",
    "MUST",
    "Enforces each tool's scope",
    "For each declared scope, an agent holding only it: each tool's probe is served to the agent holding that "
    "tool's scope (the declared scope is enough) and refused to every other one (HTTP 401/403 or a JSON-RPC "
    "error; a tool result, even with isError, counts as served).",
    mcp_security("Scope Minimization", "scope-minimization"),
    prepare=lambda world: world.prepare_agents([frozenset({scope}) for scope in world.manifest.scopes()]),
)
def tool_scope(ctx: Context) -> None:
    tools = ctx.manifest.tools
    scopes = ctx.manifest.scopes()
    if len(scopes) < 2:
        ctx.skip(
            f"the manifest declares one scope ({scopes[0]}): no agent holds another scope to be refused with; "
            "declare tools with at least two scopes"
        )
    holders = {}
    for scope in scopes:
        token = ctx.world.agent({scope}).token()
        holders[scope] = (token, ctx.session(token, f"an agent holding only {scope}"))
    for tool, probe in tools.items():
        token, session = holders[probe.scope]
        called = ctx.call(token, session, tool, probe.arguments)
        ctx.control(f"{tool} is served to an agent holding only {probe.scope}", served(called), called)
    for tool, probe in tools.items():
        for scope, (token, session) in holders.items():
            if scope == probe.scope:
                continue
            called = ctx.call(token, session, tool, probe.arguments)
            ctx.expect(f"{tool} is refused to an agent holding only {scope}", not served(called), called)
