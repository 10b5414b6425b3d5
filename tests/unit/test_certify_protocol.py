"""certify's protocol pieces without servers: challenges, raw MCP answers, hostile tokens, evidence redaction."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import RSAKey

from sandbox.agent.challenge import bearer_challenge, parse_challenges
from sandbox.agent.dpop import DPoPKey
from sandbox.agent.mcp_http import INITIALIZE, rpc_message, served, tool_error, tool_names
from sandbox.certify import forge
from sandbox.certify.evidence import KnownTokens, describe_token, exchange_of
from sandbox.jwt_signature import peek

URL = "http://127.0.0.1:1/mcp"


def answer(status: int, body: str, content_type: str = "application/json", **headers: str) -> httpx.Response:
    request = httpx.Request("POST", URL, json=INITIALIZE)
    return httpx.Response(
        status, content=body.encode(), headers={"content-type": content_type, **headers}, request=request
    )


# Challenges ---------------------------------------------------------------------------------------------------


def test_a_bearer_challenge_with_quoted_parameters_commas_and_escapes() -> None:
    [challenge] = parse_challenges(
        'Bearer error="invalid_token", error_description="bad, \\"very\\" bad", scope="a b", '
        'resource_metadata="http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp"'
    )
    assert challenge.scheme == "Bearer"
    assert challenge.get("error") == "invalid_token"
    assert challenge.get("error_description") == 'bad, "very" bad'
    assert challenge.scopes == ["a", "b"]
    assert challenge.get("RESOURCE_METADATA") == "http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp"


def test_several_challenges_in_one_header_and_unquoted_values() -> None:
    found = parse_challenges('Basic realm="x", Bearer scope=files:read, error=invalid_token, DPoP algs="ES256"')
    assert [c.scheme for c in found] == ["Basic", "Bearer", "DPoP"]
    assert found[1].params == {"scope": "files:read", "error": "invalid_token"}


def test_the_bearer_challenge_is_found_case_insensitively_among_headers() -> None:
    assert bearer_challenge(answer(401, "{}", **{"www-authenticate": 'Basic realm="x"'})) is None
    both = httpx.Response(
        401, headers=[("www-authenticate", 'Basic realm="x"'), ("www-authenticate", 'bearer scope="s"')]
    )
    found = bearer_challenge(both)
    assert found is not None and found.scopes == ["s"]
    assert bearer_challenge(httpx.Response(401)) is None
    [bare] = parse_challenges("Bearer")
    assert bare.scheme == "Bearer" and bare.params == {}


# Raw MCP answers ---------------------------------------------------------------------------------------------


def test_json_and_sse_answers_read_the_same() -> None:
    message = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "a"}, {"name": "b"}]}}
    as_json = answer(200, json.dumps(message))
    as_sse = answer(200, f"event: message\ndata: {json.dumps(message)}\n\n", "text/event-stream")
    assert rpc_message(as_json) == rpc_message(as_sse) == message
    assert served(as_json) and served(as_sse)
    assert tool_names(as_sse) == {"a", "b"}


def test_served_means_a_json_rpc_result_a_tool_error_included() -> None:
    tool_failed = answer(200, json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"isError": True, "content": []}}))
    assert served(tool_failed) and tool_error(tool_failed)
    rpc_error = answer(200, json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "no"}}))
    assert not served(rpc_error)
    assert not served(answer(403, json.dumps({"error": "insufficient_scope"})))
    assert not served(answer(200, "not json"))


# Hostile tokens ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer() -> forge.Signer:
    return forge.Signer()


@pytest.fixture(scope="module")
def token(signer: forge.Signer) -> str:
    return signer.sign({"iss": "http://127.0.0.1:1/realms/a", "aud": URL, "sub": "s", "iat": 1, "exp": 2})


def test_a_signer_signs_what_its_public_key_verifies(signer: forge.Signer, token: str) -> None:
    public = RSAKey.import_key(signer.key.as_dict(private=False))
    decoded = jwt.decode(token, public, algorithms=["RS256"])
    assert decoded.header == {"alg": "RS256", "typ": "JWT", "kid": signer.kid}
    assert decoded.claims["sub"] == "s"


def test_tampered_and_flipped_tokens_no_longer_verify(signer: forge.Signer, token: str) -> None:
    public = RSAKey.import_key(signer.key.as_dict(private=False))
    tampered = forge.tampered(token, {"sub": "someone else"})
    flipped = forge.flipped_signature(token)
    assert tampered.rsplit(".", 1)[1] == token.rsplit(".", 1)[1]
    assert flipped.rsplit(".", 1)[0] == token.rsplit(".", 1)[0] and flipped != token
    for bad in (tampered, flipped):
        with pytest.raises(BadSignatureError):
            jwt.decode(bad, public, algorithms=["RS256"])


def test_a_shortened_signature_is_well_formed_so_only_a_signature_check_refuses_it(signer: forge.Signer) -> None:
    public = RSAKey.import_key(signer.key.as_dict(private=False))
    for n in range(32):  # 32 signatures: cutting encoded characters instead would leave stray bits in ~15 of 16
        token = signer.sign({"sub": str(n)})
        short = forge.shortened_signature(token)
        assert short.rsplit(".", 1)[0] == token.rsplit(".", 1)[0]
        assert len(short.rsplit(".", 1)[1]) < len(token.rsplit(".", 1)[1])
        peek(short)  # the reference server's strict (canonical base64url) parse lets it through
        with pytest.raises(BadSignatureError):
            jwt.decode(short, public, algorithms=["RS256"])


def test_unsigned_and_hmac_confused_tokens(token: str, signer: forge.Signer) -> None:
    claims = forge.claims_of(token)
    none = forge.unsigned(claims, alg="None")
    assert none.endswith(".") and forge.unverified(none) == ({"alg": "None", "typ": "JWT"}, claims)
    public = signer.key.as_dict(private=False)
    secrets = forge.public_key_secrets(public)
    assert set(secrets) == {"the PEM public key", "the JWK as JSON", "the modulus"}
    confused = forge.hmac_signed(claims, secrets["the PEM public key"], kid="k")
    signing_input, signature = confused.rsplit(".", 1)
    expected = hmac.new(secrets["the PEM public key"], signing_input.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=") == expected
    assert forge.unverified(confused)[0] == {"alg": "HS256", "typ": "JWT", "kid": "k"}  # type: ignore[index]


def test_changed_and_fresh_times() -> None:
    claims = {"iss": "i", "aud": "a", "nbf": 5, "iat": 1, "exp": 2}
    assert forge.changed(claims, aud=None, sub="x") == {"iss": "i", "nbf": 5, "iat": 1, "exp": 2, "sub": "x"}
    fresh = forge.fresh_times(claims, lifetime=60, now=1000)
    assert fresh["iat"] == 1000 and fresh["exp"] == 1060 and "nbf" not in fresh and fresh["jti"]


def test_malformed_tokens_are_all_unparseable_and_none_is_the_token(token: str) -> None:
    cases = forge.malformed(token)
    assert token not in cases.values()
    for label, value in cases.items():
        assert forge.unverified(value) is None, label


# Evidence ----------------------------------------------------------------------------------------------------


def test_evidence_shows_a_token_as_header_and_claims_never_in_full(token: str) -> None:
    known = KnownTokens()
    known.add(token)
    request = httpx.Request(
        "POST",
        f"{URL}?access_token={token}&x=1",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        json={"echo": token},
    )
    response = httpx.Response(
        401,
        json={"error": "invalid_token", "seen": token},
        headers={"WWW-Authenticate": 'Bearer error="invalid_token", scope="a"'},
        request=request,
    )
    shown = exchange_of(response, known).as_dict()
    text = json.dumps(shown)
    assert token not in text and token.rsplit(".", 1)[1] not in text
    assert shown["request"]["authorization"] == [{"scheme": "Bearer", "token": describe_token(token)}]
    assert shown["request"]["query_access_token"][0]["claims"]["sub"] == "s"
    assert "access_token=%5Btoken%5D" in shown["request"]["url"] or "access_token=[token]" in shown["request"]["url"]
    assert shown["response"]["headers"]["www-authenticate"] == 'Bearer error="invalid_token", scope="a"'
    assert shown["response"]["body"]["seen"] == "[token]"


def test_evidence_shows_a_dpop_request_as_scheme_and_proof_claims_never_in_full(token: str) -> None:
    known = KnownTokens()
    known.add(token)
    key = DPoPKey.generate()
    headers = {**key.headers("POST", URL, token), "Content-Type": "application/json"}
    response = httpx.Response(200, json={}, request=httpx.Request("POST", URL, headers=headers, json={}))
    shown = exchange_of(response, known).as_dict()
    text = json.dumps(shown)
    assert token not in text and headers["DPoP"] not in text and headers["DPoP"].rsplit(".", 1)[1] not in text
    assert shown["request"]["authorization"] == [{"scheme": "DPoP", "token": describe_token(token)}]
    [proof] = shown["request"]["dpop"]
    assert proof["header"]["typ"] == "dpop+jwt" and proof["claims"]["htu"] == URL and "ath" in proof["claims"]


def test_an_opaque_token_is_shown_by_its_length_only() -> None:
    assert describe_token("garbage") == {"opaque": "7 characters"}


@given(st.text(max_size=300))
def test_any_header_parses_without_error(header: str) -> None:
    for challenge in parse_challenges(header):
        assert challenge.scheme and header.find(challenge.scheme) >= 0
