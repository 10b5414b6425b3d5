"""The agent's token client: the client authentication it chooses, the assertion it signs, and how it fails."""

from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from sandbox.agent.client_auth import NoCommonMethod, choose_method
from sandbox.agent.tokens import (
    ClientSecretCredential,
    PrivateKeyCredential,
    TokenClient,
    TokenEndpointUnavailable,
    TokenRefused,
)

ISSUER = "http://127.0.0.1:9/realms/acme"
TOKEN_URL = "http://127.0.0.1:9/oauth/token"  # not Keycloak's path: the issuer must come from the caller
SECRET = ClientSecretCredential("agent-1", "s3cret:with/odd chars")
ISSUED = {"access_token": "token-value-1", "token_type": "Bearer", "expires_in": 300, "scope": "a b"}


def recording(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[list[httpx.Request], httpx.AsyncClient]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return seen, httpx.AsyncClient(transport=httpx.MockTransport(handle))


def form(request: httpx.Request) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


@pytest.mark.parametrize(
    ("supported", "expected"),
    [
        (None, "client_secret_basic"),  # RFC 8414: basic when the server says nothing
        (["client_secret_basic"], "client_secret_basic"),
        (["client_secret_post", "client_secret_basic"], "client_secret_basic"),
        (["client_secret_post", "private_key_jwt"], "client_secret_post"),
    ],
)
def test_a_secret_goes_by_basic_first_then_post(supported: list[str] | None, expected: str) -> None:
    assert choose_method(SECRET, supported) == expected


def test_a_credential_the_server_cannot_take_is_one_line_naming_both_sides() -> None:
    with pytest.raises(NoCommonMethod, match=r"supports private_key_jwt.*client_secret_basic or client_secret_post"):
        choose_method(SECRET, ["private_key_jwt"])
    key = PrivateKeyCredential("agent-1", RSAKey.generate_key(2048).as_dict(private=True))
    assert choose_method(key, None) == choose_method(key, ["client_secret_basic", "private_key_jwt"])
    with pytest.raises(NoCommonMethod, match="needs private_key_jwt"):
        choose_method(key, ["client_secret_basic"])


async def test_basic_sends_the_form_encoded_pair_in_the_header_and_no_secret_in_the_body() -> None:
    seen, http = recording(lambda _: httpx.Response(200, json=ISSUED))
    async with TokenClient(TOKEN_URL, SECRET, issuer=ISSUER, http=http) as client:
        token = await client.fetch("a b", resource="http://127.0.0.1:9/mcp")
    assert token.access_token == "token-value-1" and token.scopes == {"a", "b"}
    (request,) = seen
    scheme, value = request.headers["authorization"].split()
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == "agent-1:s3cret%3Awith%2Fodd%20chars"
    assert form(request) == {"grant_type": "client_credentials", "scope": "a b", "resource": "http://127.0.0.1:9/mcp"}


async def test_post_sends_the_secret_in_the_body_when_only_post_is_offered() -> None:
    seen, http = recording(lambda _: httpx.Response(200, json=ISSUED))
    async with TokenClient(TOKEN_URL, SECRET, auth_methods=["client_secret_post"], http=http) as client:
        await client.fetch()
    (request,) = seen
    assert "authorization" not in request.headers
    assert form(request) == {"grant_type": "client_credentials", "client_id": "agent-1", "client_secret": SECRET.secret}


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (RSAKey.generate_key(2048, parameters={"kid": "k1"}), "RS256"),
        (ECKey.generate_key("P-256", parameters={"kid": "k1"}), "ES256"),
        (OKPKey.generate_key("Ed25519", parameters={"kid": "k1"}), "EdDSA"),
    ],
    ids=["rsa", "ec-p256", "ed25519"],
)
async def test_a_private_key_signs_an_assertion_for_the_issuer(key: RSAKey | ECKey | OKPKey, alg: str) -> None:
    seen, http = recording(lambda _: httpx.Response(200, json=ISSUED))
    credential = PrivateKeyCredential("agent-1", key.as_dict(private=True))
    async with TokenClient(TOKEN_URL, credential, issuer=ISSUER, auth_methods=["private_key_jwt"], http=http) as c:
        await c.fetch()
    body = form(seen[0])
    assert body["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    public = JWKRegistry.import_key(key.as_dict(private=False))
    decoded = jwt.decode(body["client_assertion"], public, algorithms=[alg])
    assert decoded.header["alg"] == alg and decoded.header["kid"] == "k1"
    claims = decoded.claims
    assert claims["iss"] == claims["sub"] == "agent-1" and claims["aud"] == ISSUER
    assert claims["exp"] > claims["iat"] and claims["jti"]
    assert "authorization" not in seen[0].headers and "client_secret" not in body


def test_a_pem_key_becomes_a_credential_with_its_algorithm() -> None:
    for key, alg in [(ECKey.generate_key("P-256"), "ES256"), (OKPKey.generate_key("Ed25519"), "EdDSA")]:
        credential = PrivateKeyCredential.from_pem("agent-1", key.as_pem(private=True))
        assert credential.alg == alg and credential.kid is None


async def test_a_keycloak_token_url_gives_its_realm_as_the_assertion_audience() -> None:
    seen, http = recording(lambda _: httpx.Response(200, json=ISSUED))
    key = ECKey.generate_key("P-256")
    credential = PrivateKeyCredential("agent-1", key.as_dict(private=True))
    async with TokenClient(f"{ISSUER}/protocol/openid-connect/token", credential, http=http) as client:
        await client.fetch()
    claims = jwt.decode(form(seen[0])["client_assertion"], ECKey.import_key(key.as_dict(private=False))).claims
    assert claims["aud"] == ISSUER


async def test_a_refusal_carries_the_status_and_the_oauth_error() -> None:
    answer = {"error": "invalid_client", "error_description": "Invalid client credentials"}
    _, http = recording(lambda _: httpx.Response(401, json=answer))
    async with TokenClient(TOKEN_URL, SECRET, http=http) as client:
        with pytest.raises(TokenRefused) as refused:
            await client.fetch()
    assert (refused.value.status, refused.value.error) == (401, "invalid_client")
    assert str(refused.value) == "token request refused (401 invalid_client): Invalid client credentials"


@pytest.mark.parametrize(
    "answer",
    [
        lambda request: httpx.Response(503, text="<html>maintenance</html>"),
        lambda request: httpx.Response(502, json={"error": "bad_gateway"}),
        lambda request: httpx.Response(200, json={"no": "token"}),
    ],
    ids=["html-503", "json-502", "200-without-token"],
)
async def test_an_answer_that_is_not_oauth_is_unavailable_never_refused(
    answer: Callable[[httpx.Request], httpx.Response],
) -> None:
    _, http = recording(answer)
    async with TokenClient(TOKEN_URL, SECRET, http=http) as client:
        with pytest.raises(TokenEndpointUnavailable) as unavailable:
            await client.fetch()
    assert not isinstance(unavailable.value, TokenRefused)


async def test_a_transport_failure_is_unavailable_never_refused() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    _, http = recording(fail)
    async with TokenClient(TOKEN_URL, SECRET, http=http) as client:
        with pytest.raises(TokenEndpointUnavailable, match="ConnectError: connection refused") as unavailable:
            await client.fetch()
    assert unavailable.value.status is None
