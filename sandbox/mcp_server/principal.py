"""Who is calling: the verified facts of an access token, and where the request carries them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.provider import AccessToken
from starlette.types import Scope

from sandbox.jwt_signature import InvalidToken
from sandbox.zones import ZONE_CLAIM, zone_address_problem

#: Where the HTTP layer leaves the verified principal in the ASGI scope, for the tools to read.
SCOPE_KEY = "sandbox.mcp.principal"


def same_resource(first: str, second: str) -> bool:
    """Compare resource URLs as RFC 8707 identifiers: scheme and host case-insensitive, no trailing slash."""

    def canonical(url: str) -> tuple[str, str, str]:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")

    try:
        return canonical(first) == canonical(second)
    except ValueError:
        return False


def fingerprint(token: str) -> str:
    """A short, one-way name for a token: what logs and caches hold instead of the token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Confirmation:
    """What a sender-constrained token is bound to (its ``cnf`` claim, RFC 7800).

    ``jkt``: the SHA-256 thumbprint of a DPoP key (RFC 9449 §6); ``x5t``: the SHA-256 thumbprint of a
    client certificate (``x5t#S256``, RFC 8705 §3). A token may name one or the other.
    """

    jkt: str | None = None
    x5t: str | None = None


def confirmation_of(claims: dict[str, Any]) -> Confirmation | None:
    """The token's binding, or None for a bearer token; a ``cnf`` this server cannot read is refused."""
    cnf = claims.get("cnf")
    if cnf is None:
        return None
    if not isinstance(cnf, dict):
        raise InvalidToken("the token's cnf is not an object")
    jkt, x5t = cnf.get("jkt"), cnf.get("x5t#S256")
    if jkt is not None and not (isinstance(jkt, str) and jkt):
        raise InvalidToken("the token's cnf.jkt is not a thumbprint")
    if x5t is not None and not (isinstance(x5t, str) and x5t):
        raise InvalidToken("the token's cnf.x5t#S256 is not a thumbprint")
    if jkt is None and x5t is None:
        raise InvalidToken("the token is bound (cnf) by a method this server does not know")
    return Confirmation(jkt=jkt, x5t=x5t)


@dataclass(frozen=True)
class Principal:
    issuer: str
    client_id: str
    subject: str
    scopes: frozenset[str]
    issued_at: int
    expires_at: int
    token_fingerprint: str
    binding: Confirmation | None = None  # the token's ``cnf``: the key or certificate it is bound to
    zone: str | None = None  # the one source address the agent may call from (claim ZONE_CLAIM), if limited
    tenant: str = ""  # the tenant the issuer stands for (the trust's name for it); the issuer when unnamed

    def __post_init__(self) -> None:
        if not self.tenant:
            object.__setattr__(self, "tenant", self.issuer)

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    def access_token(self) -> AccessToken:
        """The SDK's view of the caller: it binds each session to (client_id, iss, sub)."""
        return AccessToken(
            token=self.token_fingerprint,
            client_id=self.client_id,
            scopes=sorted(self.scopes),
            expires_at=self.expires_at,
            subject=self.subject,
            claims={"iss": self.issuer},
        )

    def describe(self) -> dict[str, str]:
        return {"issuer": self.issuer, "client_id": self.client_id, "tenant": self.tenant}


def granted_scopes(claims: dict[str, Any]) -> frozenset[str]:
    """The token's scopes: RFC 9068's ``scope`` string, or a ``scp`` array of strings (Ory Hydra's JWTs).

    A token that carries both must say the same in each, so no reader can be told more than another.
    """
    scope = claims.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise InvalidToken("the token's scope is not a space-separated string")
    scp = claims.get("scp")
    if scp is not None and not (isinstance(scp, list) and all(isinstance(item, str) for item in scp)):
        raise InvalidToken("the token's scp is not an array of strings")
    from_scope = frozenset(scope.split()) if scope is not None else None
    from_scp = frozenset(scp) if scp is not None else None
    if from_scope is not None and from_scp is not None and from_scope != from_scp:
        raise InvalidToken("the token's scope and scp disagree")
    return from_scope if from_scope is not None else from_scp or frozenset()


def principal_from_claims(claims: dict[str, Any], token: str, tenant: str = "") -> Principal:
    """Build the principal from claims already verified for signature (or activity), issuer, audience and time;
    ``tenant`` is the one its issuer stands for."""
    client_id = claims.get("client_id")
    azp = claims.get("azp")
    if client_id is not None and azp is not None and client_id != azp:
        raise InvalidToken("the token's client_id and azp disagree")
    client_id = client_id if client_id is not None else azp
    if not isinstance(client_id, str) or not client_id:
        raise InvalidToken("the token names no client (client_id or azp)")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the token has no subject (sub)")
    return Principal(
        issuer=claims["iss"],
        client_id=client_id,
        subject=subject,
        scopes=granted_scopes(claims),
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
        token_fingerprint=fingerprint(token),
        binding=confirmation_of(claims),
        zone=_zone(claims),
        tenant=tenant,
    )


def _zone(claims: dict[str, Any]) -> str | None:
    zone = claims.get(ZONE_CLAIM)
    if zone is None:
        return None
    if not isinstance(zone, str) or zone_address_problem(zone) is not None:
        raise InvalidToken(f"the token's {ZONE_CLAIM} is not a loopback address")
    return zone


def principal_in(scope: Scope) -> Principal | None:
    found = scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else None
