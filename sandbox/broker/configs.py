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
    token_endpoint: str,
    servers: list[str],
    tools: list[str],
    scopes: list[str],
    credential: dict[str, str],
    audience_parameter: bool = False,
) -> dict[str, Any]:
    """A config in the common ``mcpServers`` shape, with OAuth client-credentials settings per server.

    ``audience_parameter``: the authorization server takes no RFC 8707 ``resource=`` (Ory Hydra) but grants a
    token's ``aud`` on ``audience=``; each server's ``auth`` then also names its ``audience``, so the client asks
    for the server in the terms its authorization server understands."""
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
                    **({"audience": url} if audience_parameter else {}),
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


# Host formats: the file each MCP host reads, for one server, with the credential by reference.

HOST_FORMATS = ("json", "claude-code", "vscode", "cursor")
#: Where each host reads the generated file (project scope), for the docs and the CLI's hint.
HOST_FILES = {"claude-code": ".mcp.json", "vscode": ".vscode/mcp.json", "cursor": ".cursor/mcp.json"}
DEFAULT_TOKEN_ENV = "MCP_AGENT_TOKEN"


def token_command(auth: dict[str, Any], server_url: str, *, header_json: bool = False) -> str:
    """The ``mcp-sandbox agents token`` command that prints a fresh token for one server (secret by reference)."""
    source = auth["credential"]
    credential = f"--key-file {source['file']}" if "file" in source else f"--secret-env {source['env']}"
    command = f"mcp-sandbox agents token --client-id {auth['clientId']} --issuer {auth['issuer']} "
    command += f"--server {server_url} {credential}"
    return command + (" --header-json" if header_json else "")


def host_config(
    host: str, config: dict[str, Any], server_url: str | None = None, *, token_env: str | None = None
) -> dict[str, Any]:
    """One server of a generated config, in the shape ``host`` reads.

    ``json`` keeps the sandbox's own shape (with its ``auth`` block, for the sandbox's SDK loader). The hosts
    get a bearer token by reference: Claude Code runs a ``headersHelper`` command (``agents token
    --header-json``) unless ``token_env`` names a variable holding the token; VS Code (``${env:…}``) and Cursor
    (``${env:…}``) read it from ``token_env`` (default MCP_AGENT_TOKEN), which ``agents token`` fills.
    """
    servers: dict[str, Any] = config["mcpServers"]
    chosen = [(key, entry) for key, entry in servers.items() if server_url in (None, entry["url"])]
    if not chosen:
        known = ", ".join(entry["url"] for entry in servers.values()) or "none"
        raise ValueError(f"the agent may not call {server_url} (its servers: {known})")
    key, entry = chosen[0]
    name = f"{config['agent']['name']}-{key}"
    if host == "json":
        return {"mcpServers": {key: entry}, "agent": config["agent"]}
    url = entry["url"]
    variable = token_env or DEFAULT_TOKEN_ENV
    if host == "claude-code":
        access = (
            {"headers": {"Authorization": f"Bearer ${{{variable}}}"}}
            if token_env
            else {"headersHelper": token_command(entry["auth"], url, header_json=True)}
        )
        return {"mcpServers": {name: {"type": "http", "url": url, **access}}}
    headers = {"Authorization": f"Bearer ${{env:{variable}}}"}
    if host == "vscode":
        return {"servers": {name: {"type": "http", "url": url, "headers": headers}}}
    if host == "cursor":
        return {"mcpServers": {name: {"url": url, "headers": headers}}}
    raise ValueError(f"unknown host format {host!r} (one of {', '.join(HOST_FORMATS)})")
