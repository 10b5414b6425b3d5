"""Token verification, one verifier per mode: ``jwt`` (local JWKS), ``jwt+events`` (plus revocations), and
``introspect`` (in :mod:`.introspection`). Each returns a :class:`Principal` or raises
:class:`InvalidToken` (401) / :class:`VerificationUnavailable` (503); none ever lets a token through on doubt.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key

from sandbox.jwt_signature import InvalidToken, KeyCache, check_header, peek
from sandbox.mcp_server.principal import Principal, principal_from_claims, same_resource
from sandbox.mcp_server.trust import TrustedIssuers

#: Tokens whose signature a ``jwt`` verifier remembers having verified (least recently used forgotten first).
SIGNATURE_CACHE_SIZE = 4096


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal: ...


@dataclass(frozen=True)
class Policy:
    """What every accepted token must satisfy, whatever the mode."""

    audience: str  # this server's canonical URL
    algorithms: tuple[str, ...]
    leeway: int
    max_lifetime: int
    clock: Callable[[], float] = time.time


#: Claims every access token must carry, and those that, when present, must be a string or a NumericDate.
REQUIRED_CLAIMS = ("exp", "iat", "iss", "sub")
STRING_CLAIMS = ("iss", "sub", "jti")
TIME_CLAIMS = ("exp", "nbf", "iat")


def _numeric_date(value: object) -> bool:
    """RFC 7519 NumericDate: a JSON number; not a boolean, NaN or infinity (NaN would never expire)."""
    return not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    )


def check_claims(claims: dict[str, Any], issuer: str, policy: Policy) -> None:
    """Issuer, audience, times and lifetime of claims whose origin is already established.

    Checked by hand, not with a claims registry built per call: this runs on every call, a cached token's too.
    """
    missing = sorted(name for name in REQUIRED_CLAIMS if claims.get(name) is None)
    if missing:
        raise InvalidToken(f"the token's claims are not acceptable (it lacks {','.join(missing)})")
    for name in STRING_CLAIMS:
        if name in claims and not isinstance(claims[name], str):
            raise InvalidToken(f"the token's claims are not acceptable ({name} is not a string)")
    for name in TIME_CLAIMS:
        if name in claims and not _numeric_date(claims[name]):
            raise InvalidToken(f"the token's claims are not acceptable ({name} is not a NumericDate)")
    if claims["iss"] != issuer:
        raise InvalidToken("the token's issuer is not the one that signed it")
    now = int(policy.clock())
    if claims["exp"] <= now - policy.leeway:
        raise InvalidToken("the token has expired")
    if "nbf" in claims and claims["nbf"] > now + policy.leeway:
        raise InvalidToken("the token is not valid yet")
    if claims["iat"] > now + policy.leeway:
        raise InvalidToken("the token was issued in the future")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise InvalidToken("the token was not issued for this server (audience)")
    if not any(same_resource(a, policy.audience) for a in audiences):
        raise InvalidToken("the token was not issued for this server (audience)")
    if claims["exp"] - claims["iat"] > policy.max_lifetime:
        raise InvalidToken(f"the token lives longer than this server accepts ({policy.max_lifetime} s)")
    token_type = claims.get("typ", "Bearer")
    bound = isinstance(claims.get("cnf"), dict) and "jkt" in claims["cnf"]
    if token_type != "Bearer" and not (token_type == "DPoP" and bound):  # Keycloak types a DPoP-bound token DPoP
        raise InvalidToken("the token is not an access token")


@dataclass
class _Verified:
    """What a token's verified signature established: who issued it, with which key, and its claims; and the
    principal built from them once they first passed the claims checks."""

    issuer: str
    alg: str
    kid: str | None
    key: Key
    claims: dict[str, Any]
    principal: Principal | None = None


class JwtVerifier:
    """``jwt`` mode: a trusted issuer's published key signed it, for this audience, and it is current.

    The signature of a token is verified once: a bounded cache, keyed by the token's SHA-256 digest (never the
    token), keeps what it established. Every call still checks, for cached tokens too, that the issuer is still
    trusted, that the key which verified it is still the one the issuer publishes for its ``kid`` (else the
    signature is verified again), and the claims: expiry, not-before, audience, lifetime. Revocation is checked
    by the wrapper around this verifier, on every call.
    """

    def __init__(
        self,
        policy: Policy,
        trust: TrustedIssuers,
        keys: Callable[[str], KeyCache],
        *,
        cache_size: int = SIGNATURE_CACHE_SIZE,
    ) -> None:
        self.policy = policy
        self._trust = trust
        self._keys = keys
        self._cache_size = cache_size
        self._verified: OrderedDict[bytes, _Verified] = OrderedDict()
        self.signatures_verified = 0

    async def verify(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode()).digest()
        verified = self._verified.get(digest)
        if verified is not None:
            self._verified.move_to_end(digest)
            if not await self._trust.is_trusted(verified.issuer):
                raise InvalidToken("the token's issuer is not trusted here")
            if await self._keys(verified.issuer).key(verified.kid, verified.alg) is not verified.key:
                verified = None  # the issuer's keys were fetched again: verify with what it publishes now
        if verified is None:
            verified = await self._verify_signature(token)
            self._verified[digest] = verified
            self._verified.move_to_end(digest)
            while len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        check_claims(verified.claims, verified.issuer, self.policy)
        if verified.principal is None:
            verified.principal = principal_from_claims(verified.claims, token, self._trust.tenant_of(verified.issuer))
        return verified.principal

    async def _verify_signature(self, token: str) -> _Verified:
        header, unverified = peek(token)
        alg = check_header(header, self.policy.algorithms)
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not await self._trust.is_trusted(issuer):
            raise InvalidToken("the token's issuer is not trusted here")
        kid = header.get("kid")
        key = await self._keys(issuer).key(kid, alg)
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken("the token's signature does not verify") from exc
        self.signatures_verified += 1
        return _Verified(issuer, alg, kid, key, claims)


class RevocationCheckingVerifier:
    """``jwt+events`` mode: a valid JWT, unless a revocation event covers it."""

    def __init__(self, inner: TokenVerifier, revoked: Callable[[Principal], bool]) -> None:
        self._inner = inner
        self._revoked = revoked

    async def verify(self, token: str) -> Principal:
        principal = await self._inner.verify(token)
        if self._revoked(principal):
            raise InvalidToken("the agent behind this token has been revoked")
        return principal
