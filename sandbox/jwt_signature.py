"""A JWT's signature, checked against the keys its issuer publishes: shared by the MCP server and the broker.

:func:`peek` reads a compact JWS strictly (canonical base64url, nothing but three parts), :func:`check_header`
refuses headers no access token should carry, and :class:`KeyCache` holds one issuer's published signing keys:
cached, refreshed after a while, refetched on an unknown ``kid`` at a bounded rate. Each refuses with
:class:`InvalidToken` (the token is not acceptable: 401) or :class:`VerificationUnavailable` (it cannot be checked
now: 503, never let through).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key


class InvalidToken(Exception):
    """The token is not acceptable here (garbage, expired, wrong audience, untrusted issuer, revoked ...): 401."""

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(description)


class VerificationUnavailable(Exception):
    """The token cannot be checked right now (keys or introspection unreachable): 503, never let through."""

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(description)


#: RFC 6750 b64token, cut into the three parts of a JWS compact serialization (no padding, no JWE).
COMPACT_JWS = re.compile(r"^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$")
#: Header ``typ`` values of an access token; anything else (an ID token, a SET, ...) is refused.
ACCESS_TOKEN_TYPES = {"jwt", "at+jwt", "application/at+jwt"}
MAX_TOKEN_LENGTH = 8192


def _canonical_b64(part: str) -> bytes:
    """Decode base64url, refusing a non-canonical spelling (set padding bits): one token, one string."""
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except ValueError as exc:
        raise InvalidToken("the token is not a well-formed JWT") from exc
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != part:
        raise InvalidToken("the token is not a well-formed JWT")
    return raw


def _b64json(part: str) -> dict[str, Any]:
    try:
        value = json.loads(_canonical_b64(part))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("the token is not a well-formed JWT") from exc
    if not isinstance(value, dict):
        raise InvalidToken("the token is not a well-formed JWT")
    return value


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, NOT verified: only to choose the issuer and key to verify with."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("the token is too long")
    match = COMPACT_JWS.match(token)
    if match is None:
        raise InvalidToken("the token is not a well-formed JWT")
    _canonical_b64(match[3])
    return _b64json(match[1]), _b64json(match[2])


def check_header(header: dict[str, Any], algorithms: tuple[str, ...]) -> str:
    """The token's algorithm, if the header is one the caller accepts (``algorithms``) for an access token."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidToken(f"signature algorithm {alg!r} is not accepted")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES):
        raise InvalidToken(f"a {typ!r} token is not an access token")
    if "crit" in header or "b64" in header or "jku" in header or "x5u" in header or "jwk" in header:
        raise InvalidToken("the token's header asks for processing that is not done here")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("the token's key id is not a string")
    return alg


MAX_AGE = 300.0  # default seconds before keys are fetched again even when every kid is known

#: The key type (and curve) each accepted algorithm needs.
KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}


def signing_keys(document: Any) -> list[Key]:
    """The keys of a JWK Set meant for signatures; others and those that do not parse are left out."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWK Set")
    found = []
    for data in keys:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig" or data.get("kty") == "oct":
            continue
        if "key_ops" in data and "verify" not in data["key_ops"]:
            continue
        try:
            found.append(import_key(data))
        except (JoseError, ValueError, TypeError):
            continue
    return found


def suits(key: Key, alg: str) -> bool:
    kty, curve = KEY_TYPES.get(alg, (None, None))
    if kty is None or key.key_type != kty or (key.alg is not None and key.alg != alg):
        return False
    return curve is None or key.get("crv") == curve


class KeyCache:
    """The keys at one JWKS URL (the URL itself may be looked up lazily, from issuer metadata)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        jwks_url: Callable[[], Awaitable[str]],
        *,
        refetch_interval: float,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._jwks_url = jwks_url
        self._refetch_interval = refetch_interval
        self._max_age = max_age
        self._clock = clock
        self._keys: list[Key] | None = None
        self._found: dict[tuple[str | None, str], Key] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None, alg: str) -> Key:
        """The key that must have signed a token with this header, or InvalidToken / VerificationUnavailable."""
        if self._keys is None or self._clock() - self._fetched_at >= self._max_age:
            await self._refresh(self._fetched_at)
        found = self._find(kid, alg)
        if found is None and self._clock() - self._fetched_at >= self._refetch_interval:
            await self._refresh(self._fetched_at)  # perhaps the issuer rotated its keys
            found = self._find(kid, alg)
        if found is None:
            raise InvalidToken("the token was signed with a key the issuer does not publish")
        return found

    def _find(self, kid: str | None, alg: str) -> Key | None:
        """The one key for this header; remembered per (kid, alg) until the keys are fetched again."""
        if (kid, alg) in self._found:
            return self._found[(kid, alg)]
        candidates = [key for key in self._keys or () if suits(key, alg)]
        if kid is None:
            found = candidates[0] if len(candidates) == 1 else None
        else:
            found = next((key for key in candidates if key.kid == kid), None)
        if found is not None:
            self._found[(kid, alg)] = found
        return found

    async def _refresh(self, seen_fetch: float) -> None:
        async with self._lock:
            if self._fetched_at != seen_fetch:
                return  # another request refreshed while this one waited
            url = await self._jwks_url()
            self.fetches += 1
            try:
                response = await self._client.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                keys = signing_keys(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                raise VerificationUnavailable(f"cannot fetch signing keys from {url} ({type(exc).__name__})") from exc
            self._keys = keys
            self._found = {}
            self._fetched_at = self._clock()
