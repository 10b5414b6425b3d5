"""Local JWT verification (``jwt`` mode): every check of the requirements table, on tokens crafted with joserfc."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from joserfc.jwk import RSAKey
from mcp_fakes import AUDIENCE, ISSUER, Clock, FakeIssuer, b64, unsigned

from sandbox.jwt_signature import InvalidToken, KeyCache, VerificationUnavailable
from sandbox.mcp_server.discovery import AuthorizationServers
from sandbox.mcp_server.trust import TrustedIssuers
from sandbox.mcp_server.verification import JwtVerifier, Policy, RevocationCheckingVerifier, check_claims

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


def verifier(
    issuer: FakeIssuer,
    *,
    trusted: tuple[str, ...] = (ISSUER,),
    clock: Clock | None = None,
    names: dict[str, str] | None = None,
) -> JwtVerifier:
    client = issuer.client()
    servers = AuthorizationServers(client)
    names = {ISSUER: "acme"} if names is None else names
    trust = TrustedIssuers(trusted, client, names=names, trust_list_url=None, refetch_interval=5)
    caches: dict[str, KeyCache] = {}

    def keys(name: str) -> KeyCache:
        async def uri() -> str:
            return await servers.endpoint(name, "jwks_uri")

        return caches.setdefault(name, KeyCache(client, uri, refetch_interval=10, clock=clock or time.monotonic))

    return JwtVerifier(Policy(AUDIENCE, ALGORITHMS, leeway=5, max_lifetime=3600), trust, keys)


def verify(issuer: FakeIssuer, token: str, **options: Any) -> Any:
    return asyncio.run(verifier(issuer, **options).verify(token))


def refused(issuer: FakeIssuer, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify(issuer, token)
    return caught.value.description


def test_a_valid_token_gives_the_principal_with_its_tenant_scopes_and_client() -> None:
    issuer = FakeIssuer()
    principal = verify(issuer, issuer.token(scope="mcp:tool:invoices.read mcp:tool:logs.read"))
    assert principal.issuer == ISSUER and principal.tenant == "acme"
    assert principal.client_id == "agent-1" and principal.subject == "service-account-1"
    assert principal.scopes == {"mcp:tool:invoices.read", "mcp:tool:logs.read"}
    assert principal.token_fingerprint.startswith("sha256:")


def test_audience_may_be_a_list_and_differ_in_host_case_and_trailing_slash() -> None:
    issuer = FakeIssuer()
    assert verify(issuer, issuer.token(aud=["http://other/mcp", "HTTP://127.0.0.1:2/mcp/"])).client_id == "agent-1"


def at(offset: int) -> Callable[[], int]:
    """A time ``offset`` seconds from when the test runs (not from when it was collected, maybe minutes before)."""
    return lambda: int(time.time()) + offset


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": at(-10)}, "expired"),
        ({"nbf": at(60)}, "not valid yet"),
        ({"iat": at(60), "exp": at(120)}, "issued in the future"),
        ({"aud": "http://127.0.0.1:3/mcp"}, "audience"),
        ({"aud": None}, "audience"),
        ({"aud": ["http://127.0.0.1:3/mcp"]}, "audience"),
        ({"sub": None}, "claims"),
        ({"iat": None}, "claims"),
        ({"exp": None}, "claims"),
        ({"azp": "agent-2"}, "disagree"),
        ({"azp": None, "client_id": None}, "no client"),
        ({"exp": at(7200)}, "lives longer"),
        ({"typ": "Refresh"}, "not an access token"),
        ({"scope": ["mcp:tool:invoices.read"]}, "scope"),
        ({"scope": None, "scp": "mcp:tool:invoices.read"}, "scp"),
        ({"scope": None, "scp": ["mcp:tool:invoices.read", 7]}, "scp"),
        ({"scp": ["mcp:tool:invoices.write"]}, "disagree"),
    ],
)
def test_claims_that_are_not_acceptable_are_refused(changes: dict[str, Any], reason: str) -> None:
    issuer = FakeIssuer()
    claims = {name: value() if callable(value) else value for name, value in changes.items()}
    assert reason in refused(issuer, issuer.token(**claims))


def test_scopes_may_come_as_an_scp_array_as_hydra_issues_them() -> None:
    issuer = FakeIssuer()
    principal = verify(issuer, issuer.token(scope=None, scp=["mcp:tool:invoices.read", "basic"]))
    assert principal.scopes == frozenset({"mcp:tool:invoices.read", "basic"})
    both = verify(issuer, issuer.token(scope="basic mcp:tool:invoices.read", scp=["mcp:tool:invoices.read", "basic"]))
    assert both.scopes == principal.scopes


def test_a_small_clock_skew_is_tolerated() -> None:
    issuer = FakeIssuer()
    now = int(time.time())
    assert verify(issuer, issuer.token(exp=now - 2, iat=now - 30, nbf=now + 2)).client_id == "agent-1"


def test_an_untrusted_issuer_is_refused_before_any_key_is_fetched() -> None:
    issuer = FakeIssuer()
    assert "not trusted" in refused(issuer, issuer.token(iss="http://127.0.0.1:1/realms/master"))
    assert issuer.requests == []


def test_an_issuer_whose_metadata_names_another_issuer_is_not_used() -> None:
    issuer = FakeIssuer()
    with pytest.raises(VerificationUnavailable, match="names another issuer"):
        verify(issuer, issuer.token(iss=ISSUER + "/"), trusted=(ISSUER, ISSUER + "/"))


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "kid": "k1"},
        {"alg": "HS256", "kid": "k1"},
        {"alg": "RS256", "kid": "k1", "typ": "secevent+jwt"},
        {"alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1},
        {"alg": "RS256", "kid": "k1", "jku": "http://127.0.0.1:9/jwks"},
        {"alg": "RS256", "kid": 7},
    ],
)
def test_headers_this_server_does_not_accept_are_refused(header: dict[str, Any]) -> None:
    issuer = FakeIssuer()
    good = issuer.token()
    _, payload, signature = good.split(".")
    assert refused(issuer, f"{b64(header)}.{payload}.{signature}")


def test_alg_none_without_a_signature_is_refused() -> None:
    issuer = FakeIssuer()
    assert refused(issuer, unsigned({"alg": "none"}, issuer.claims()))
    assert "algorithm" in refused(issuer, unsigned({"alg": "none"}, issuer.claims(), signature=b"x"))


def test_hmac_signed_with_the_issuers_public_key_is_refused() -> None:
    issuer = FakeIssuer()
    public = json.dumps(issuer.key.as_dict(private=False)).encode()
    signing_input = f"{b64({'alg': 'HS256', 'kid': 'k1'})}.{b64(issuer.claims())}"
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    assert "algorithm" in refused(issuer, f"{signing_input}.{b64(signature)}")


def test_a_bad_signature_is_refused() -> None:
    issuer = FakeIssuer()
    header, payload, _ = issuer.token().split(".")
    _, _, other = issuer.token(scope="mcp:tool:invoices.write").split(".")
    assert "signature" in refused(issuer, f"{header}.{payload}.{other}")
    tampered = issuer.claims(scope="mcp:tool:deploy.production.write")
    assert "signature" in refused(issuer, f"{header}.{b64(tampered)}.{issuer.token().split('.')[2]}")


def test_a_key_the_issuer_does_not_publish_is_refused() -> None:
    issuer = FakeIssuer()
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    assert "signature" in refused(issuer, issuer.token(key=stranger))
    assert "does not publish" in refused(issuer, issuer.token(header={"alg": "RS256", "kid": "k9"}, key=stranger))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "eyJ.eyJ.",
        "x" * 9000,
        "e30.e30.e30",
        "W10.W10.AA",
        "eyJhbGciOiJSUzI1NiJ9.%%%.a",
    ],
)
def test_garbage_and_truncated_tokens_are_refused(token: str) -> None:
    assert refused(FakeIssuer(), token)


def test_a_non_canonical_spelling_of_a_valid_signature_is_refused() -> None:
    issuer = FakeIssuer()
    token = issuer.token()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    twin = token[:-1] + alphabet[last ^ 1]  # a 256-byte signature leaves 2 unused bits in its last character
    assert twin != token and verify(issuer, token).client_id == "agent-1"
    assert "well-formed" in refused(issuer, twin)


def test_truncated_real_token_is_refused() -> None:
    issuer = FakeIssuer()
    token = issuer.token()
    for cut in (10, len(token) // 2, len(token) - 5):
        assert refused(issuer, token[:cut])


def test_keys_that_cannot_be_fetched_make_verification_unavailable_not_successful() -> None:
    issuer = FakeIssuer(up=False)
    with pytest.raises(VerificationUnavailable):
        verify(issuer, issuer.token())


def test_an_unknown_key_id_refetches_the_keys_at_most_once_per_interval() -> None:
    issuer = FakeIssuer()
    clock = Clock()
    check = verifier(issuer, clock=clock)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "new"})

    async def scenario() -> list[int]:
        await check.verify(issuer.token())
        fetches = []
        for _ in range(5):
            with pytest.raises(InvalidToken):
                await check.verify(issuer.token(header={"alg": "RS256", "kid": "new"}, key=stranger))
            fetches.append(sum(r.url.path == "/jwks" for r in issuer.requests))
        clock.now += 11
        issuer.key = stranger  # the issuer rotated: the new key is published now
        principal = await check.verify(issuer.token(header={"alg": "RS256", "kid": "new"}, key=stranger))
        assert principal.client_id == "agent-1"
        fetches.append(sum(r.url.path == "/jwks" for r in issuer.requests))
        return fetches

    assert asyncio.run(scenario()) == [1, 1, 1, 1, 1, 2]


def test_revocation_checking_refuses_what_the_list_covers() -> None:
    issuer = FakeIssuer()
    inner = verifier(issuer)
    covered = RevocationCheckingVerifier(inner, lambda principal: principal.client_id == "agent-1")
    with pytest.raises(InvalidToken, match="revoked"):
        asyncio.run(covered.verify(issuer.token()))
    other = issuer.token(azp="agent-2", client_id="agent-2")
    assert asyncio.run(covered.verify(other)).client_id == "agent-2"


def test_the_tenant_is_the_one_the_trust_names_for_the_issuer_else_the_issuer_itself() -> None:
    issuer = FakeIssuer()
    assert verify(issuer, issuer.token()).tenant == "acme"  # named: see verifier()
    unnamed = verifier(issuer, names={})
    assert asyncio.run(unnamed.verify(issuer.token())).tenant == ISSUER


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": ["http://127.0.0.1:2/mcp", 7]}, "audience"),
        ({"jti": 7}, "jti is not a string"),
        ({"sub": 7}, "sub is not a string"),
        ({"exp": True}, "exp is not a NumericDate"),
        ({"nbf": float("nan")}, "nbf is not a NumericDate"),
        ({"iss": "http://127.0.0.1:1/realms/other"}, "not the one that signed it"),
    ],
)
def test_claims_of_the_wrong_kind_are_refused(changes: dict[str, Any], reason: str) -> None:
    """The claims are checked by hand on every call: each kind the claims registry refused is still refused."""
    from sandbox.jwt_signature import InvalidToken
    from sandbox.mcp_server.verification import Policy

    issuer = FakeIssuer()
    policy = Policy(audience=AUDIENCE, algorithms=("RS256",), leeway=5, max_lifetime=3600)
    with pytest.raises(InvalidToken) as refused_with:
        check_claims({**issuer.claims(), **changes}, issuer.issuer, policy)
    assert reason in refused_with.value.description
