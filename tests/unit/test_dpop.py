"""DPoP (RFC 9449): the proofs the agent makes, and how the reference server checks a bound token's proof."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from mcp_fakes import AUDIENCE, Clock, FakeIssuer

from sandbox.agent.dpop import DPoPKey, access_token_hash, target_uri
from sandbox.agent.tokens import ClientSecretCredential, TokenClient
from sandbox.jwt_signature import InvalidToken
from sandbox.mcp_server import challenges
from sandbox.mcp_server.binding import PROOF_ALGORITHMS, BindingChecker, BindingRefused, Presented
from sandbox.mcp_server.principal import Confirmation, Principal, principal_from_claims
from sandbox.mcp_server.verification import Policy, check_claims

URL = "http://127.0.0.1:2/mcp"
TOKEN = "header.payload.signature"


def principal(binding: Confirmation | None) -> Principal:
    return Principal("iss", "agent-1", "sub", frozenset(), 0, 0, "sha256:x", binding)


def decoded(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header_part, claims_part, _ = proof.split(".")

    def part(text: str) -> dict[str, Any]:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))

    return part(header_part), part(claims_part)


def refusal(checker: BindingChecker, bound: Principal, presented: Presented, token: str = TOKEN) -> BindingRefused:
    with pytest.raises(BindingRefused) as caught:
        checker.check(bound, token, presented)
    return caught.value


# The agent's side -----------------------------------------------------------------------------------------------


def test_a_proof_names_the_request_and_the_token_and_carries_only_the_public_key() -> None:
    key = DPoPKey.generate()
    header, claims = decoded(key.proof("post", f"{URL}?x=1#frag", access_token=TOKEN, now=1_800_000_000))
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}
    assert "d" not in header["jwk"]
    assert claims["htm"] == "POST" and claims["htu"] == URL and claims["iat"] == 1_800_000_000
    expected = base64.urlsafe_b64encode(hashlib.sha256(TOKEN.encode()).digest()).rstrip(b"=").decode()
    assert claims["ath"] == expected == access_token_hash(TOKEN)
    assert len(claims["jti"]) >= 16
    jwt.decode(key.proof("GET", URL), ECKey.import_key(key.public_jwk), algorithms=["ES256"])  # it verifies


def test_every_proof_has_its_own_jti_and_a_token_request_proof_has_no_ath() -> None:
    key = DPoPKey.generate()
    first, second = (decoded(key.proof("POST", URL))[1] for _ in range(2))
    assert first["jti"] != second["jti"] and "ath" not in first


def test_the_thumbprint_is_rfc_7638_of_the_public_key() -> None:
    key = DPoPKey.generate()
    jwk = key.public_jwk
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    digest = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert key.thumbprint == digest
    assert DPoPKey.generate().thumbprint != key.thumbprint


def test_target_uri_drops_query_and_fragment() -> None:
    assert target_uri("http://127.0.0.1:2/realms/a/token?x=1#y") == "http://127.0.0.1:2/realms/a/token"


def test_the_resource_request_headers_use_the_dpop_scheme_and_a_proof() -> None:
    key = DPoPKey.generate()
    headers = key.headers("POST", URL, TOKEN)
    assert headers["Authorization"] == f"DPoP {TOKEN}"
    assert decoded(headers["DPoP"])[1]["ath"] == access_token_hash(TOKEN)


def test_the_token_client_sends_a_proof_for_the_token_endpoint_and_retries_once_with_a_nonce() -> None:
    key = DPoPKey.generate()
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": "n-1"})
        answer = {"access_token": "t", "token_type": "DPoP", "expires_in": 60, "scope": "a"}
        return httpx.Response(200, json=answer)

    url = "http://127.0.0.1:9/realms/acme/protocol/openid-connect/token"
    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    client = TokenClient(url, ClientSecretCredential("agent-1", "s"), http=http, dpop=key)
    token = asyncio.run(client.fetch())
    assert token.token_type == "DPoP"
    assert len(seen) == 2
    first, second = (decoded(request.headers["dpop"]) for request in seen)
    assert first[1]["htm"] == "POST" and first[1]["htu"] == url and "nonce" not in first[1]
    assert second[1]["nonce"] == "n-1" and second[1]["jti"] != first[1]["jti"]
    assert parse_qs(seen[1].content.decode())["grant_type"] == ["client_credentials"]


def test_a_client_without_a_dpop_key_sends_no_proof() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 60})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    token = asyncio.run(TokenClient("http://127.0.0.1:9/t", ClientSecretCredential("a", "s"), http=http).fetch())
    assert "dpop" not in seen[0].headers and token.token_type == "Bearer"


# The server's side ----------------------------------------------------------------------------------------------


def test_a_bound_token_with_a_proof_of_its_key_for_this_request_is_accepted() -> None:
    key = DPoPKey.generate()
    checker = BindingChecker()
    proof = key.proof("POST", URL, access_token=TOKEN)
    checker.check(principal(Confirmation(jkt=key.thumbprint)), TOKEN, Presented("DPoP", (proof,), None, "POST", URL))


def test_a_bearer_token_as_bearer_needs_no_proof_but_as_dpop_is_refused() -> None:
    checker = BindingChecker()
    checker.check(principal(None), TOKEN, Presented("Bearer"))
    refused = refusal(checker, principal(None), Presented("DPoP", (DPoPKey.generate().proof("POST", URL),)))
    assert (refused.scheme, refused.error) == ("DPoP", "invalid_token")


def test_a_stolen_bound_token_replayed_as_a_bearer_token_is_invalid_token() -> None:
    refused = refusal(BindingChecker(), principal(Confirmation(jkt=DPoPKey.generate().thumbprint)), Presented("Bearer"))
    assert (refused.scheme, refused.error) == ("DPoP", "invalid_token")


def proof_case(name: str, key: DPoPKey, clock: Clock) -> tuple[str, str, str]:
    """(proof, token, url) broken in one way each."""
    good = {"method": "POST", "url": URL, "access_token": TOKEN, "now": clock.now}
    if name == "another key":
        return DPoPKey.generate().proof(**good), TOKEN, URL  # type: ignore[arg-type]
    if name == "another method":
        return key.proof(**{**good, "method": "GET"}), TOKEN, URL  # type: ignore[arg-type]
    if name == "another url":
        return key.proof(**{**good, "url": "http://127.0.0.1:3/mcp"}), TOKEN, URL  # type: ignore[arg-type]
    if name == "another token":
        return key.proof(**{**good, "access_token": "other.token.value"}), TOKEN, URL  # type: ignore[arg-type]
    if name == "too old":
        return key.proof(**{**good, "now": clock.now - 120}), TOKEN, URL  # type: ignore[arg-type]
    if name == "from the future":
        return key.proof(**{**good, "now": clock.now + 60}), TOKEN, URL  # type: ignore[arg-type]
    if name == "no ath":
        return key.proof("POST", URL, now=clock.now), TOKEN, URL
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}
    claims = {
        "jti": uuid.uuid4().hex,
        "htm": "POST",
        "htu": URL,
        "iat": int(clock.now),
        "ath": access_token_hash(TOKEN),
    }
    private = ECKey.import_key(key.private_jwk)
    if name == "wrong typ":
        return jwt.encode({**header, "typ": "JWT"}, claims, private, algorithms=["ES256"]), TOKEN, URL
    if name == "private key in the header":
        return jwt.encode({**header, "jwk": key.private_jwk}, claims, private, algorithms=["ES256"]), TOKEN, URL
    if name == "hmac":
        secret = OctKey.generate_key(256)
        mac_header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": secret.as_dict(private=False)}
        return jwt.encode(mac_header, claims, secret, algorithms=["HS256"]), TOKEN, URL
    if name == "bad signature":
        proof = jwt.encode(header, claims, private, algorithms=["ES256"])
        head, body, signature = proof.split(".")
        return f"{head}.{body}.{signature[:-4]}AAAA", TOKEN, URL
    if name == "garbage":
        return "not-a-jwt", TOKEN, URL
    raise AssertionError(name)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another key", "signed by another key"),
        ("another method", "(htm)"),
        ("another url", "(htu)"),
        ("another token", "(ath)"),
        ("no ath", "(ath)"),
        ("too old", "not fresh"),
        ("from the future", "not fresh"),
        ("wrong typ", "typ"),
        ("private key in the header", "no usable public key"),
        ("hmac", "algorithm"),
        ("bad signature", "does not verify"),
        ("garbage", "not a well-formed JWT"),
    ],
)
def test_a_proof_that_fails_any_check_is_invalid_dpop_proof(case: str, reason: str) -> None:
    key, clock = DPoPKey.generate(), Clock()
    proof, token, url = proof_case(case, key, clock)
    checker = BindingChecker(clock)
    refused = refusal(
        checker, principal(Confirmation(jkt=key.thumbprint)), Presented("DPoP", (proof,), None, "POST", url), token
    )
    assert (refused.scheme, refused.error) == ("DPoP", "invalid_dpop_proof")
    assert reason in refused.description


def test_no_proof_or_two_proofs_are_refused() -> None:
    key = DPoPKey.generate()
    bound = principal(Confirmation(jkt=key.thumbprint))
    proof = key.proof("POST", URL, access_token=TOKEN)
    for proofs in [(), (proof, proof)]:
        refused = refusal(BindingChecker(), bound, Presented("DPoP", proofs, None, "POST", URL))
        assert refused.error == "invalid_dpop_proof"


def test_a_proof_is_good_once() -> None:
    key = DPoPKey.generate()
    checker = BindingChecker()
    bound = principal(Confirmation(jkt=key.thumbprint))
    presented = Presented("DPoP", (key.proof("POST", URL, access_token=TOKEN),), None, "POST", URL)
    checker.check(bound, TOKEN, presented)
    assert "used before" in refusal(checker, bound, presented).description


def test_htu_compares_scheme_and_host_without_case_and_ignores_nothing_else() -> None:
    key = DPoPKey.generate()
    bound = principal(Confirmation(jkt=key.thumbprint))
    proof = key.proof("POST", "HTTP://127.0.0.1:2/mcp", access_token=TOKEN)
    BindingChecker().check(bound, TOKEN, Presented("DPoP", (proof,), None, "POST", URL))
    other_path = key.proof("POST", "http://127.0.0.1:2/mcp/", access_token=TOKEN)
    assert "(htu)" in refusal(BindingChecker(), bound, Presented("DPoP", (other_path,), None, "POST", URL)).description


def test_a_certificate_bound_token_needs_that_certificate_on_the_connection() -> None:
    bound = principal(Confirmation(x5t="thumb-1"))
    BindingChecker().check(bound, TOKEN, Presented("Bearer", (), "thumb-1"))
    for presented in [Presented("Bearer"), Presented("Bearer", (), "thumb-2")]:
        refused = refusal(BindingChecker(), bound, presented)
        assert (refused.scheme, refused.error) == ("Bearer", "invalid_token")


def test_the_dpop_challenge_names_the_scheme_error_and_algorithms() -> None:
    response = challenges.unbound(
        scheme="DPoP",
        error="invalid_dpop_proof",
        description="no DPoP proof",
        resource_metadata="http://127.0.0.1:2/.well-known/oauth-protected-resource/mcp",
        algorithms=PROOF_ALGORITHMS,
    )
    header = response.headers["www-authenticate"]
    assert response.status_code == 401
    assert header.startswith('DPoP error="invalid_dpop_proof", error_description="no DPoP proof"')
    assert 'algs="ES256 ES384 RS256 PS256 EdDSA"' in header and "resource_metadata=" in header


# The token's cnf --------------------------------------------------------------------------------------------------


def test_the_principal_carries_the_tokens_binding() -> None:
    claims = FakeIssuer().claims(cnf={"jkt": "abc"})
    assert principal_from_claims(claims, "t").binding == Confirmation(jkt="abc")
    assert principal_from_claims(FakeIssuer().claims(), "t").binding is None
    for cnf in ["abc", {"jkt": 5}, {"x5t": "only-sha1"}]:
        with pytest.raises(InvalidToken):
            principal_from_claims(FakeIssuer().claims(cnf=cnf), "t")


def test_a_token_typed_dpop_is_an_access_token_only_when_it_is_bound() -> None:
    policy = Policy(AUDIENCE, ("RS256",), leeway=5, max_lifetime=3600)
    issuer = FakeIssuer()
    check_claims(issuer.claims(typ="DPoP", cnf={"jkt": "abc"}), issuer.issuer, policy)
    with pytest.raises(InvalidToken, match="not an access token"):
        check_claims(issuer.claims(typ="DPoP"), issuer.issuer, policy)
