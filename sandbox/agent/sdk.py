"""The official MCP SDK client, set up the way an agent runs it: from a generated MCP config and its credential.

The config (from the broker) names the server, the token endpoint, the client id and where the credential
is (an environment variable or a file); never the credential itself. The SDK discovers the authorization
server from the server's 401 and its protected resource metadata, and gets tokens by client credentials.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx2
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from sandbox.agent.mcp_config import McpClientConfig
from sandbox.errors import SandboxError


class MemoryTokenStorage:
    """Tokens and client information kept in memory for one client's life (the SDK's TokenStorage protocol)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class AudienceClientCredentialsProvider(ClientCredentialsOAuthProvider):
    """The SDK's client-credentials provider, whose token requests also name ``audience=``.

    The SDK names the server with RFC 8707 ``resource=`` only. An authorization server that ignores it (Ory
    Hydra) grants a token's ``aud`` on ``audience=`` instead; without it the token names no server, and the
    server refuses it. The generated config says so per server (its ``auth.audience``)."""

    def __init__(self, *args: Any, audience: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.audience = audience

    async def _exchange_token_client_credentials(self) -> httpx2.Request:
        request = await super()._exchange_token_client_credentials()
        form = [*parse_qsl(request.read().decode(), keep_blank_values=True), ("audience", self.audience)]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")}
        return httpx2.Request(request.method, request.url, data=dict(form), headers=headers)


def client_credentials_provider(
    server_url: str,
    client_id: str,
    client_secret: str,
    issuer: str,
    *,
    scope: str | None = None,
    storage: MemoryTokenStorage | None = None,
    audience: str | None = None,
) -> ClientCredentialsOAuthProvider:
    """The SDK's client-credentials auth; ``audience``: also ask for the server with ``audience=`` (Hydra)."""
    common: dict[str, Any] = {
        "server_url": server_url,
        "storage": storage or MemoryTokenStorage(),
        "client_id": client_id,
        "client_secret": client_secret,
        "issuer": issuer,
        "scope": scope,
    }
    if audience is not None:
        return AudienceClientCredentialsProvider(audience=audience, **common)
    return ClientCredentialsOAuthProvider(**common)


@asynccontextmanager
async def connect(server_url: str, auth: httpx2.Auth) -> AsyncIterator[Client]:
    """An initialized SDK client over Streamable HTTP with ``auth`` (e.g. a client-credentials provider)."""
    async with (
        httpx2.AsyncClient(auth=auth, trust_env=False) as http,
        Client(streamable_http_client(server_url, http_client=http)) as client,
    ):
        yield client


def provider_from_config(
    config: McpClientConfig, server_url: str, environ: Mapping[str, str] | None = None
) -> ClientCredentialsOAuthProvider:
    """The SDK auth for one server of a generated config, reading the credential from where the config says."""
    entry = next((s for s in config.mcp_servers.values() if s.url == server_url), None)
    if entry is None:
        raise SandboxError(f"the MCP config has no server {server_url}", "generate a config that lists it")
    auth = entry.auth
    source = auth.credential
    environ = os.environ if environ is None else environ
    if source.env is not None:
        secret = environ.get(source.env)
        where = f"environment variable {source.env}"
    else:
        path = Path(source.file or "")
        secret = path.read_text().strip() if path.is_file() else None
        where = f"file {path}"
    if not secret:
        raise SandboxError(f"the agent's credential is not in the {where}", f"put the agent's secret in the {where}")
    return client_credentials_provider(
        server_url, auth.client_id, secret, auth.issuer, scope=auth.scope, audience=auth.audience
    )
