"""no-passthrough: a caller's token never leaves the server (the upstream certify watches sees none)."""

from __future__ import annotations

import time

from sandbox.certify.context import Context, check
from sandbox.certify.evidence import Exchange, describe_token
from sandbox.certify.model import mcp, mcp_security

#: Seconds to wait for upstream traffic a server sends off the request path (batched reports, for example).
SETTLE = 5.0
SHOWN = 20


@check(
    "no-passthrough",
    "MUST",
    "Never forwards the caller's token upstream",
    "The server is configured to send its upstream traffic to a port certify listens on (the manifest's "
    "upstream); every request it sent there during the run is searched for any token certify sent it, and for "
    "the signature of one.",
    mcp("Access Token Privilege Restriction", "access-token-privilege-restriction"),
    mcp_security("Token Passthrough", "token-passthrough"),
)
def no_passthrough(ctx: Context) -> None:
    watch = ctx.world.upstream
    if watch is None:
        ctx.skip(
            "the manifest declares no upstream: point the server's upstream calls at a port and name it under "
            "`upstream:` (with forward_to, certify passes them on), so certify can see what leaves the server"
        )
    deadline = time.monotonic() + SETTLE
    while not watch.since(ctx.world.run_started) and time.monotonic() < deadline:
        time.sleep(0.25)
    sent = watch.since(ctx.world.run_started)
    if not sent:
        ctx.skip(f"the server sent nothing to the upstream at port {ctx.manifest.upstream.port} during the run")
    ctx.control(f"the server sent requests upstream during the run ({len(sent)})", True)
    known = ctx.world.known
    leaked = [request for request in sent if known.found_in(request.text())]
    for request in (leaked or sent)[:SHOWN]:
        authorization = request.headers.get("authorization", "")
        shown = {"method": request.method, "url": f"(upstream) {known.scrub(request.path)}"}
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            shown["authorization"] = {"scheme": scheme, "token": describe_token(credentials)}
        ctx.evidence.append(Exchange(shown, {}, "a caller's token sent upstream" if request in leaked else None))
    ctx.expect(
        "no upstream request carries a caller's token or its signature",
        not leaked,
        seen=f"{len(sent)} upstream requests, {len(leaked)} with a caller's token"
        + (f": {', '.join(sorted({r.method + ' ' + known.scrub(r.path) for r in leaked}))}" if leaked else ""),
    )
