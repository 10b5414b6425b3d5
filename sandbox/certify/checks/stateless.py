"""stateless-auth, header-body-match, private-cache: what the 2026-07-28 stateless core asks of an MCP server's auth."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from sandbox.agent.mcp_http import rpc_message, served, tool_names
from sandbox.certify.checks.lifecycle import with_marker
from sandbox.certify.context import Context, check
from sandbox.certify.forge import claims_of
from sandbox.certify.model import mcp_at, mcp_security
from sandbox.certify.revision import STATELESS

#: The JSON-RPC error a server answers a header that disagrees with the body (2026-07-28).
HEADER_MISMATCH = -32020


@check(
    "stateless-auth",
    "MUST",
    "Authorises every request on its own",
    "Right after a request with a valid token is served, on the same connection, tools/list and a tool call "
    "without a token are answered 401, and so is a request with an unacceptable token: whatever the served "
    "answer handed out (cookies, an Mcp-Session-Id) is sent back and stands in for no token.",
    mcp_at(STATELESS, "basic", "Statelessness", "statelessness"),
    mcp_security("State Handle Hijacking", "state-handle-hijacking"),
    revisions=(STATELESS,),
)
def stateless_auth(ctx: Context) -> None:
    token = ctx.world.full_agent().token()
    listed = ctx.list_tools(token, None)
    ctx.control("tools/list with a valid token is served", served(listed), listed)
    handles = {"Mcp-Session-Id": listed.headers["mcp-session-id"]} if "mcp-session-id" in listed.headers else {}
    kept = sorted(ctx.http.cookies.keys())
    given = ", ".join([*handles, *(f"cookie {name}" for name in kept)]) or "none was handed out"
    tool, probe = next(iter(ctx.manifest.tools.items()))
    unacceptable = ctx.world.unusable_token(claims_of(token))
    cases = {
        "tools/list without a token": ctx.send(ctx.wire.list_tools(), headers=handles),
        f"a {tool} call without a token": ctx.send(ctx.wire.tool_call(tool, probe.arguments), headers=handles),
        "tools/list with an unacceptable token": ctx.send(ctx.wire.list_tools(), unacceptable, headers=handles),
    }
    for label, response in cases.items():
        ctx.expect(
            f"{label}, right after a served request and with its handles ({given}), is answered 401",
            response.status_code == 401,
            response,
        )


def _rpc_error_code(response: httpx.Response) -> int | None:
    found = rpc_message(response) or {}
    error = found.get("error")
    return error.get("code") if isinstance(error, dict) else None


@check(
    "header-body-match",
    "MUST",
    "Refuses a request whose Mcp-Method or Mcp-Name disagrees with its body",
    "An agent holding one tool's scope: a call whose Mcp-Name names that allowed tool while the body calls a "
    "forbidden one, the reverse, and an Mcp-Method that is not the body's method are each refused with 400 and "
    "the HeaderMismatch JSON-RPC error (-32020). With a tenant_data probe, a write whose Mcp-Name names the read "
    "tool is refused and the write is shown not to have run.",
    mcp_at(STATELESS, "basic/transports/streamable-http", "Server Validation", "server-validation"),
    mcp_at(STATELESS, "basic/transports/streamable-http", "Standard Request Headers", "standard-request-headers"),
    revisions=(STATELESS,),
)
def header_body_match(ctx: Context) -> None:
    tools = ctx.manifest.tools
    allowed, allowed_probe = next(iter(tools.items()))
    forbidden = next((name for name, p in tools.items() if p.scope != allowed_probe.scope), None)
    if forbidden is None:
        ctx.skip("every declared tool needs the same scope: no tool is forbidden to an agent that may call another")
    token = ctx.world.agent({allowed_probe.scope}).token()
    served_call = ctx.call(token, None, allowed, allowed_probe.arguments)
    ctx.control(f"{allowed} is served to an agent holding {allowed_probe.scope}", served(served_call), served_call)
    forbidden_call = ctx.wire.tool_call(forbidden, tools[forbidden].arguments)
    allowed_call = ctx.wire.tool_call(allowed, allowed_probe.arguments)
    cases = {
        f"Mcp-Name {allowed} (allowed), the body calling {forbidden} (forbidden)": ctx.send(
            forbidden_call, token, headers={"Mcp-Name": allowed}
        ),
        f"Mcp-Name {forbidden} (forbidden), the body calling {allowed} (allowed)": ctx.send(
            allowed_call, token, headers={"Mcp-Name": forbidden}
        ),
        f"Mcp-Method tools/list, the body calling {allowed}": ctx.send(
            allowed_call, token, headers={"Mcp-Method": "tools/list"}
        ),
    }
    for label, response in cases.items():
        ctx.expect(f"{label}: not served", not served(response), response)
        ctx.expect(
            f"{label}: 400 with the HeaderMismatch error ({HEADER_MISMATCH})",
            response.status_code == 400 and _rpc_error_code(response) == HEADER_MISMATCH,
            response,
        )
    probe = ctx.manifest.tenant_data
    if probe is not None and probe.write.tool != probe.read.tool:
        marker = f"certify-{uuid.uuid4().hex[:12]}"
        writer = ctx.world.agent({tools[probe.write.tool].scope, tools[probe.read.tool].scope}).token()
        write = ctx.wire.tool_call(probe.write.tool, with_marker(probe.write.arguments, marker))
        disguised = ctx.send(write, writer, headers={"Mcp-Name": probe.read.tool})
        named = f"a {probe.write.tool} call named {probe.read.tool} in Mcp-Name is not served"
        ctx.expect(named, not served(disguised), disguised)
        read = ctx.call(writer, None, probe.read.tool, with_marker(probe.read.arguments, marker))
        ctx.control(f"{probe.read.tool} is served", served(read), read)
        ctx.expect(f"{probe.write.tool} did not run (its marker is not there to read)", marker not in read.text, read)


def _cache_scope(response: httpx.Response) -> Any:
    result = (rpc_message(response) or {}).get("result")
    return result.get("cacheScope") if isinstance(result, dict) else None


@check(
    "private-cache",
    "MUST",
    'Marks a result that depends on the caller cacheScope "private", and never serves it to another token',
    "Two agents holding different scopes list the tools, each twice, in turn: every list carries `cacheScope`; "
    'when the lists differ (they depend on the principal) each is "private"; and each agent always gets its own '
    "list, never the other's.",
    mcp_at(STATELESS, "server/utilities/caching", "Cache Scope Field", "cache-scope-field"),
    mcp_at(STATELESS, "server/tools", "Listing Tools", "listing-tools"),
    revisions=(STATELESS,),
)
def private_cache(ctx: Context) -> None:
    scopes = ctx.manifest.scopes()
    if len(scopes) < 2:
        ctx.skip(f"the manifest declares one scope ({scopes[0]}): two agents cannot hold different ones")
    holders = {"first": scopes[0], "second": scopes[1]}
    answers = []
    for who, scope in holders.items():
        token = ctx.world.agent({scope}).token()
        response = ctx.list_tools(token, None)
        ctx.control(f"tools/list of the {who} agent (holding only {scope}) is served", served(response), response)
        answers.append((who, token, response))
    own = {who: tool_names(response) for who, _, response in answers}
    for who, _, response in answers:
        ctx.expect(f"the {who} agent's tools/list carries cacheScope", _cache_scope(response) is not None, response)
    if own["first"] != own["second"]:
        for who, _, response in answers:
            ctx.expect(
                f'the {who} agent\'s tools/list, which depends on who asks, is marked cacheScope "private"',
                _cache_scope(response) == "private",
                response,
                f"cacheScope: {_cache_scope(response)!r}",
            )
    else:
        ctx.remark("both agents were shown the same tools: tools/list does not depend on the principal here")
    for who, token, _ in reversed(answers):
        again = ctx.list_tools(token, None)
        ctx.expect(
            f"asked again after the other agent, the {who} agent gets its own list",
            served(again) and tool_names(again) == own[who],
            again,
            f"listed: {', '.join(sorted(tool_names(again)))}",
        )
