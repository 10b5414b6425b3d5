"""The broker's commands: ``broker serve``, ``admin login``, ``tenants``, ``agents``, ``apply``, ``audit``.

Admin commands call the broker's HTTP API with a bearer token from ``--token`` or SANDBOX_BROKER_TOKEN
(get one with ``mcp-sandbox admin login``). Answers are printed as JSON; credentials appear once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sandbox.admin.apply import apply_agents_file
from sandbox.admin.client import BrokerClient
from sandbox.broker import audit
from sandbox.broker.store import Database, default_database_url
from sandbox.config import Settings, load_settings
from sandbox.errors import SandboxError
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


def register(app: typer.Typer) -> None:
    """Add the broker's command groups (and ``apply``) to the ``mcp-sandbox`` command."""
    app.add_typer(broker_app, name="broker")
    app.add_typer(admin_app, name="admin")
    app.add_typer(tenants_app, name="tenants")
    app.add_typer(agents_app, name="agents")
    app.add_typer(audit_app, name="audit")
    app.command(name="apply")(apply_command)


def _settings() -> Settings:
    try:
        return load_settings()
    except ValueError as exc:
        _fail(SandboxError(f"invalid settings: {exc}".replace("\n", " "), "fix the SANDBOX_* variable named"))
        raise


def _fail(error: SandboxError) -> None:
    err.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _emit(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _call(token: str | None, action: Any) -> Any:
    """Run ``action(client)`` against the configured broker, printing errors as one line."""
    settings = _settings()
    try:
        with BrokerClient(settings.broker_url, token) as client:
            result = action(client)
    except SandboxError as error:
        _fail(error)
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
    username: Annotated[str, typer.Option("--username", "-u")] = "admin",
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
    password = os.environ.get(password_env) if password_env else None
    otp_secret = os.environ.get(otp_secret_env) if otp_secret_env else None
    if password is None:
        password_name, otp_name = admin_secret_names(tenant, username)
        secrets = Secrets(settings)
        password = secrets.get(password_name)
        raw = secrets.get(otp_name)
        otp_secret = otp_secret or (otp_base32(raw) if raw else None)
    if password is None:
        _fail(SandboxError(f"no password for {username} of {tenant}", "pass --password-env VAR"))
        return
    try:
        tokens = asyncio.run(admin_login(settings.issuer(tenant), username, password, otp_secret, otp_code=otp))
    except SandboxError as error:
        _fail(error)
        return
    sys.stdout.write(tokens.access_token + "\n")


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
def list_tenants(token: Token = None) -> None:
    _emit(_call(token, lambda c: c.get("/tenants")))


# agents
@agents_app.command("list")
def list_agents(tenant: TenantOption, status: str | None = None, token: Token = None) -> None:
    """The tenant's agents (optionally only those with a status, e.g. dormant)."""
    _emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/agents", status=status)))


@agents_app.command("show")
def show_agent(tenant: TenantOption, agent_id: str, token: Token = None) -> None:
    _emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/agents/{agent_id}")))


@agents_app.command("roles")
def roles(token: Token = None) -> None:
    """The roles of the policy, with their scopes per environment."""
    _emit(_call(token, lambda c: c.get("/policy"))["roles"])


@agents_app.command("provision")
def provision(
    tenant: TenantOption,
    name: Annotated[str, typer.Option("--name")],
    owner: Annotated[str, typer.Option("--owner")],
    role: Annotated[str, typer.Option("--role")],
    environment: Annotated[str, typer.Option("--environment", "-e")] = "staging",
    mode: Annotated[str, typer.Option("--mode")] = "autonomous",
    credential_type: Annotated[str, typer.Option("--credential-type")] = "client_secret",
    jwk_file: Annotated[Path | None, typer.Option("--jwk-file", help="The agent's public JWK.")] = None,
    metadata: Annotated[str, typer.Option("--metadata", help="JSON object.")] = "{}",
    token: Token = None,
) -> None:
    """Provision an agent; its credential is printed once."""
    try:
        body: dict[str, Any] = {
            "name": name,
            "owner": owner,
            "role": role,
            "environment": environment,
            "mode": mode,
            "credential_type": credential_type,
            "metadata": json.loads(metadata),
        }
        if jwk_file is not None:
            body["jwk"] = json.loads(jwk_file.read_text())
    except (OSError, ValueError) as exc:
        _fail(SandboxError(f"cannot read the agent's input: {exc}", "check --metadata JSON and --jwk-file"))
        return
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents", body)))


@agents_app.command("role")
def change_role(
    tenant: TenantOption,
    agent_id: str,
    role: Annotated[str, typer.Option("--role")],
    environment: Annotated[str | None, typer.Option("--environment", "-e")] = None,
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
    grace: Annotated[int, typer.Option("--grace", help="Seconds the old credential keeps working.")] = 300,
    jwk_file: Annotated[Path | None, typer.Option("--jwk-file", help="The new public JWK.")] = None,
    reason: Reason = "",
    token: Token = None,
) -> None:
    """Rotate an agent's credential; prints its dependencies first, then the new credential (once)."""

    def act(client: BrokerClient) -> Any:
        found = client.get(f"/tenants/{tenant}/agents/{agent_id}/dependencies")
        servers = ", ".join(s["server"] for s in found["servers_used"]) or "none yet"
        configs = ", ".join(str(c["path"]) for c in found["configs"]) or "none"
        err.print(f"dependencies: MCP servers used: {servers}; generated configs: {configs}", highlight=False)
        body: dict[str, Any] = {"grace_seconds": grace, "reason": reason}
        if jwk_file is not None:
            body["jwk"] = json.loads(jwk_file.read_text())
        return client.post(f"/tenants/{tenant}/agents/{agent_id}/rotate", body)

    _emit(_call(token, act))


@agents_app.command("end-grace")
def end_grace(tenant: TenantOption, agent_id: str, reason: Reason = "", token: Token = None) -> None:
    """End a rotation's grace now: the old credential is rejected from here on."""
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/rotation/end", {"reason": reason})))


@agents_app.command("revoke")
def revoke(
    agent_id: str,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
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


@agents_app.command("approve")
def approve(tenant: TenantOption, agent_id: str, reason: Reason = "", token: Token = None) -> None:
    """Approve a pending agent (not its requester; needs an OTP login)."""
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/approve", {"reason": reason})))


@agents_app.command("deny")
def deny(tenant: TenantOption, agent_id: str, reason: Reason = "", token: Token = None) -> None:
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/deny", {"reason": reason})))


@agents_app.command("scan-dormancy")
def scan_dormancy(tenant: TenantOption, token: Token = None) -> None:
    """Mark agents idle for their role's dormancy period dormant (they enter the review queue)."""
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/dormancy/scan")))


@agents_app.command("review-queue")
def review_queue(tenant: TenantOption, token: Token = None) -> None:
    _emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/review-queue")))


@agents_app.command("review")
def review(
    tenant: TenantOption,
    agent_id: str,
    decision: Annotated[str, typer.Option("--decision", help="keep or revoke")],
    reason: Reason = "",
    token: Token = None,
) -> None:
    body = {"decision": decision, "reason": reason}
    _emit(_call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/review", body)))


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
    credential_env: Annotated[str | None, typer.Option(help="Name the secret by this environment variable.")] = None,
    credential_file: Annotated[str | None, typer.Option(help="Name the key (or secret) by this file path.")] = None,
    token: Token = None,
) -> None:
    """Generate the agent's MCP client config (never containing the secret)."""
    body: dict[str, Any] = {"path": str(out.resolve()) if out else None}
    if credential_env:
        body.update(credential_source="env", credential_reference=credential_env)
    elif credential_file:
        body.update(credential_source="file", credential_reference=credential_file)
    generated = _call(token, lambda c: c.post(f"/tenants/{tenant}/agents/{agent_id}/mcp-config", body))
    if out is None:
        _emit(generated)
        return
    out.write_text(json.dumps(generated, indent=2) + "\n")
    err.print(f"wrote {out}", highlight=False)


# apply
def apply_command(
    file: Annotated[Path, typer.Argument(help="The agents file (agents.yaml).")],
    plan_only: Annotated[bool, typer.Option("--plan", help="Show the changes; change nothing.")] = False,
    credentials_dir: Annotated[
        Path | None, typer.Option(help="Write new agents' credentials here (mode 0600) instead of printing them.")
    ] = None,
    token: Token = None,
) -> None:
    """Bring a tenant's agents to the state the file declares (policy-checked first; idempotent)."""

    def act(client: BrokerClient) -> Any:
        plan, result = apply_agents_file(client, file, plan_only=plan_only)
        sys.stderr.write(plan.describe() + "\n")
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


# audit
@audit_app.command("verify")
def verify(
    database_url: Annotated[
        str | None, typer.Option(help="The broker database (default: SANDBOX_BROKER_DATABASE_URL or the stack's).")
    ] = None,
) -> None:
    """Recompute every tenant's hash chain; exit 1 and name the entries if any was tampered with."""
    settings = _settings()
    db = Database(database_url or settings.broker_database_url or default_database_url(settings))
    try:
        with db.session() as session:
            report = audit.verify(session)
    except SandboxError as error:
        _fail(error)
        return
    finally:
        db.dispose()
    if report.ok:
        sys.stdout.write(f"audit log intact: {report.entries} entries in {report.tenants} chains\n")
        return
    for problem in report.problems:
        err.print(f"[red]tampered:[/] {problem}", highlight=False)
    _fail(
        SandboxError(
            f"the audit log was tampered with ({len(report.problems)} broken entries of {report.entries})",
            "restore the database from a backup and investigate who changed it",
        )
    )


@audit_app.command("show")
def show_audit(tenant: TenantOption, agent_id: str | None = None, token: Token = None) -> None:
    """The tenant's audit entries, oldest first."""
    _emit(_call(token, lambda c: c.get(f"/tenants/{tenant}/audit", agent_id=agent_id)))
