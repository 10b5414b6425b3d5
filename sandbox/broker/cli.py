"""The broker's commands: ``broker serve``, ``admin login``, ``tenants``, ``agents``, ``apply``, ``audit``.

Admin commands call the broker's HTTP API with a bearer token from ``--token`` or SANDBOX_BROKER_TOKEN
(get one with ``mcp-sandbox admin login``). Answers are printed as JSON; credentials appear once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from sandbox.admin.apply import apply_agents_file
from sandbox.admin.client import BrokerClient
from sandbox.agent.mcp_config import McpClientConfig
from sandbox.agent.pickup import PickupFailed, pick_up_secret, write_secret_file
from sandbox.broker import audit, tables
from sandbox.broker.agent_cli import token as agent_token
from sandbox.broker.configs import HOST_FILES, HOST_FORMATS, host_config
from sandbox.broker.schemas import MAX_MOVE_DAYS, AgentMode, AgentStatus, CredentialType, ReviewDecision
from sandbox.broker.store import Database, default_database_url
from sandbox.cli_errors import fail, guarded, writable_file
from sandbox.cli_output import OutputOption, chosen, emit
from sandbox.config import Settings, load_settings
from sandbox.errors import SandboxError
from sandbox.idp.provider import Binding
from sandbox.issued import stored_on_purpose

err = Console(stderr=True, soft_wrap=True)

Token = Annotated[
    str | None,
    typer.Option("--token", envvar="SANDBOX_BROKER_TOKEN", help="Admin bearer token (mcp-sandbox admin login)."),
]
TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="The tenant (Keycloak realm).")]
Reason = Annotated[str, typer.Option("--reason", help="Why; kept in the audit log.")]

broker_app = typer.Typer(help="The credential broker service.", no_args_is_help=True)
admin_app = typer.Typer(help="Tenant admins: log in through Keycloak.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants (one Keycloak realm each).", no_args_is_help=True)
agents_app = typer.Typer(help="Agent identities: provision, change, rotate, revoke, review.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
users_app = typer.Typer(help="People of a tenant who let delegated agents act for them.", no_args_is_help=True)
clock_app = typer.Typer(help="A tenant's clock: show it, move it forward (sandbox only).", no_args_is_help=True)
servers_app = typer.Typer(
    help="MCP servers (resource servers) agents may get as audience; they receive revocation events.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the broker's command groups (and ``apply``) to the ``mcp-sandbox`` command."""
    app.add_typer(broker_app, name="broker")
    app.add_typer(admin_app, name="admin")
    app.add_typer(tenants_app, name="tenants")
    app.add_typer(agents_app, name="agents")
    app.add_typer(audit_app, name="audit")
    app.add_typer(servers_app, name="servers")
    app.add_typer(clock_app, name="clock")
    app.add_typer(users_app, name="users")
    app.command(name="apply")(apply_command)


def _settings() -> Settings:
    return guarded(load_settings)


def _emit(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _call(token: str | None, action: Any) -> Any:
    """Run ``action(client)`` against the configured broker, printing errors as one line."""
    settings = _settings()
    try:
        with BrokerClient(settings.broker_url, token) as client:
            result = action(client)
    except SandboxError as error:
        fail(error)
    return result


# broker
@broker_app.command("serve")
def serve() -> None:
    """Run the broker in the foreground on SANDBOX_HOST:SANDBOX_BROKER_PORT (the stack runs it for you)."""
    from sandbox.broker.__main__ import main

    main()


@broker_app.command("policy")
def show_policy(token: Token = None) -> None:
    """The roles and policy in force."""
    _emit(_call(token, lambda c: c.get("/policy")))


# admin
@admin_app.command("login")
def login(
    tenant: TenantOption,
    username: Annotated[str, typer.Option("--username", "-u", help="The admin's username in the realm.")] = "admin",
    password_env: Annotated[str | None, typer.Option(help="Read the password from this variable.")] = None,
    otp_secret_env: Annotated[str | None, typer.Option(help="Read the base32 TOTP secret from this variable.")] = None,
    otp: Annotated[str | None, typer.Option(help="The current one-time code, typed by hand.")] = None,
) -> None:
    """Log in through the tenant realm's login form (with OTP) and print an access token.

    Without --password-env, the sandbox admin of a sandbox tenant uses the stack's secrets file.
    Use it as: export SANDBOX_BROKER_TOKEN=$(mcp-sandbox admin login -t acme)
    """
    from sandbox.admin.login import admin_login
    from sandbox.stack_secrets import Secrets, admin_secret_names, otp_base32

    settings = _settings()
    password = _from_environment(password_env, "--password-env", "the admin's password")
    otp_secret = _from_environment(otp_secret_env, "--otp-secret-env", "the admin's base32 TOTP secret")
    if password is None and tenant not in settings.tenants:
        fail(
            SandboxError(
                f"no tenant {tenant} (sandbox tenants: {', '.join(settings.tenants) or 'none'})",
                "name one of them, or pass --password-env VAR for an admin of a tenant made with `tenants create`",
            )
        )
    if password is None:
        password_name, otp_name = admin_secret_names(tenant, username)
        secrets = Secrets(settings)
        password = secrets.get(password_name)
        raw = secrets.get(otp_name)
        otp_secret = otp_secret or (otp_base32(raw) if raw else None)
    if password is None:
        fail(SandboxError(f"no password for {username} of {tenant}", "pass --password-env VAR"))
        return
    try:
        tokens = asyncio.run(admin_login(settings.issuer(tenant), username, password, otp_secret, otp_code=otp))
    except SandboxError as error:
        fail(error)
        return
    sys.stdout.write(tokens.access_token + "\n")


def _from_environment(variable: str | None, option: str, what: str) -> str | None:
    """The value of the variable an option names; an option naming an unset variable is an error, not ignored."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        fail(SandboxError(f"{option} {variable}: the variable is not set", f"export {variable} with {what}"))
    return value


# tenants
@tenants_app.command("create")
def create_tenant(
    name: str,
    admin: Annotated[list[str], typer.Option("--admin", help="An admin with OTP (repeatable).")] = [],  # noqa: B006
    admin_without_otp: Annotated[
        list[str], typer.Option("--admin-without-otp", help="An admin with only a password (repeatable).")
    ] = [],  # noqa: B006
    token: Token = None,
) -> None:
    """Create a tenant (operator token). Prints each admin's initial password and TOTP secret once."""
    admins = [{"username": a, "otp": True} for a in admin] + [{"username": a, "otp": False} for a in admin_without_otp]
    _emit(_call(token, lambda c: c.post("/tenants", {"name": name, "admins": admins})))


@tenants_app.command("list")
def list_tenants(token: Token = None, output: OutputOption = None) -> None:
    """The tenants this login may see (the operator sees all)."""
    emit(_call(token, lambda c: c.get("/tenants")), output, tables.TENANTS)


@tenants_app.command("delete")
def delete_tenant(
    name: Annotated[str, typer.Argument(help="The tenant (realm) to delete.")], token: Token = None
) -> None:
    """Delete a tenant (operator token): its live agents are revoked, its realm removed; its audit log stays."""
    _call(token, lambda c: c.request("DELETE", f"/tenants/{name}"))
    err.print(f"deleted tenant {name}", highlight=False)


# users
@users_app.command("add")
def add_user(
    tenant: TenantOption,
    username: Annotated[str, typer.Argument(help="The person's username in the realm.")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="A tool scope the user holds (repeatable); agents get no more.")
    ] = [],  # noqa: B006
    otp: Annotated[bool, typer.Option("--otp", help="Give the user a TOTP second factor too.")] = False,
    token: Token = None,
) -> None:
    """Add a user to the tenant; their initial password (and TOTP secret) is printed once."""
    body = {"username": username, "scopes": scope, "otp": otp}
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/users", body)))


# clock
@clock_app.command("show")
def show_clock(tenant: TenantOption, token: Token = None) -> None:
    """The tenant's time (what dormancy, graces and its audit use) and how far it was moved."""
    _emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/clock")))


@clock_app.command("advance")
def advance_clock(
    tenant: TenantOption,
    days: Annotated[float, typer.Option(min=0, max=MAX_MOVE_DAYS, help="Days to move forward.")] = 0,
    hours: Annotated[float, typer.Option(min=0, max=MAX_MOVE_DAYS * 24, help="Hours to move forward.")] = 0,
    minutes: Annotated[float, typer.Option(min=0, max=MAX_MOVE_DAYS * 1440, help="Minutes to move forward.")] = 0,
    reason: Reason = "",
    token: Token = None,
) -> None:
    """Move the tenant's clock forward (sandbox brokers only), e.g. to see an agent go dormant."""
    body = {"advance": {"days": days, "hours": hours, "minutes": minutes}, "reason": reason}
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/clock", body)))


# servers
@servers_app.command("list")
def list_servers(token: Token = None, output: OutputOption = None) -> None:
    """The registered MCP servers: a new agent's audience is all of them unless provisioned for fewer."""
    emit(_call(token, lambda c: c.get("/resource-servers")), output, tables.SERVERS)


@servers_app.command("register")
def register_server(
    url: Annotated[str, typer.Argument(help="The server's canonical URL, e.g. http://127.0.0.1:9000/mcp.")],
    events_url: Annotated[
        str | None, typer.Option(help="Where it takes revocation events (RFC 8935 push); none if it takes none.")
    ] = None,
    token: Token = None,
) -> None:
    """Register an MCP server (operator token): agents provisioned from now on get it as audience."""
    _emit(_call(token, lambda c: c.post("/resource-servers", {"url": url, "events_url": events_url})))


@servers_app.command("unregister")
def unregister_server(
    url: Annotated[str, typer.Argument(help="The canonical URL it was registered with.")], token: Token = None
) -> None:
    """Forget an MCP server (operator token): new agents no longer get it as audience, nor it revocation events."""
    _call(token, lambda c: c.request("DELETE", "/resource-servers", params={"url": url}))
    err.print(f"unregistered {url}", highlight=False)


# agents
@agents_app.command("list")
def list_agents(
    tenant: TenantOption,
    status: Annotated[AgentStatus | None, typer.Option(help="Only agents with this status.")] = None,
    token: Token = None,
    output: OutputOption = None,
) -> None:
    """The tenant's agents (optionally only those with a status, e.g. dormant)."""
    emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/agents", status=status)), output, tables.AGENTS)


@agents_app.command("show")
def show_agent(tenant: TenantOption, agent_id: str, token: Token = None) -> None:
    """One agent: its role, scopes, audiences, status and history marks (JSON)."""
    _emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/agents/{agent_id}")))


@agents_app.command("roles")
def roles(token: Token = None, output: OutputOption = None) -> None:
    """The roles of the policy, with their scopes per environment."""
    found = _call(token, lambda c: c.get("/policy"))["roles"]
    if chosen(output) == "json":
        emit(found, "json")
    else:
        emit(tables.role_rows(found), "table", tables.ROLES)


@agents_app.command("provision")
def provision(
    tenant: TenantOption,
    name: Annotated[str, typer.Option("--name", help="Lowercase letters, digits and dashes.")],
    owner: Annotated[str, typer.Option("--owner", help="Who answers for the agent, e.g. a team's address.")],
    role: Annotated[str, typer.Option("--role", help="A role of the policy (mcp-sandbox agents roles).")],
    environment: Annotated[str, typer.Option("--environment", "-e", help="An environment of the role.")] = "staging",
    mode: Annotated[AgentMode, typer.Option("--mode", help="Acts for itself, or for users who log in.")] = "autonomous",
    credential_type: Annotated[
        CredentialType, typer.Option("--credential-type", help="A secret, or a key pair (--jwk-file).")
    ] = "client_secret",
    jwk_file: Annotated[Path | None, typer.Option("--jwk-file", help="The agent's public JWK.")] = None,
    binding: Annotated[
        Binding,
        typer.Option(
            "--binding",
            help="bearer; dpop: its tokens are bound to a key it keeps (RFC 9449); mtls: to its TLS client certificate "
            "(RFC 8705).",
        ),
    ] = "bearer",
    metadata: Annotated[str, typer.Option("--metadata", help="JSON object.")] = "{}",
    token: Token = None,
) -> None:
    """Provision an agent; its credential is printed once."""
    body: dict[str, Any] = {
        "name": name,
        "owner": owner,
        "role": role,
        "environment": environment,
        "mode": mode,
        "credential_type": credential_type,
        "binding": binding,
        "metadata": _json_object(metadata, "--metadata"),
    }
    if jwk_file is not None:
        body["jwk"] = _jwk(jwk_file)
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents", body)))


@agents_app.command("role")
def change_role(
    tenant: TenantOption,
    agent_id: str,
    role: Annotated[str, typer.Option("--role", help="The new role (mcp-sandbox agents roles).")],
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Move it to this environment too.")
    ] = None,
    reason: Reason = "",
    token: Token = None,
) -> None:
    """Change an agent's role; its next token carries the new scopes."""
    body = {"role": role, "environment": environment, "reason": reason}
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/role", body)))


@agents_app.command("dependencies")
def dependencies(tenant: TenantOption, agent_id: str, token: Token = None) -> None:
    """The MCP servers the agent has used and the configs generated for it."""
    _emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/agents/{agent_id}/dependencies")))


@agents_app.command("rotate")
def rotate(
    tenant: TenantOption,
    agent_id: str,
    grace: Annotated[int, typer.Option("--grace", min=0, help="Seconds the old credential keeps working.")] = 300,
    jwk_file: Annotated[Path | None, typer.Option("--jwk-file", help="The new public JWK.")] = None,
    reason: Reason = "",
    token: Token = None,
) -> None:
    """Rotate an agent's credential; prints its dependencies first, then the new credential (once)."""

    body: dict[str, Any] = {"grace_seconds": grace, "reason": reason}
    if jwk_file is not None:
        body["jwk"] = _jwk(jwk_file)

    def act(client: BrokerClient) -> Any:
        found = client.get(f"/tenants/{tenant}/agents/{agent_id}/dependencies")
        servers = ", ".join(s["server"] for s in found["servers_used"]) or "none yet"
        written = [str(c["path"]) for c in found["configs"] if c.get("path")]
        printed = len(found["configs"]) - len(written)
        configs = ", ".join([*written, *([f"{printed} printed, not saved"] if printed else [])]) or "none"
        err.print(f"dependencies: MCP servers used: {servers}; generated configs: {configs}", highlight=False)
        return client.post(f"/tenants/{tenant}/agents/{agent_id}/rotate", body)

    _emit(_call(token, act))


@agents_app.command("delegations")
def delegations(tenant: TenantOption, agent_id: str, token: Token = None) -> None:
    """Which users let this delegated agent act for them, and with which scopes."""
    _emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/agents/{agent_id}/delegations")))


@agents_app.command("end-grace")
def end_grace(tenant: TenantOption, agent_id: str, reason: Reason = "", token: Token = None) -> None:
    """End a rotation's grace now: the old credential is rejected from here on."""
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/rotation/end", {"reason": reason})))


@agents_app.command("revoke")
def revoke(
    agent_id: str,
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="The tenant; default: the one of your login.")
    ] = None,
    reason: Reason = "",
    verify_token_env: Annotated[
        str | None, typer.Option(help="Variable holding an old access token of the agent, to verify 401s.")
    ] = None,
    token: Token = None,
) -> None:
    """Revoke an agent (idempotent)."""
    body: dict[str, Any] = {"reason": reason}
    if verify_token_env:
        body["verify_token"] = os.environ.get(verify_token_env)
    path = f"/tenants/{tenant}/agents/{agent_id}/revoke" if tenant else f"/revoke/{agent_id}"
    _emit(_call(token, lambda c: c.post(path, body)))


@agents_app.command("resume")
def resume(tenant: TenantOption, agent_id: str, reason: Reason = "", token: Token = None) -> None:
    """Give an agent an anomaly suspended its access back (needs an OTP login); `agents revoke` ends it instead."""
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/resume", {"reason": reason})))


@agents_app.command("approve")
def approve(tenant: TenantOption, agent_id: str, reason: Reason = "", token: Token = None) -> None:
    """Approve a pending agent (not its requester; needs an OTP login)."""
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/approve", {"reason": reason})))


@agents_app.command("deny")
def deny(tenant: TenantOption, agent_id: str, reason: Reason = "", token: Token = None) -> None:
    """Deny a pending agent: it is rejected and never gets a credential."""
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/deny", {"reason": reason})))


@agents_app.command("scan-dormancy")
def scan_dormancy(tenant: TenantOption, token: Token = None) -> None:
    """Mark agents idle for their role's dormancy period dormant (they enter the review queue)."""
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/dormancy/scan")))


@agents_app.command("review-queue")
def review_queue(tenant: TenantOption, token: Token = None, output: OutputOption = None) -> None:
    """Dormant agents (agents review … --decision keep|revoke) and agents due for an access review by risk tier
    (agents access-review …)."""
    emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/review-queue")), output, tables.REVIEW_QUEUE)


@agents_app.command("review")
def review(
    tenant: TenantOption,
    agent_id: str,
    decision: Annotated[ReviewDecision, typer.Option("--decision", help="keep (re-enable) or revoke.")],
    reason: Reason = "",
    token: Token = None,
) -> None:
    """Decide on a dormant agent: keep it (enabled again) or revoke it."""
    body = {"decision": decision, "reason": reason}
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/review", body)))


# Lifecycle policy: access reviews by risk tier, and the agent's side of an automatic rotation.
@agents_app.command("access-review")
def access_review(
    tenant: TenantOption,
    agent_id: str,
    accept: Annotated[bool, typer.Option("--accept", help="Accept: remove the recommended scopes.")] = False,
    remove_scope: Annotated[
        list[str] | None, typer.Option("--remove-scope", help="Accept removing only this recommended scope (repeat).")
    ] = None,
    reason: Reason = "",
    token: Token = None,
) -> None:
    """An agent's access review: the scopes it did not use in its risk tier's interval; --accept removes them."""
    path = f"/tenants/{tenant}/agents/{agent_id}/access-review"
    if not accept and not remove_scope:
        _emit(_call(token, lambda c: c.get(path)))
        return
    body = {"remove_scopes": remove_scope or None, "reason": reason}
    _emit(_call(token, lambda c: c.post(path, body)))


@agents_app.command("pickup")
def pickup(
    client_id: Annotated[str, typer.Option("--client-id", help="The agent's client id.")],
    secret_file: Annotated[
        Path, typer.Option("--secret-file", help="The file holding the agent's secret; rewritten with the new one.")
    ],
) -> None:
    """Take the new secret of the broker's automatic rotation with the old one (in its grace); write it to the file."""
    fix = "give the file that holds the agent's current secret (text, one line)"
    try:
        current = secret_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        fail(SandboxError(f"cannot read the secret file {secret_file} ({type(exc).__name__})", fix))
    if not current:
        fail(SandboxError(f"the secret file {secret_file} is empty", fix))
    settings = _settings()

    async def run() -> str | None:
        async with httpx.AsyncClient(timeout=30) as http:
            return await pick_up_secret(http, settings.broker_url, client_id, current)

    try:
        new = asyncio.run(run())
    except PickupFailed as error:
        fail(SandboxError(str(error), "check that the broker runs (mcp-sandbox status) and retry"))
    if new is None:
        _emit({"client_id": client_id, "picked_up": False, "detail": "no new secret awaits this client"})
        return
    write_secret_file(secret_file, new)
    _emit({"client_id": client_id, "picked_up": True, "secret_file": str(secret_file)})


@agents_app.command("monitor")
def monitor(
    tenant: TenantOption, agent_id: Annotated[str | None, typer.Argument()] = None, token: Token = None
) -> None:
    """Failed token requests, denied tool calls and unused scopes (one agent, or all of the tenant's)."""
    path = f"/tenants/{tenant}/agents/{agent_id}/monitoring" if agent_id else f"/tenants/{tenant}/monitoring"
    _emit(_call(token, lambda c: c.get(path)))


@agents_app.command("config")
def config(
    tenant: TenantOption,
    agent_id: str,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the config here (and record it).")] = None,
    host: Annotated[str, typer.Option("--format", help=f"The host that reads it: {', '.join(HOST_FORMATS)}.")] = "json",
    server: Annotated[
        str | None, typer.Option("--server", help="The MCP server (default: the agent's first, the reference server).")
    ] = None,
    credential_env: Annotated[str | None, typer.Option(help="Name the secret by this environment variable.")] = None,
    credential_file: Annotated[str | None, typer.Option(help="Name the key (or secret) by this file path.")] = None,
    token_env: Annotated[
        str | None, typer.Option(help="Hosts: read the bearer token from this variable (filled by `agents token`).")
    ] = None,
    token: Token = None,
) -> None:
    """Generate the agent's MCP config for one server, in the shape a host reads (never containing the secret)."""
    if host not in HOST_FORMATS:
        fail(SandboxError(f"unknown --format {host!r}", f"use one of {', '.join(HOST_FORMATS)}"))
    if out is not None:
        guarded(lambda: writable_file(out, "--out"))
    body: dict[str, Any] = {"path": str(out.resolve()) if out else None}
    if credential_env:
        body.update(credential_source="env", credential_reference=credential_env)
    elif credential_file:
        body.update(credential_source="file", credential_reference=credential_file)
    answer = _call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/mcp-config", body))
    generated = guarded(lambda: McpClientConfig.read(answer, "the broker's answer"))
    try:
        shaped = host_config(host, generated, server or _default_server(generated), token_env=token_env)
    except ValueError as exc:
        fail(SandboxError(str(exc), "pick one of its servers with --server"))
    if out is None:
        _emit(shaped)
        return
    out.write_text(json.dumps(shaped, indent=2) + "\n")
    err.print(f"wrote {out}" + (f" (the host reads {HOST_FILES[host]})" if host in HOST_FILES else ""), highlight=False)


def _default_server(generated: McpClientConfig) -> str | None:
    """The reference server when the agent may call it, else its first server."""
    urls = [entry.url for entry in generated.mcp_servers.values()]
    preferred = _settings().mcp_url
    return preferred if preferred in urls else (urls[0] if urls else None)


agents_app.command("token")(agent_token)


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        fail(
            SandboxError(f"{option} {text!r} is not a JSON object", f"""give one, e.g. {option} '{{"team": "ops"}}'""")
        )
    return value


def _jwk(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        fail(SandboxError(f"cannot read --jwk-file {path}: {exc.strerror}", "check the path"))
    except UnicodeDecodeError:
        text = ""  # not text: reported below as not a JWK
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or "kty" not in value:
        fail(SandboxError(f"--jwk-file {path} is not a JSON Web Key", 'give a public JWK file: {"kty": …}'))
    return value


# apply
def apply_command(
    file: Annotated[Path, typer.Argument(help="The agents file (agents.yaml).")],
    plan_only: Annotated[bool, typer.Option("--plan", help="Show the changes; change nothing.")] = False,
    credentials_dir: Annotated[
        Path | None, typer.Option(help="Write new agents' credentials here (mode 0600) instead of printing them.")
    ] = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there were changes (0: none, 1: an error).")
    ] = False,
    token: Token = None,
) -> None:
    """Bring a tenant's agents to the state the file declares (policy-checked first; idempotent)."""
    changed = False

    def act(client: BrokerClient) -> Any:
        nonlocal changed
        plan, result = apply_agents_file(client, file, plan_only=plan_only)
        sys.stderr.write(plan.describe() + "\n")
        changed = not plan.empty
        return result

    result = _call(token, act)
    if credentials_dir is not None and result.get("credentials"):
        credentials_dir.mkdir(parents=True, exist_ok=True)
        for name, credential in result.pop("credentials").items():
            target = credentials_dir / f"{name}.json"
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(json.dumps(credential, indent=2) + "\n")
            stored_on_purpose(target)  # for a test run's secret scan: this file is the agent's, not a leak
        result["credentials_written_to"] = str(credentials_dir)
    _emit(result)
    if detailed_exitcode and changed:
        raise typer.Exit(2)


# audit
@audit_app.command("verify")
def verify(
    database_url: Annotated[
        str | None, typer.Option(help="The broker database (default: SANDBOX_BROKER_DATABASE_URL or the stack's).")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant's chain.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (still exit 1 if tampered).")
    ] = False,
) -> None:
    """Recompute every tenant's hash chain; exit 1 and name the entries if any was tampered with."""
    settings = _settings()
    db = guarded(
        lambda: Database.existing(database_url or settings.broker_database_url or default_database_url(settings))
    )
    try:
        with db.session() as session:
            report = audit.verify(session, tenant)
    except SandboxError as error:
        fail(error)
        return
    finally:
        db.dispose()
    if as_json:
        summary = {"ok": report.ok, "entries": report.entries, "chains": report.tenants, "problems": report.problems}
        _emit(summary)
    if tenant is not None and report.entries == 0 and report.ok:
        fail(SandboxError(f"no audit entries of tenant {tenant}", "check the tenant's name (mcp-sandbox tenants list)"))
    if report.ok:
        if not as_json:
            sys.stdout.write(f"audit log intact: {report.entries} entries in {report.tenants} chains\n")
        return
    for problem in report.problems:
        err.print(f"[red]tampered:[/] {problem}", highlight=False)
    fail(
        SandboxError(
            f"the audit log was tampered with ({len(report.problems)} broken entries of {report.entries})",
            "restore the database from a backup and investigate who changed it",
        )
    )


@audit_app.command("show")
def show_audit(
    tenant: TenantOption,
    agent_id: Annotated[str | None, typer.Option(help="Only this agent's entries.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action, or a family of them: agent.revoked, or agent.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only entries at or after this time (ISO 8601, e.g. 2026-01-31T09:00Z).")
    ] = None,
    token: Token = None,
    output: OutputOption = None,
) -> None:
    """The tenant's audit entries, oldest first (-o jsonl: one JSON object a line, for log tools)."""
    after = _instant(since, "--since") if since else None
    found = _call(token, lambda c: c.get(f"/tenants/{tenant}/audit", agent_id=agent_id))
    if action:
        found = [e for e in found if e["action"] == action or e["action"].startswith(action.rstrip(".") + ".")]
    if after is not None:
        found = [e for e in found if _instant(e["at"], "at") >= after]
    emit(found, output, tables.AUDIT)


def _instant(text: str, option: str) -> datetime:
    """An ISO 8601 time, in UTC when it names no zone."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(
            SandboxError(f"{option} {text!r} is not an ISO 8601 time", "give one like 2026-01-31 or 2026-01-31T09:00Z")
        )
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
