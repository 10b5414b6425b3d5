"""MCP client configs for an agent (:class:`sandbox.agent.mcp_config.McpClientConfig`): servers, allowed tools,
token endpoint, and where the credential is; and the same config in the shape each MCP host reads.
"""

from __future__ import annotations

from typing import Any, Literal

from sandbox.agent.mcp_config import AgentName, CredentialSource, McpClientConfig, ServerAuth, ServerEntry
from sandbox.toolmap import ToolMap

DEFAULT_SECRET_ENV = "MCP_AGENT_CLIENT_SECRET"
DEFAULT_KEY_FILE = "~/.config/mcp-agents/{name}.private.jwk"


def allowed_tools(tools: ToolMap, scopes: list[str], environment: str) -> list[str]:
    """The tools an agent with ``scopes`` may call (for per-environment tools: in its environment)."""
    return sorted(name for name, tool in tools.tools.items() if tool.scope_for(environment) in scopes)


def credential_reference(
    credential_type: Literal["client_secret", "private_key_jwt"],
    name: str,
    *,
    source: Literal["env", "file"] | None = None,
    reference: str | None = None,
) -> CredentialSource:
    """Where the MCP client reads the credential: an environment variable (secrets) or a file (keys)."""
    source = source or ("env" if credential_type == "client_secret" else "file")
    if source == "env":
        return CredentialSource(type=credential_type, env=reference or DEFAULT_SECRET_ENV)
    return CredentialSource(type=credential_type, file=reference or DEFAULT_KEY_FILE.format(name=name))


def mcp_client_config(
    *,
    name: str,
    client_id: str,
    issuer: str,
    token_endpoint: str,
    servers: list[str],
    tools: list[str],
    scopes: list[str],
    credential: CredentialSource,
    audience_parameter: bool = False,
) -> McpClientConfig:
    """A config in the common ``mcpServers`` shape, with OAuth client-credentials settings per server.

    ``audience_parameter``: the authorization server takes no RFC 8707 ``resource=`` (Ory Hydra) but grants a
    token's ``aud`` on ``audience=``; each server's ``auth`` then also names its ``audience``, so the client asks
    for the server in the terms its authorization server understands."""
    return McpClientConfig(
        mcp_servers={
            _server_key(url, index): ServerEntry(
                url=url,
                allowed_tools=tools,
                auth=ServerAuth(
                    issuer=issuer,
                    token_endpoint=token_endpoint,
                    client_id=client_id,
                    scope=" ".join(scopes),
                    resource=url,
                    audience=url if audience_parameter else None,
                    credential=credential,
                ),
            )
            for index, url in enumerate(servers)
        },
        agent=AgentName(name=name, client_id=client_id),
    )


def _server_key(url: str, index: int) -> str:
    host = url.split("://", 1)[-1].split("/", 1)[0].replace(":", "-")
    return f"{host}-{index}" if index else host


# Host formats: the file each MCP host reads, for one server, with the credential by reference.

HOST_FORMATS = ("json", "claude-code", "vscode", "cursor")
#: Where each host reads the generated file (project scope), for the docs and the CLI's hint.
HOST_FILES = {"claude-code": ".mcp.json", "vscode": ".vscode/mcp.json", "cursor": ".cursor/mcp.json"}
DEFAULT_TOKEN_ENV = "MCP_AGENT_TOKEN"


def token_command(auth: ServerAuth, server_url: str, *, header_json: bool = False) -> str:
    """The ``mcp-sandbox agents token`` command that prints a fresh token for one server (secret by reference)."""
    source = auth.credential
    credential = f"--key-file {source.file}" if source.file is not None else f"--secret-env {source.env}"
    command = f"mcp-sandbox agents token --client-id {auth.client_id} --issuer {auth.issuer} "
    command += f"--server {server_url} {credential}"
    return command + (" --header-json" if header_json else "")


def host_config(
    host: str, config: McpClientConfig, server_url: str | None = None, *, token_env: str | None = None
) -> dict[str, Any]:
    """One server of a generated config, as the JSON document ``host`` reads.

    ``json`` keeps the sandbox's own shape (with its ``auth`` block, for the sandbox's SDK loader). The hosts
    get a bearer token by reference: Claude Code runs a ``headersHelper`` command (``agents token
    --header-json``) unless ``token_env`` names a variable holding the token; VS Code (``${env:…}``) and Cursor
    (``${env:…}``) read it from ``token_env`` (default MCP_AGENT_TOKEN), which ``agents token`` fills.
    """
    key, entry = config.server(server_url)
    name = f"{config.agent.name}-{key}"
    if host == "json":
        return McpClientConfig(mcp_servers={key: entry}, agent=config.agent).document()
    url = entry.url
    variable = token_env or DEFAULT_TOKEN_ENV
    if host == "claude-code":
        access = (
            {"headers": {"Authorization": f"Bearer ${{{variable}}}"}}
            if token_env
            else {"headersHelper": token_command(entry.auth, url, header_json=True)}
        )
        return {"mcpServers": {name: {"type": "http", "url": url, **access}}}
    headers = {"Authorization": f"Bearer ${{env:{variable}}}"}
    if host == "vscode":
        return {"servers": {name: {"type": "http", "url": url, "headers": headers}}}
    if host == "cursor":
        return {"mcpServers": {name: {"url": url, "headers": headers}}}
    raise ValueError(f"unknown host format {host!r} (one of {', '.join(HOST_FORMATS)})")
