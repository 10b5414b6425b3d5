"""Authorization server metadata (RFC 8414 / OpenID Connect Discovery) per trusted issuer, cached."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from sandbox.jwt_signature import VerificationUnavailable
from sandbox.loopback import is_loopback_url

MAX_AGE = 300.0  # seconds before metadata is fetched again


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may live, in the order MCP clients try them."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    inserted = [
        urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{suffix}{path}", "", ""))
        for suffix in ("oauth-authorization-server", "openid-configuration")
    ]
    appended = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    return [*inserted, appended] if path else inserted


class AuthorizationServers:
    """Fetches each issuer's metadata once and refreshes it after :data:`MAX_AGE`; checks the issuer matches."""

    def __init__(self, client: httpx.AsyncClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def metadata(self, issuer: str) -> dict[str, Any]:
        cached = self._cache.get(issuer)
        if cached and self._clock() - cached[0] < MAX_AGE:
            return cached[1]
        async with self._locks.setdefault(issuer, asyncio.Lock()):
            cached = self._cache.get(issuer)
            if cached and self._clock() - cached[0] < MAX_AGE:
                return cached[1]
            document = await self._fetch(issuer)
            self._cache[issuer] = (self._clock(), document)
            return document

    async def endpoint(self, issuer: str, name: str) -> str:
        """A loopback endpoint named in the issuer's metadata (``jwks_uri``, ``introspection_endpoint``)."""
        url = (await self.metadata(issuer)).get(name)
        if not isinstance(url, str) or not is_loopback_url(url):
            raise VerificationUnavailable(f"the metadata of {issuer} has no usable {name}")
        return url

    async def _fetch(self, issuer: str) -> dict[str, Any]:
        if not is_loopback_url(issuer):
            raise VerificationUnavailable(f"issuer {issuer} is not on loopback")
        failures = []
        for url in metadata_urls(issuer):
            try:
                response = await self._client.get(url, headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                failures.append(f"{url}: {type(exc).__name__}")
                continue
            if response.status_code != 200:
                failures.append(f"{url}: HTTP {response.status_code}")
                continue
            try:
                document = response.json()
            except ValueError:
                failures.append(f"{url}: not JSON")
                continue
            if not isinstance(document, dict) or document.get("issuer") != issuer:
                failures.append(f"{url}: names another issuer")
                continue
            return document
        raise VerificationUnavailable(f"no metadata for {issuer} ({'; '.join(failures)})")
