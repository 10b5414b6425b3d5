"""The agent side: credentials, tokens, and calls to MCP servers as an agent makes them."""

from __future__ import annotations

from sandbox.agent import mcp_http
from sandbox.agent.tokens import (
    ClientSecretCredential,
    Credential,
    PrivateKeyCredential,
    Token,
    TokenClient,
    TokenRefused,
    exchange_token,
    fetch_token,
)

__all__ = [
    "ClientSecretCredential",
    "Credential",
    "PrivateKeyCredential",
    "Token",
    "TokenClient",
    "TokenRefused",
    "exchange_token",
    "fetch_token",
    "mcp_http",
]
