"""``jwt`` mode verifies a token's signature once, and still checks expiry, audience, trust, the issuer's
current keys and revocation on every call, cached token or not."""

from __future__ import annotations

import asyncio
import time

import pytest
from joserfc.jwk import RSAKey
from mcp_fakes import AUDIENCE, ISSUER, Clock, FakeIssuer

from sandbox.jwt_signature import InvalidToken, KeyCache
from sandbox.mcp_server.discovery import AuthorizationServers
from sandbox.mcp_server.trust import TrustedIssuers
from sandbox.mcp_server.verification import JwtVerifier, Policy, RevocationCheckingVerifier

ALGORITHMS = ("RS256",)


class Wall:
    """The policy's clock: real time, moved forward by the test."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


def caching_verifier(
    issuer: FakeIssuer, *, wall: Wall | None = None, keys_clock: Clock | None = None, cache_size: int = 16
) -> JwtVerifier:
    client = issuer.client()
    servers = AuthorizationServers(client)
    trust = TrustedIssuers((ISSUER,), client, trust_list_url=None, refetch_interval=5)
    caches: dict[str, KeyCache] = {}

    def keys(name: str) -> KeyCache:
        async def uri() -> str:
            return await servers.endpoint(name, "jwks_uri")

        clock = keys_clock or time.monotonic
        return caches.setdefault(name, KeyCache(client, uri, refetch_interval=10, clock=clock))

    policy = Policy(AUDIENCE, ALGORITHMS, leeway=5, max_lifetime=3600, clock=wall or time.time)
    return JwtVerifier(policy, trust, keys, cache_size=cache_size)


def test_the_signature_of_a_token_is_verified_once_however_often_it_is_used() -> None:
    issuer = FakeIssuer()
    verifier, token = caching_verifier(issuer), issuer.token()

    async def calls() -> None:
        for _ in range(5):
            assert (await verifier.verify(token)).client_id == "agent-1"

    asyncio.run(calls())
    assert verifier.signatures_verified == 1
    other = issuer.token(scope="mcp:tool:logs.read")
    asyncio.run(verifier.verify(other))
    assert verifier.signatures_verified == 2  # another token is verified on its own


def test_a_cached_token_is_refused_once_it_expires() -> None:
    issuer, wall = FakeIssuer(), Wall()
    verifier, token = caching_verifier(issuer, wall=wall), issuer.token()

    async def scenario() -> str:
        await verifier.verify(token)
        wall.ahead = 60 + 5 + 1  # past exp and the leeway
        with pytest.raises(InvalidToken) as caught:
            await verifier.verify(token)
        return caught.value.description

    assert "expired" in asyncio.run(scenario())
    assert verifier.signatures_verified == 1  # refused from the cache, on its claims


def test_a_token_for_another_audience_is_refused_on_every_call_though_its_signature_is_cached() -> None:
    issuer = FakeIssuer()
    verifier, token = caching_verifier(issuer), issuer.token(aud="http://127.0.0.1:3/mcp")

    async def twice() -> list[str]:
        found = []
        for _ in range(2):
            with pytest.raises(InvalidToken) as caught:
                await verifier.verify(token)
            found.append(caught.value.description)
        return found

    assert all("audience" in description for description in asyncio.run(twice()))
    assert verifier.signatures_verified == 1  # the second refusal came from the cache, not a new verification


def test_a_cached_token_is_refused_from_the_moment_its_agent_is_revoked() -> None:
    issuer = FakeIssuer()
    inner = caching_verifier(issuer)
    revoked: set[str] = set()
    verifier = RevocationCheckingVerifier(inner, lambda principal: principal.client_id in revoked)
    token = issuer.token()

    async def scenario() -> None:
        assert (await verifier.verify(token)).client_id == "agent-1"
        revoked.add("agent-1")
        with pytest.raises(InvalidToken, match="revoked"):
            await verifier.verify(token)

    asyncio.run(scenario())
    assert inner.signatures_verified == 1


def test_a_cached_token_whose_key_the_issuer_no_longer_publishes_is_refused() -> None:
    issuer, keys_clock = FakeIssuer(), Clock()
    verifier, token = caching_verifier(issuer, keys_clock=keys_clock), issuer.token()

    async def scenario() -> None:
        await verifier.verify(token)
        issuer.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})  # same kid, new key
        keys_clock.now += 301  # the keys are fetched again after their max age
        with pytest.raises(InvalidToken, match="signature"):
            await verifier.verify(token)

    asyncio.run(scenario())
    assert verifier.signatures_verified == 1  # the second attempt verified anew, and failed


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    issuer = FakeIssuer()
    verifier = caching_verifier(issuer, cache_size=2)
    first, second, third = (issuer.token(scope=f"mcp:tool:t{n}.read") for n in range(3))

    async def scenario() -> None:
        for token in (first, second, first, third):  # third pushes out second, the least recently used
            await verifier.verify(token)
        assert verifier.signatures_verified == 3
        await verifier.verify(first)
        assert verifier.signatures_verified == 3  # still cached
        await verifier.verify(second)
        assert verifier.signatures_verified == 4  # forgotten, verified again

    asyncio.run(scenario())


def test_a_bad_signature_is_never_cached() -> None:
    issuer = FakeIssuer()
    verifier = caching_verifier(issuer)
    forged = issuer.token(key=RSAKey.generate_key(2048, parameters={"kid": "k1"}))

    async def twice() -> None:
        for _ in range(2):
            with pytest.raises(InvalidToken, match="signature"):
                await verifier.verify(forged)

    asyncio.run(twice())
    assert verifier.signatures_verified == 0
