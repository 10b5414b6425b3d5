"""Signing keys from a JWKS URL: cached, refreshed after a while, refetched on an unknown ``kid`` at a bounded rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key

from sandbox.mcp_server.errors import InvalidToken, VerificationUnavailable

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
