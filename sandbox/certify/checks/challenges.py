"""401-no-token, 401-www-authenticate, 401-scope-hint, 403-scope: what the server answers a request it refuses."""

from __future__ import annotations

from sandbox.agent.challenge import bearer_challenge
from sandbox.agent.mcp_http import served
from sandbox.certify.checks.common import accepted_token
from sandbox.certify.checks.metadata import document, metadata_urls
from sandbox.certify.context import Context, check
from sandbox.certify.model import mcp, rfc
from sandbox.loopback import is_loopback_url


@check(
    "401-no-token",
    "MUST",
    "Answers 401 to a request without a token",
    "The opening request (initialize; server/discover), tools/list (on 2025-11-25: on a live session) and a tool "
    "call, each without an Authorization header, are answered 401: a session id is no credential.",
    mcp("Token Handling", "token-handling"),
    rfc(6750, "3.1", "Error Codes"),
)
def no_token(ctx: Context) -> None:
    token, _ = accepted_token(ctx)
    session = ctx.session(token, "the agent")
    refused = ctx.opening()
    opening = ctx.wire.opening_method
    ctx.expect(f"{opening} without a token is answered 401", refused.status_code == 401, refused)
    listed = ctx.list_tools(None, session)
    where = " on a live session" if session is not None else ""
    ctx.expect(f"tools/list{where}, without a token, is answered 401", listed.status_code == 401, listed)
    tool, probe = next(iter(ctx.manifest.tools.items()))
    called = ctx.call(None, session, tool, probe.arguments)
    ctx.expect(f"a {tool} call without a token is answered 401", called.status_code == 401, called)


@check(
    "401-www-authenticate",
    "MUST",
    "Sends a Bearer challenge naming the resource metadata on a 401",
    "A 401 carries `WWW-Authenticate: Bearer` with `resource_metadata` pointing at this server's metadata (the "
    "2025-11-25 spec lets the well-known URL stand in for the parameter: that is a warning here). A 401 for an "
    'unacceptable token carries the challenge too, with `error="invalid_token"`.',
    mcp("Protected Resource Metadata Discovery Requirements", "protected-resource-metadata-discovery-requirements"),
    rfc(9728, "5.1", "WWW-Authenticate Response"),
    rfc(6750, "3", "The WWW-Authenticate Response Header Field"),
)
def www_authenticate(ctx: Context) -> None:
    _, claims = accepted_token(ctx)
    refused = ctx.opening()
    if refused.status_code != 401:
        ctx.skip("the server does not answer 401 without a token (see 401-no-token)")
    challenge = bearer_challenge(refused)
    ctx.expect("the 401 carries a WWW-Authenticate: Bearer challenge", challenge is not None, refused)
    if challenge is not None:
        ctx.expect(
            "the challenge to a request without a token has no error code (RFC 6750 §3.1)",
            challenge.get("error") is None,
            refused,
            warning=True,
        )
        location = challenge.get("resource_metadata")
        if location is None:
            well_known = any(document(ctx.get(url)) is not None for url in metadata_urls(ctx.url))
            ctx.expect(
                "the challenge names resource_metadata"
                + (" (the well-known URL serves the metadata, which the spec accepts instead)" if well_known else ""),
                False,
                refused,
                warning=well_known,
            )
        else:
            fetched = ctx.get(location) if is_loopback_url(location) else None
            found = document(fetched) if fetched is not None else None
            ctx.expect(
                f"resource_metadata ({location}) serves a protected resource metadata document (its content: "
                "prm-content)",
                found is not None and "resource" in found,
                fetched,
                "" if fetched is not None else "not on loopback: not fetched",
            )
    unacceptable = ctx.opening(ctx.world.unusable_token(claims))
    if unacceptable.status_code == 401:
        rejected = bearer_challenge(unacceptable)
        ctx.expect("a 401 for an unacceptable token carries the Bearer challenge", rejected is not None, unacceptable)
        ctx.expect(
            'that challenge says error="invalid_token"',
            rejected is not None and rejected.get("error") == "invalid_token",
            unacceptable,
            warning=True,
        )


@check(
    "401-scope-hint",
    "SHOULD",
    "Names the needed scope in the 401 challenge",
    "The challenge to a request without a token has `scope`; for a tool call it names the tool's scope, and an "
    "agent holding just the hinted scopes is served that call.",
    mcp("Protected Resource Metadata Discovery Requirements", "protected-resource-metadata-discovery-requirements"),
    rfc(6750, "3", "The WWW-Authenticate Response Header Field"),
)
def scope_hint(ctx: Context) -> None:
    accepted_token(ctx)
    refused = ctx.opening()
    challenge = bearer_challenge(refused) if refused.status_code == 401 else None
    if challenge is None:
        ctx.skip("no Bearer challenge on a 401 to carry a scope (see 401-no-token and 401-www-authenticate)")
    ctx.expect(f"the challenge to {ctx.wire.opening_method} names a scope", bool(challenge.scopes), refused)
    tool, probe = next(iter(ctx.manifest.tools.items()))
    refused_call = ctx.call(None, None, tool, probe.arguments)
    call_challenge = bearer_challenge(refused_call)
    hinted = call_challenge.scopes if call_challenge is not None else []
    ctx.expect(f"the challenge to a {tool} call names its scope {probe.scope}", probe.scope in hinted, refused_call)
    if probe.scope not in hinted:
        return
    held = {scope for scope in hinted if scope in ctx.manifest.scopes()}
    token = ctx.world.agent(held, label="holding the hinted scopes").token()
    session = ctx.session(token, "an agent holding the hinted scopes")
    called = ctx.call(token, session, tool, probe.arguments)
    others = sorted(set(hinted) - held)
    ctx.expect(
        f"an agent holding just the hinted scopes ({' '.join(sorted(held))}"
        + (f", and the issuer's own {' '.join(others)}" if others else "")
        + f") is served {tool}",
        served(called),
        called,
    )


@check(
    "403-scope",
    "SHOULD",
    "Answers 403 insufficient_scope naming the missing scope",
    'A valid token without a tool\'s scope gets 403 with `WWW-Authenticate: Bearer error="insufficient_scope"`, '
    "`scope` naming what the call needs and `resource_metadata`.",
    mcp("Runtime Insufficient Scope Errors", "runtime-insufficient-scope-errors"),
    rfc(6750, "3.1", "Error Codes"),
)
def insufficient_scope(ctx: Context) -> None:
    tools = ctx.manifest.tools
    tool, probe = next(iter(tools.items()))
    full = ctx.world.full_agent().token()
    full_session = ctx.session(full, "an agent with every scope")
    served_full = ctx.call(full, full_session, tool, probe.arguments)
    ctx.control(f"{tool} is served to an agent with every scope", served(served_full), served_full)
    narrow_scopes = set(ctx.manifest.scopes()) - {probe.scope}
    token = ctx.world.agent(narrow_scopes).token()
    session = ctx.session(token, f"an agent with every scope but {probe.scope}")
    other = next((name for name, p in tools.items() if p.scope != probe.scope), None)
    if other is not None:
        allowed = ctx.call(token, session, other, tools[other].arguments)
        ctx.control(f"{other} is served to that agent", served(allowed), allowed)
    refused = ctx.call(token, session, tool, probe.arguments)
    if served(refused):
        ctx.skip(f"{tool} was served without {probe.scope}, so there is no refusal to examine (see tool-scope)")
    ctx.expect(f"{tool} without {probe.scope} is answered 403", refused.status_code == 403, refused)
    challenge = bearer_challenge(refused)
    ctx.expect(
        'with a Bearer challenge saying error="insufficient_scope"',
        challenge is not None and challenge.get("error") == "insufficient_scope",
        refused,
    )
    ctx.expect(f"whose scope names {probe.scope}", challenge is not None and probe.scope in challenge.scopes, refused)
    ctx.expect(
        "and resource_metadata", challenge is not None and challenge.get("resource_metadata") is not None, refused
    )
