"""``introspect`` mode: ask the token's issuer (RFC 7662) whether it is active, and reuse the answer briefly.

The issuer must be trusted before the token is sent anywhere: it is read from the (unverified) JWT
only to pick the introspection endpoint, then the answer must name that same issuer. The server
authenticates as its own client, whose id is its canonical URL, with ``client_secret_post``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from sandbox.jwt_signature import InvalidToken, VerificationUnavailable, peek
from sandbox.mcp_server.discovery import AuthorizationServers
from sandbox.mcp_server.principal import Principal, fingerprint, principal_from_claims
from sandbox.mcp_server.trust import TrustedIssuers
from sandbox.mcp_server.verification import Policy, check_claims

MAX_CACHED = 10_000


class IntrospectionCache:
    """Answers by token fingerprint, each kept for ``ttl`` seconds (never past the token's own expiry)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def get(self, token: str) -> dict[str, Any] | None:
        key = fingerprint(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, token: str, answer: dict[str, Any]) -> None:
        until = self._clock() + self._ttl
        expiry = answer.get("exp")
        if isinstance(expiry, int | float) and not isinstance(expiry, bool):
            until = min(until, float(expiry))
        self._entries[fingerprint(token)] = (until, answer)
        while len(self._entries) > MAX_CACHED:
            self._entries.popitem(last=False)


class IntrospectionVerifier:
    def __init__(
        self,
        policy: Policy,
        trust: TrustedIssuers,
        servers: AuthorizationServers,
        client: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        cache_ttl: float,
        endpoints: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        self._trust = trust
        self._servers = servers
        self._client = client
        self._client_id = client_id
        self._secret = client_secret
        self._cache = IntrospectionCache(cache_ttl, policy.clock)
        self._endpoints = dict(endpoints or {})  # issuer -> endpoint, for issuers whose metadata names none

    async def verify(self, token: str) -> Principal:
        _, unverified = peek(token)
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not await self._trust.is_trusted(issuer):
            raise InvalidToken("the token's issuer is not trusted here")
        answer = self._cache.get(token)
        if answer is None:
            answer = await self._introspect(issuer, token)
            self._cache.put(token, answer)
        if answer.get("active") is not True:
            raise InvalidToken("the issuer says the token is not active")
        check_claims(answer, issuer, self.policy)
        return principal_from_claims(answer, token, self._trust.tenant_of(issuer))

    async def _introspect(self, issuer: str, token: str) -> dict[str, Any]:
        endpoint = self._endpoints.get(issuer) or await self._servers.endpoint(issuer, "introspection_endpoint")
        form = {
            "token": token,
            "token_type_hint": "access_token",
            "client_id": self._client_id,
            "client_secret": self._secret,
        }
        try:
            response = await self._client.post(endpoint, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise VerificationUnavailable(f"introspection at {endpoint} failed ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise VerificationUnavailable(f"introspection at {endpoint} answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise VerificationUnavailable(f"introspection at {endpoint} answered something other than JSON") from exc
        if not isinstance(answer, dict):
            raise VerificationUnavailable(f"introspection at {endpoint} answered something other than an object")
        return answer
