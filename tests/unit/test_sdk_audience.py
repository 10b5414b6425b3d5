"""The SDK client from a generated config asks for its server with audience= when the config names one (Hydra)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
from mcp.shared.auth import OAuthMetadata

from sandbox.agent.mcp_config import McpClientConfig
from sandbox.agent.sdk import AudienceClientCredentialsProvider, provider_from_config

SERVER = "http://127.0.0.1:18083/mcp"
ISSUER = "http://127.0.0.1:18090/"


def config(**extra: str) -> McpClientConfig:
    auth = {
        "type": "oauth2_client_credentials",
        "issuer": ISSUER,
        "tokenEndpoint": f"{ISSUER}oauth2/token",
        "clientId": "agent-bot-1",
        "scope": "mcp:tool:logs.read",
        "resource": SERVER,
        "credential": {"type": "client_secret", "env": "SECRET"},
        **extra,
    }
    document = {
        "mcpServers": {"s": {"type": "http", "url": SERVER, "allowedTools": ["logs.read"], "auth": auth}},
        "agent": {"name": "bot", "clientId": "agent-bot-1"},
    }
    return McpClientConfig.read(document, "the test's config")


async def token_request_form(provider: Any) -> dict[str, list[str]]:
    await provider._initialize()
    provider.context.oauth_metadata = OAuthMetadata(
        issuer=ISSUER,  # type: ignore[arg-type]
        authorization_endpoint=f"{ISSUER}oauth2/auth",  # type: ignore[arg-type]
        token_endpoint=f"{ISSUER}oauth2/token",  # type: ignore[arg-type]
    )
    provider.context.protocol_version = "2025-11-25"
    request = await provider._exchange_token_client_credentials()
    assert str(request.url) == f"{ISSUER}oauth2/token"
    assert request.headers["authorization"].startswith("Basic ")  # the credential still goes as before
    return parse_qs(request.read().decode())


@pytest.mark.parametrize("audience", [SERVER, None])
async def test_the_token_request_names_the_audience_only_when_the_config_does(audience: str | None) -> None:
    extra = {"audience": audience} if audience else {}
    provider = provider_from_config(config(**extra), SERVER, {"SECRET": "s3cret"})
    assert isinstance(provider, AudienceClientCredentialsProvider) == bool(audience)
    form = await token_request_form(provider)
    assert form["grant_type"] == ["client_credentials"] and form["scope"] == ["mcp:tool:logs.read"]
    assert form.get("audience") == ([SERVER] if audience else None)
