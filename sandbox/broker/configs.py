"""MCP client configs for an agent: servers, allowed tools, token endpoint, and where the credential is.

The config names the credential by environment variable or file path; it never contains the secret or
the private key, so it can be committed, shared and shown.
"""

from __future__ import annotations

from typing import Any, Literal

from sandbox.toolmap import ToolMap

DEFAULT_SECRET_ENV = "MCP_AGENT_CLIENT_SECRET"
DEFAULT_KEY_FILE = "~/.config/mcp-agents/{name}.private.jwk"


def allowed_tools(tools: ToolMap, scopes: list[str], environment: str) -> list[str]:
    """The tools an agent with ``scopes`` may call (for per-environment tools: in its environment)."""
    return sorted(name for name, tool in tools.tools.items() if tool.scope_for(environment) in scopes)


def credential_reference(
    credential_type: str,
    name: str,
    *,
    source: Literal["env", "file"] | None = None,
    reference: str | None = None,
) -> dict[str, str]:
    """Where the MCP client reads the credential: an environment variable (secrets) or a file (keys)."""
    source = source or ("env" if credential_type == "client_secret" else "file")
    if source == "env":
        return {"type": credential_type, "env": reference or DEFAULT_SECRET_ENV}
    return {"type": credential_type, "file": reference or DEFAULT_KEY_FILE.format(name=name)}


def mcp_client_config(
    *,
    name: str,
    client_id: str,
    issuer: str,
    servers: list[str],
    tools: list[str],
    scopes: list[str],
    credential: dict[str, str],
) -> dict[str, Any]:
    """A config in the common ``mcpServers`` shape, with OAuth client-credentials settings per server."""
    token_endpoint = f"{issuer}/protocol/openid-connect/token"
    return {
        "mcpServers": {
            _server_key(url, index): {
                "type": "http",
                "url": url,
                "allowedTools": tools,
                "auth": {
                    "type": "oauth2_client_credentials",
                    "issuer": issuer,
                    "tokenEndpoint": token_endpoint,
                    "clientId": client_id,
                    "scope": " ".join(scopes),
                    "resource": url,
                    "credential": credential,
                },
            }
            for index, url in enumerate(servers)
        },
        "agent": {"name": name, "clientId": client_id},
    }


def _server_key(url: str, index: int) -> str:
    host = url.split("://", 1)[-1].split("/", 1)[0].replace(":", "-")
    return f"{host}-{index}" if index else host
