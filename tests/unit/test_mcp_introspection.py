"""``introspect`` mode: the issuer's answer decides, tokens go only to trusted issuers, answers are reused briefly."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

import pytest
from mcp_fakes import AUDIENCE, ISSUER, Clock, FakeIssuer

from sandbox.jwt_signature import InvalidToken, VerificationUnavailable
from sandbox.mcp_server.discovery import AuthorizationServers
from sandbox.mcp_server.introspection import IntrospectionCache, IntrospectionVerifier
from sandbox.mcp_server.trust import TrustedIssuers
from sandbox.mcp_server.verification import Policy


def verifier(issuer: FakeIssuer, clock: Clock | None = None) -> IntrospectionVerifier:
    client = issuer.client()
    policy = Policy(AUDIENCE, ("RS256",), leeway=5, max_lifetime=3600, clock=clock or time.time)
    trust = TrustedIssuers([ISSUER], client, names={ISSUER: "acme"}, trust_list_url=None, refetch_interval=5)
    return IntrospectionVerifier(
        policy,
        trust,
        AuthorizationServers(client),
        client,
        client_id=AUDIENCE,
        client_secret="rs-secret",
        cache_ttl=5,
    )


def test_an_active_answer_gives_the_principal_and_the_server_authenticates_with_client_secret_post() -> None:
    issuer = FakeIssuer()
    issuer.introspection = {"active": True, **issuer.claims()}
    principal = asyncio.run(verifier(issuer).verify(issuer.token()))
    assert principal.client_id == "agent-1" and principal.tenant == "acme"
    (request,) = [r for r in issuer.requests if r.url.path == "/introspect"]
    form = parse_qs(request.content.decode())
    assert form["client_id"] == [AUDIENCE] and form["client_secret"] == ["rs-secret"]
    assert "authorization" not in request.headers


@pytest.mark.parametrize(
    "answer",
    [
        {"active": False},
        {"active": "true"},
        {"active": True, "aud": "http://127.0.0.1:9/mcp"},
        {"active": True, "iss": "http://127.0.0.1:1/realms/globex"},
        {"active": True, "exp": int(time.time()) - 60},
    ],
)
def test_an_answer_that_is_not_active_for_this_server_is_refused(answer: dict) -> None:
    issuer = FakeIssuer()
    issuer.introspection = {**issuer.claims(), **answer}
    with pytest.raises(InvalidToken):
        asyncio.run(verifier(issuer).verify(issuer.token()))


def test_a_token_from_an_untrusted_issuer_is_never_sent_anywhere() -> None:
    issuer = FakeIssuer()
    with pytest.raises(InvalidToken, match="not trusted"):
        asyncio.run(verifier(issuer).verify(issuer.token(iss="http://127.0.0.1:1/realms/foreign")))
    assert issuer.requests == []


def test_introspection_unreachable_is_unavailable_never_accepted() -> None:
    issuer = FakeIssuer()
    issuer.introspection = None  # the endpoint answers 404
    with pytest.raises(VerificationUnavailable):
        asyncio.run(verifier(issuer).verify(issuer.token()))
    issuer.up = False
    with pytest.raises(VerificationUnavailable):
        asyncio.run(verifier(FakeIssuer(up=False)).verify(issuer.token()))


def test_answers_are_reused_for_the_cache_ttl_and_never_past_the_tokens_expiry() -> None:
    clock = Clock(1000)
    cache = IntrospectionCache(ttl=5, clock=clock)
    cache.put("t1", {"active": True, "exp": 1100})
    cache.put("t2", {"active": True, "exp": 1002})
    clock.now = 1003
    assert cache.get("t1") is not None and cache.get("t2") is None
    clock.now = 1005
    assert cache.get("t1") is None


def test_a_revoked_token_is_refused_after_the_cache_ttl() -> None:
    issuer = FakeIssuer()
    issuer.introspection = {"active": True, **issuer.claims()}
    clock = Clock(time.time())
    check = verifier(issuer, clock)
    token = issuer.token()

    async def scenario() -> None:
        await check.verify(token)
        issuer.introspection = {"active": False}
        await check.verify(token)  # still cached
        clock.now += 5
        with pytest.raises(InvalidToken):
            await check.verify(token)

    asyncio.run(scenario())
