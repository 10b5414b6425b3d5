"""Admin authentication: only bearer tokens that Keycloak issued, checked against the issuer's keys.

Two kinds of caller:

- a **tenant admin**: a user of a tenant realm with the realm role ``tenant-admin``, logged in through the
  realm's ``sandbox-broker-admin`` client (authorization code + PKCE). The tenant is the token's issuer.
  The token proves MFA when its ``amr`` (RFC 8176) contains ``otp``: the realm's browser flow records
  ``pwd`` for the password step and ``otp`` for the one-time-code step.
- the **platform operator**: the master realm's admin service account (client credentials); it creates
  tenants and registers resource servers, and may revoke any agent.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from sandbox.errors import SandboxError
from sandbox.idp.realm import ADMIN_LOGIN_CLIENT_ID, TENANT_ADMIN_ROLE
from sandbox.oidc import discover_async

ALGORITHMS = ["RS256", "PS256", "ES256"]
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
        self._keys: dict[str, KeySet] = {}
        self._fetched_at: dict[str, float] = {}
        self._refetch_interval = jwks_refetch_interval

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError(401, "invalid_request", "a bearer token from the tenant's Keycloak realm is required")
        token = authorization[7:].strip()
        issuer = _unverified_issuer(token)
        tenants = self._tenant_issuers()
        if issuer != self.master_issuer and issuer not in tenants:
            raise AuthError(401, "invalid_token", "the token's issuer is not a tenant of this broker")
        claims = await self._verified_claims(token, issuer)
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

    async def _verified_claims(self, token: str, issuer: str) -> dict[str, Any]:
        try:
            try:
                decoded = jwt.decode(token, await self._key_set(issuer), algorithms=ALGORITHMS)
            except (JoseError, ValueError):  # perhaps a key the realm rotated in since we fetched: refetch once
                decoded = jwt.decode(token, await self._key_set(issuer, refresh=True), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY,
                iss={"essential": True, "value": issuer},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise AuthError(401, "invalid_token", _why_invalid(exc)) from None
        return dict(decoded.claims)

    async def _key_set(self, issuer: str, *, refresh: bool = False) -> KeySet:
        recent = time.monotonic() - self._fetched_at.get(issuer, -1e9) < self._refetch_interval
        if issuer in self._keys and (not refresh or recent):
            return self._keys[issuer]
        try:
            response = await self._http.get((await discover_async(issuer, self._http)).jwks_uri)
            response.raise_for_status()
        except (httpx.HTTPError, SandboxError) as exc:
            if issuer in self._keys:
                return self._keys[issuer]
            raise AuthError(
                401, "invalid_token", f"cannot fetch the signing keys of {issuer} ({type(exc).__name__})"
            ) from None
        keys = [key for key in response.json().get("keys", []) if key.get("use", "sig") == "sig"]
        self._keys[issuer] = KeySet.import_key_set({"keys": keys})
        self._fetched_at[issuer] = time.monotonic()
        return self._keys[issuer]


def _unverified_issuer(token: str) -> str:
    """Which issuer to ask for keys; the signature is checked afterwards with those keys."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("iss", ""))
    except (IndexError, ValueError, UnicodeDecodeError, AttributeError):
        raise AuthError(401, "invalid_token", "the bearer token is not a JWT") from None


def _why_invalid(exc: Exception) -> str:
    """Why a token was refused, in words (the exception's name is no explanation to a user)."""
    if isinstance(exc, ExpiredTokenError):
        return "the token has expired (admin logins last a few minutes)"
    if isinstance(exc, BadSignatureError):
        return "the token's signature does not verify with the realm's keys"
    if isinstance(exc, ClaimError):
        return f"the token's claims are not acceptable: {exc.description or type(exc).__name__}"
    return f"the token is not valid ({type(exc).__name__})"
