"""jwks-rollover: the server follows its issuer's signing keys, the new one at once and a withdrawn one soon."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from sandbox.agent.mcp_http import served
from sandbox.certify.checks.common import POLL_INTERVAL, accepted_token
from sandbox.certify.context import Context, check
from sandbox.certify.forge import fresh_times
from sandbox.certify.model import mcp, rfc

#: The longest certify waits for a withdrawn key to be refused; a longer declared key_cache is not examined.
WITHDRAWAL_WAIT_LIMIT = 60.0


Done = Callable[[httpx.Response], bool]


def poll(ctx: Context, token: str, done: Done, budget: float) -> tuple[httpx.Response, float]:
    """The opening request with ``token`` until ``done`` holds or ``budget`` seconds pass; the last answer."""
    began = time.monotonic()
    while True:
        response = ctx.opening(token)
        elapsed = time.monotonic() - began
        if done(response) or elapsed >= budget:
            return response, elapsed
        time.sleep(POLL_INTERVAL)


@check(
    "jwks-rollover",
    "MUST",
    "Follows its issuer's key rollover",
    "certify publishes a new signing key in the issuer's JWKS (a key it holds, beside the realm's own, which it "
    "never disables: other users of the realm keep their tokens): a token signed with the new kid is served "
    "within the manifest's new_key_budget, so the server refetches keys for a kid it does not know. Then the key "
    "is withdrawn: a token signed with it is answered 401 within the key_cache the manifest declares.",
    mcp("Token Handling", "token-handling"),
    rfc(7517, "4.5", '"kid" (Key ID) Parameter'),
    rfc(8414, "2", "Authorization Server Metadata (jwks_uri)"),
)
def jwks_rollover(ctx: Context) -> None:
    _, claims = accepted_token(ctx)
    world = ctx.world
    signer = world.publish_key()
    token = world.known.add(signer.sign(fresh_times(claims)))
    budget = ctx.manifest.new_key_budget
    answer, waited = poll(ctx, token, served, budget)
    ctx.expect(
        f"a token signed with a key the issuer newly publishes (kid {signer.kid}) is served within {budget:g} s",
        served(answer),
        answer,
        f"after {waited:.1f} s: HTTP {answer.status_code}",
    )
    world.withdraw_key(signer)
    if not served(answer):
        return
    cache = ctx.manifest.key_cache
    if cache is None or cache > WITHDRAWAL_WAIT_LIMIT:
        why = "declares no key_cache" if cache is None else f"declares a key_cache of {cache:g} s"
        ctx.not_examined("a withdrawn key", f"the manifest {why}, certify waits at most {WITHDRAWAL_WAIT_LIMIT:g} s")
        return
    refused, waited = poll(ctx, token, lambda response: response.status_code == 401, cache)
    ctx.expect(
        f"once the issuer withdraws that key, a token signed with it is answered 401 within {cache:g} s (key_cache)",
        refused.status_code == 401,
        refused,
        f"after {waited:.1f} s: HTTP {refused.status_code}",
    )
