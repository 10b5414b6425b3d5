"""Admin authentication: only bearer tokens the master realm or a tenant's realm issued, checked against the keys
the issuer publishes (:mod:`sandbox.jwt_signature`, as the MCP server checks its callers' tokens).

Two kinds of caller:

- a **tenant admin**: a user of a tenant realm with the realm role ``tenant-admin``, logged in through the
  realm's ``sandbox-broker-admin`` client (authorization code + PKCE). The tenant is the token's issuer.
  The token proves MFA when its ``amr`` (RFC 8176) contains ``otp``: the realm's browser flow records
  ``pwd`` for the password step and ``otp`` for the one-time-code step.
- the **platform operator**: the master realm's admin service account (client credentials); it creates
  tenants and registers resource servers, and may revoke any agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError

from sandbox.errors import SandboxError
from sandbox.idp.realm import ADMIN_LOGIN_CLIENT_ID, TENANT_ADMIN_ROLE
from sandbox.jwt_signature import InvalidToken, KeyCache, VerificationUnavailable, check_header, peek
from sandbox.oidc import discover_async

ALGORITHMS = ("RS256", "PS256", "ES256")
LEEWAY = 5


@dataclass(frozen=True)
class Principal:
    kind: str  # tenant_admin | operator
    tenant: str | None  # None for the operator
    subject: str
    username: str
    mfa: bool

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        where = self.tenant or "master"
        return f"{self.username} ({self.kind}, {where}, sub {self.subject})"

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


class AuthError(Exception):
    """Not authenticated (401) or not allowed (403); ``error`` is the RFC 6750 / RFC 9470 error code."""

    def __init__(self, status: int, error: str, description: str) -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(description)


class Authenticator:
    def __init__(
        self,
        *,
        master_issuer: str,
        operator_client_id: str,
        tenant_issuers: Any,  # () -> dict[issuer, tenant]; read on every call so new tenants count at once
        http: httpx.AsyncClient,
        jwks_refetch_interval: float = 10.0,
    ) -> None:
        self.master_issuer = master_issuer
        self.operator_client_id = operator_client_id
        self._tenant_issuers = tenant_issuers
        self._http = http
        self._keys: dict[str, KeyCache] = {}
        self._refetch_interval = jwks_refetch_interval

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError(401, "invalid_request", "a bearer token from the tenant's Keycloak realm is required")
        token = authorization[7:].strip()
        try:
            header, unverified = peek(token)  # which issuer's keys to verify with; verified below
        except InvalidToken:
            raise AuthError(401, "invalid_token", "the bearer token is not a JWT") from None
        issuer = str(unverified.get("iss", ""))
        tenants = self._tenant_issuers()
        if issuer != self.master_issuer and issuer not in tenants:
            raise AuthError(401, "invalid_token", "the token's issuer is not a tenant of this broker")
        claims = await self._verified_claims(token, header, issuer)
        if issuer == self.master_issuer:
            if claims.get("azp") != self.operator_client_id:
                raise AuthError(403, "insufficient_scope", "master-realm tokens are accepted only from the operator")
            return Principal("operator", None, str(claims.get("sub")), self.operator_client_id, mfa=False)
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("azp") != ADMIN_LOGIN_CLIENT_ID or ADMIN_LOGIN_CLIENT_ID not in audiences:
            raise AuthError(401, "invalid_token", f"the token was not issued to the {ADMIN_LOGIN_CLIENT_ID} client")
        roles = (claims.get("realm_access") or {}).get("roles") or []
        if TENANT_ADMIN_ROLE not in roles:
            raise AuthError(403, "insufficient_scope", f"the user lacks the realm role {TENANT_ADMIN_ROLE}")
        return Principal(
            "tenant_admin",
            tenants[issuer],
            str(claims["sub"]),
            str(claims.get("preferred_username") or claims["sub"]),
            mfa="otp" in (claims.get("amr") or []),
        )

    async def _verified_claims(self, token: str, header: dict[str, Any], issuer: str) -> dict[str, Any]:
        try:
            alg = check_header(header, ALGORITHMS)
            key = await self._key_cache(issuer).key(header.get("kid"), alg)
            decoded = jwt.decode(token, key, algorithms=[alg])
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY,
                iss={"essential": True, "value": issuer},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (InvalidToken, VerificationUnavailable) as exc:
            raise AuthError(401, "invalid_token", exc.description) from None
        except (JoseError, ValueError) as exc:
            raise AuthError(401, "invalid_token", _why_invalid(exc)) from None
        return dict(decoded.claims)

    def _key_cache(self, issuer: str) -> KeyCache:
        """The issuer's published keys: kept while they verify (an unreachable IdP does not log admins out),
        fetched again on an unknown ``kid`` (a key the realm rotated in) at most every refetch interval."""
        if issuer not in self._keys:

            async def jwks_uri() -> str:
                try:
                    return (await discover_async(issuer, self._http)).jwks_uri
                except SandboxError as exc:
                    raise VerificationUnavailable(f"cannot fetch the signing keys of {issuer} ({exc.cause})") from exc

            self._keys[issuer] = KeyCache(
                self._http, jwks_uri, refetch_interval=self._refetch_interval, max_age=float("inf")
            )
        return self._keys[issuer]


def _why_invalid(exc: Exception) -> str:
    """Why a token was refused, in words (the exception's name is no explanation to a user)."""
    if isinstance(exc, ExpiredTokenError):
        return "the token has expired (admin logins last a few minutes)"
    if isinstance(exc, BadSignatureError):
        return "the token's signature does not verify with the realm's keys"
    if isinstance(exc, ClaimError):
        return f"the token's claims are not acceptable: {exc.description or type(exc).__name__}"
    return f"the token is not valid ({type(exc).__name__})"
