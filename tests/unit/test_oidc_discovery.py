"""Issuer endpoints come from the issuer's own OpenID configuration: read once, loopback only, one-line errors."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from sandbox.errors import SandboxError
from sandbox.oidc import discover_async


def issuer() -> str:
    return f"http://127.0.0.1:18080/realms/t-{uuid.uuid4().hex[:8]}"  # each test its own: answers are kept


def serving(document: object, status: int = 200) -> tuple[httpx.AsyncClient, list[str]]:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(status, json=document)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer)), asked


def configuration(base: str, **overrides: str) -> dict[str, str]:
    return {
        "issuer": base,
        "token_endpoint": f"{base}/oauth/token",
        "authorization_endpoint": f"{base}/oauth/authorize",
        "jwks_uri": f"{base}/keys",
        **overrides,
    }


async def test_endpoints_are_read_from_the_configuration_once() -> None:
    base = issuer()
    http, asked = serving(configuration(base))
    async with http:
        first = await discover_async(base, http)
        again = await discover_async(base, http)
    assert (first.token_endpoint, first.authorization_endpoint, first.jwks_uri) == (
        f"{base}/oauth/token",
        f"{base}/oauth/authorize",
        f"{base}/keys",
    )
    assert again == first
    assert asked == [f"{base}/.well-known/openid-configuration"]


@pytest.mark.parametrize(
    ("document", "status", "message"),
    [
        ({}, 404, "serves no OpenID configuration (HTTP 404)"),
        ({"issuer": "x"}, 200, "lacks token_endpoint"),
        (None, 200, "lacks token_endpoint"),  # no JSON at all
    ],
)
async def test_a_missing_or_partial_configuration_is_one_line(document: object, status: int, message: str) -> None:
    http, _ = serving(document, status)
    async with http:
        with pytest.raises(SandboxError, match=re.escape(message)) as raised:
            await discover_async(issuer(), http)
    assert "\n" not in str(raised.value)


async def test_endpoints_off_loopback_are_refused() -> None:
    base = issuer()
    http, _ = serving(configuration(base, token_endpoint="https://idp.example.com/token"))
    async with http:
        with pytest.raises(SandboxError, match=re.escape("token_endpoint 'https://idp.example.com/token' is not")):
            await discover_async(base, http)


async def test_an_issuer_off_loopback_is_never_asked() -> None:
    http, asked = serving({})
    async with http:
        with pytest.raises(SandboxError, match=re.escape("issuer 'https://idp.example.com/realms/a' is not")):
            await discover_async("https://idp.example.com/realms/a", http)
    assert asked == []


async def test_an_unreachable_issuer_names_the_fix() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(SandboxError, match=r"unreachable \(ConnectError\); start the stack"):
            await discover_async(issuer(), http)
