"""``mcp-sandbox call`` and ``mcp-sandbox tools``: an agent's MCP client, scriptable.

Given the server's URL and the agent's client id and credential (a secret in an environment variable, or a
private key file), it finds the authorization server through the server's metadata, gets a token and makes
one call with the official MCP SDK client. ``--as <agent-id> -t <tenant>`` takes the client id and issuer
of a sandbox agent from the broker (the credential still comes from the environment or a file).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sandbox.agent.client_auth import ClientSecretCredential, Credential, PrivateKeyCredential
from sandbox.agent.session import agent_session, obtain_token
from sandbox.cli_errors import fail, guarded
from sandbox.config import load_settings
from sandbox.errors import SandboxError

DEFAULT_SECRET_ENV = "MCP_AGENT_CLIENT_SECRET"  # the variable generated configs name by default

T = TypeVar("T")

Url = Annotated[str | None, typer.Option("--url", help="The MCP server (default: the sandbox's reference server).")]
ClientId = Annotated[str | None, typer.Option("--client-id", help="The agent's client id.")]
SecretEnv = Annotated[
    str | None, typer.Option("--secret-env", help=f"Read the client secret from this variable ({DEFAULT_SECRET_ENV}).")
]
KeyFile = Annotated[Path | None, typer.Option("--key-file", help="The agent's private key: a JWK (JSON) or PEM file.")]
Issuer = Annotated[str | None, typer.Option("--issuer", help="The authorization server, when several are listed.")]
Scope = Annotated[str | None, typer.Option("--scope", help="Ask for these scopes (default: the agent's own).")]
As = Annotated[
    str | None, typer.Option("--as", help="A sandbox agent's id (with -t): client id and issuer from the broker.")
]
Tenant = Annotated[str | None, typer.Option("--tenant", "-t", help="The sandbox agent's tenant (with --as).")]
BrokerToken = Annotated[
    str | None, typer.Option("--token", envvar="SANDBOX_BROKER_TOKEN", help="Admin token, for --as.")
]


@dataclass(frozen=True)
class Target:
    """Which server to call, as whom."""

    url: str
    credential: Credential
    issuer: str | None


def register(app: typer.Typer) -> None:
    app.command(name="call")(call)
    app.command(name="tools")(tools)


def call(
    tool: Annotated[str, typer.Argument(help="The tool to call.")],
    arguments: Annotated[str, typer.Argument(help="Its arguments as a JSON object.")] = "{}",
    url: Url = None,
    client_id: ClientId = None,
    secret_env: SecretEnv = None,
    key_file: KeyFile = None,
    issuer: Issuer = None,
    scope: Scope = None,
    agent: As = None,
    tenant: Tenant = None,
    token: BrokerToken = None,
) -> None:
    """Call one tool as an agent; prints the result as JSON, or the server's refusal (exit 1)."""
    try:
        parsed = json.loads(arguments)
        if not isinstance(parsed, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        fail(SandboxError(f"the arguments are not a JSON object ({exc})", """pass them like '{"days": 3}'"""))
    target = _target(url, client_id, secret_env, key_file, issuer, agent, tenant, token)

    async def act() -> dict[str, Any]:
        async with agent_session(target.url, target.credential, issuer=target.issuer, scope=scope) as mcp:
            result = await mcp.call_tool(tool, parsed)
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)

    result = _run(act)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if result.get("isError"):
        fail(SandboxError(f"the tool {tool} answered with an error", "see the result above"))


def tools(
    url: Url = None,
    client_id: ClientId = None,
    secret_env: SecretEnv = None,
    key_file: KeyFile = None,
    issuer: Issuer = None,
    scope: Scope = None,
    agent: As = None,
    tenant: Tenant = None,
    token: BrokerToken = None,
) -> None:
    """List the tools the agent may call, one name per line (the server's tools/list as the agent sees it)."""
    target = _target(url, client_id, secret_env, key_file, issuer, agent, tenant, token)

    async def act() -> list[str]:
        async with agent_session(target.url, target.credential, issuer=target.issuer, scope=scope) as mcp:
            listed = await mcp.list_tools()
        return [tool.name for tool in listed.tools]

    sys.stdout.write("".join(f"{name}\n" for name in _run(act)))


def _target(
    url: str | None,
    client_id: str | None,
    secret_env: str | None,
    key_file: Path | None,
    issuer: str | None,
    agent: str | None,
    tenant: str | None,
    token: str | None,
) -> Target:
    settings = load_settings()
    if agent is not None:
        if tenant is None:
            fail(SandboxError("--as needs the agent's tenant", "add -t <tenant>"))
        client_id, agents_issuer = guarded(lambda: _sandbox_agent(settings.broker_url, tenant, agent, token))
        issuer = issuer or agents_issuer
    if not client_id:
        fail(SandboxError("no agent given", "pass --client-id ID (or --as AGENT-ID -t TENANT)"))
    credential = guarded(lambda: agent_credential(client_id, secret_env, key_file))
    return Target(url or settings.mcp_url, credential, issuer)


def agent_credential(client_id: str, secret_env: str | None, key_file: Path | None) -> Credential:
    """The agent's credential from a private key file, or from a secret in an environment variable."""
    if key_file is not None:
        try:
            text = key_file.expanduser().read_text()
        except OSError as exc:
            raise SandboxError(f"cannot read the key file {key_file} ({exc.strerror})", "check --key-file") from None
        return _key(client_id, text)
    variable = secret_env or DEFAULT_SECRET_ENV
    secret = os.environ.get(variable)
    if not secret:
        raise SandboxError(
            f"no client secret in the environment variable {variable}",
            f"export {variable}=<the agent's secret>, or pass --secret-env VAR or --key-file FILE",
        )
    return ClientSecretCredential(client_id, secret)


def _key(client_id: str, text: str) -> PrivateKeyCredential:
    if "-----BEGIN" in text:
        return PrivateKeyCredential.from_pem(client_id, text)
    try:
        jwk = json.loads(text)
    except ValueError:
        raise SandboxError(
            "the key file is neither a JWK (JSON) nor a PEM key", "give the agent's private key"
        ) from None
    if not isinstance(jwk, dict) or "d" not in jwk:
        raise SandboxError(
            "the key file holds no private JWK (no 'd')", "give the agent's private key, not its public one"
        )
    return PrivateKeyCredential(client_id, jwk)


def _sandbox_agent(broker_url: str, tenant: str, agent_id: str, token: str | None) -> tuple[str, str]:
    """A sandbox agent's client id, and the issuer of its tokens (its tenant's realm, or the tenant's Hydra)."""
    from sandbox.admin.client import BrokerClient

    with BrokerClient(broker_url, token) as client:
        found = client.get(f"/tenants/{tenant}/agents/{agent_id}")
        tenants = client.get("/tenants")
    issuer = next((str(t["agents_issuer"]) for t in tenants if t.get("tenant") == tenant), None)
    if issuer is None:
        raise SandboxError(f"the broker lists no tenant {tenant!r} for this token", "check -t and --token")
    return str(found["client_id"]), issuer


def _run(action: Callable[[], Awaitable[T]]) -> T:
    return guarded(lambda: asyncio.run(action()))  # type: ignore[arg-type]


def token(
    agent_id: Annotated[str | None, typer.Argument(help="A sandbox agent's id (with -t); or use --client-id.")] = None,
    tenant: Tenant = None,
    client_id: ClientId = None,
    secret_env: SecretEnv = None,
    key_file: KeyFile = None,
    issuer: Issuer = None,
    server: Annotated[
        str | None, typer.Option("--server", help="The MCP server the token is for (default: the reference server).")
    ] = None,
    scope: Scope = None,
    header_json: Annotated[
        bool, typer.Option("--header-json", help='Print {"Authorization": "Bearer …"} (for a host\'s header helper).')
    ] = False,
    broker_token: BrokerToken = None,
) -> None:
    """Print a fresh access token of the agent for one MCP server (for curl, and hosts' header helpers)."""
    target = _target(server, client_id, secret_env, key_file, issuer, agent_id, tenant, broker_token)

    async def act() -> str:
        obtained = await obtain_token(target.url, target.credential, issuer=target.issuer, scope=scope)
        return obtained.token.access_token

    access_token = _run(act)
    if header_json:
        sys.stdout.write(json.dumps({"Authorization": f"Bearer {access_token}"}) + "\n")
    else:
        sys.stdout.write(access_token + "\n")
