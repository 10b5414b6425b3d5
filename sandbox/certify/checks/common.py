"""What several checks do the same way: their usual positive control, and tokens of the trusted signer."""

from __future__ import annotations

import time

from sandbox.agent.mcp_http import served
from sandbox.certify.context import Context
from sandbox.certify.forge import Claims, fresh_times, unverified

#: Seconds between two requests while waiting for the server's answer to change: short, so a wait ends soon
#: after it does (each wait is bounded by what the manifest declares, not by the interval).
POLL_INTERVAL = 0.5


def accepted_token(ctx: Context) -> tuple[str, Claims]:
    """A valid token of the agent with every scope, and the control that the revision's opening request
    (initialize; server/discover) with it is served."""
    token = ctx.world.full_agent().token()
    response = ctx.opening(token)
    what = f"{ctx.wire.opening_method} with a valid token for this server is served"
    ctx.control(what, served(response), response)
    parts = unverified(token)
    assert parts is not None, "Keycloak issues JWS access tokens"
    return token, parts[1]


def trusted_signer_accepted(ctx: Context, claims: Claims, *, required: bool) -> bool:
    """Whether the server accepts a current token signed by the key certify published in the home issuer's JWKS.

    A server may have cached the issuer's keys from before certify published its key, so the token is retried
    for up to the manifest's ``new_key_budget``. ``required``: a refusal fails the check's control; otherwise
    the check goes on without the cases that need the trusted signer.
    """
    world = ctx.world
    token = world.forge(fresh_times(claims))
    kid = world.trusted_signer().kid
    what = f"a current token signed with a key the issuer publishes (kid {kid}, published by certify) is served"
    deadline = time.monotonic() + (0 if world.trusted_signer_accepted is not None else ctx.manifest.new_key_budget)
    while True:
        response = ctx.opening(token)
        if served(response) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    world.trusted_signer_accepted = served(response)
    if required or world.trusted_signer_accepted:
        ctx.control(what, world.trusted_signer_accepted, response)
    else:
        ctx.expect(f"{what} (cases needing it are left out)", False, response, warning=True)
    return world.trusted_signer_accepted
