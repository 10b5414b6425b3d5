"""401-invalid, 401-expired, 401-audience, 401-issuer, 401-signature, no-query-token: tokens the server must refuse.

Each case is one way a token can be unacceptable, the rest of it as good as the control's token.
"""

from __future__ import annotations

import time
import uuid

from sandbox.agent.mcp_http import served
from sandbox.certify import forge
from sandbox.certify.checks.common import accepted_token, trusted_signer_accepted
from sandbox.certify.context import Context, check
from sandbox.certify.model import mcp, rfc
from sandbox.certify.world import OTHER_AUDIENCE


def refuse_each(ctx: Context, cases: dict[str, str]) -> None:
    """Each token of ``cases`` (by label) is answered 401."""
    for label, token in cases.items():
        response = ctx.opening(ctx.world.known.add(token))
        ctx.expect(f"{label}: 401", response.status_code == 401, response)


@check(
    "401-invalid",
    "MUST",
    "Answers 401, not 400 or 500, to a malformed token",
    "Garbage, truncated and wrongly structured bearer tokens are invalid tokens: 401, never 400 or a 5xx.",
    mcp("Token Handling", "token-handling"),
    rfc(6750, "3.1", "Error Codes"),
)
def invalid(ctx: Context) -> None:
    token, _ = accepted_token(ctx)
    refuse_each(ctx, forge.malformed(token))


@check(
    "401-expired",
    "MUST",
    "Rejects an expired token and one not yet valid",
    "Tokens the trusted issuer's published key signed, otherwise like the control's: expired ten minutes ago, "
    "and valid only from ten minutes on (`nbf`).",
    mcp("Token Handling", "token-handling"),
    rfc(7519, "4.1.4", '"exp" (Expiration Time) Claim'),
    rfc(7519, "4.1.5", '"nbf" (Not Before) Claim'),
)
def expired(ctx: Context) -> None:
    _, claims = accepted_token(ctx)
    if not trusted_signer_accepted(ctx, claims, required=False):
        ctx.skip(
            "the server refuses a current token signed by a key its issuer newly published, so a refused expired "
            "one would prove nothing (see jwks-rollover)"
        )
    now = int(time.time())
    current = forge.fresh_times(claims)
    refuse_each(
        ctx,
        {
            "expired ten minutes ago": ctx.world.forge(forge.changed(current, iat=now - 900, exp=now - 600)),
            "not valid for another ten minutes (nbf)": ctx.world.forge(forge.changed(current, nbf=now + 600)),
        },
    )


@check(
    "401-audience",
    "MUST",
    "Rejects a token issued for another audience, or none",
    "Real tokens of the sandbox issuer for another server and with no audience; and the other server's token "
    "re-signed by the trusted issuer's key for a sibling of this server's URL (a prefix match is not a match).",
    mcp("Token Handling", "token-handling"),
    mcp("Access Token Privilege Restriction", "access-token-privilege-restriction"),
    rfc(8707, "2", "Access Token Request"),
)
def audience(ctx: Context) -> None:
    _, claims = accepted_token(ctx)
    scopes = ctx.manifest.scopes()
    elsewhere = ctx.world.agent(scopes, audiences=(OTHER_AUDIENCE,)).token()
    cases = {
        f"a token for another server ({OTHER_AUDIENCE})": elsewhere,
        "a token with no audience": ctx.world.agent(scopes, audiences=()).token(),
    }
    if trusted_signer_accepted(ctx, claims, required=False):
        # The other server's agent, so an issuer asked by introspection tells the same story as the claims.
        sibling = forge.changed(forge.fresh_times(forge.claims_of(elsewhere)), aud=f"{ctx.url}-other")
        cases[f"a trusted issuer's token for {ctx.url}-other"] = ctx.world.forge(sibling)
    refuse_each(ctx, cases)


@check(
    "401-issuer",
    "MUST",
    "Rejects a token of an issuer it does not trust",
    "A real token of another Keycloak realm, for this server and with every scope; and the control's claims "
    "with that realm as `iss`, signed by a key the trusted issuer publishes.",
    mcp("Token Handling", "token-handling"),
    rfc(9068, "4", "Validating JWT Access Tokens"),
    prepare=lambda world: world.begin_foreign_realm(),
)
def issuer(ctx: Context) -> None:
    _, claims = accepted_token(ctx)
    foreign = ctx.world.foreign_agent()
    foreign_issuer = ctx.world.issuer(foreign.need.tenant)
    cases = {f"a token of the realm {foreign.need.tenant}, which the server does not trust": foreign.token()}
    if trusted_signer_accepted(ctx, claims, required=False):
        cases[f"iss {foreign_issuer}, signed by a key the trusted issuer publishes"] = ctx.world.forge(
            forge.changed(forge.fresh_times(claims), iss=foreign_issuer)
        )
    refuse_each(ctx, cases)


@check(
    "401-signature",
    "MUST",
    "Rejects a bad signature, an unknown key, alg none and HMAC keyed with the public key",
    "The control's token tampered with or re-signed: changed claims under the old signature, a flipped or cut "
    "signature, the issuer's kid on another key, an unknown kid, `alg: none` (three spellings), and HS256 keyed "
    "with the issuer's public key (PEM, JWK, modulus).",
    mcp("Token Handling", "token-handling"),
    rfc(8725, "3.1", "Perform Algorithm Verification"),
    rfc(7515, "5.2", "Message Signature or MAC Validation"),
)
def signature(ctx: Context) -> None:
    token, claims = accepted_token(ctx)
    header, _ = forge.unverified(token) or ({}, {})
    kid = header.get("kid")
    current = forge.fresh_times(claims)
    escalated = forge.changed(claims, sub=str(uuid.uuid4()), scope=f"{claims.get('scope', '')} mcp:admin".strip())
    real_signature = token.rsplit(".", 1)[1]
    cases = {
        "claims changed under the original signature": forge.tampered(token, escalated),
        "one bit of the signature flipped": forge.flipped_signature(token),
        "the signature cut short": forge.shortened_signature(token),
        "the issuer's kid, signed by a key it does not publish": ctx.world.outsider.sign(current, kid=kid),
        "a kid the issuer does not publish": ctx.world.outsider.sign(current),
        "alg none, no signature": forge.unsigned(claims),
        "alg None, no signature": forge.unsigned(claims, alg="None"),
        "alg none, the original signature kept": forge.unsigned(claims, signature=real_signature),
    }
    published = next((key for key in ctx.world.published_keys() if key.get("kid") == kid), None)
    if published is not None and published.get("kty") == "RSA":
        for form, secret in forge.public_key_secrets(published).items():
            cases[f"HS256 keyed with {form}"] = forge.hmac_signed(claims, secret, kid=kid)
    refuse_each(ctx, cases)


@check(
    "no-query-token",
    "MUST",
    "Ignores a token in the query string",
    "A valid token as `access_token` in the query string (alone, and beside an unacceptable Authorization "
    "header) is not used: 401. A token in a form body is not used either.",
    mcp("Access Token Usage", "access-token-usage"),
    rfc(6750, "2.3", "URI Query Parameter"),
)
def no_query_token(ctx: Context) -> None:
    token, claims = accepted_token(ctx)
    alone = ctx.opening(params={"access_token": token})
    ctx.expect("a valid token in the query string alone: 401", alone.status_code == 401, alone)
    beside = ctx.opening(ctx.world.unusable_token(claims), params={"access_token": token})
    ctx.expect(
        "an unacceptable Authorization header, a valid token in the query string: 401",
        beside.status_code == 401,
        beside,
    )
    form = ctx.post(f"access_token={token}".encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    ctx.expect("a valid token in a form body is not served", not served(form), form)
