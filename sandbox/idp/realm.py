"""The design of a sandbox tenant realm: the names it gives clients, roles and attributes, and its template.

Every tenant is one realm made from ``fixtures/realms/tenant.json``; the broker, the admin login and the tests
refer to its parts by the names below. Nothing here talks to the IdP: :func:`create_tenant` hands the design
to the adapter.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.stack_secrets import RESOURCE_SERVER_SECRET, Secrets
from sandbox.toolmap import ToolMap

if TYPE_CHECKING:
    from sandbox.idp.provider import IdentityProvider

#: A realm's token endpoint, under its issuer.
TOKEN_PATH = "/protocol/openid-connect/token"
ADMIN_CLIENT_ID = "sandbox-admin"
ADMIN_USERNAME = "admin"
DEMO_CLIENT_ID = "quickstart-agent"
#: Built-in scope that carries ``sub``; every agent gets it besides its tool scopes.
BASE_SCOPES = ("basic",)
#: Client attribute that marks an agent's client; the tenant template's secret-rotation client policy matches it.
AGENT_ATTRIBUTE = "mcp-sandbox.agent"
#: Public client of every tenant realm that tenant admins log in with (authorization code + PKCE), see tenant.json.
ADMIN_LOGIN_CLIENT_ID = "sandbox-broker-admin"
#: Realm role that makes a user of a tenant realm an admin of that tenant.
TENANT_ADMIN_ROLE = "tenant-admin"
#: Public client of every tenant realm that its users log in with to let an agent act for them (consent required).
USER_LOGIN_CLIENT_ID = "sandbox-user-login"
#: Attribute of the realm roles that gate the client scope of the same name (see ``ensure_scopes``).
SCOPE_ROLE_ATTRIBUTE = "mcp-sandbox.scope"
#: Client attribute of Keycloak's standard token exchange (v2): the client may exchange a token naming it in ``aud``.
TOKEN_EXCHANGE_ATTRIBUTE = "standard.token.exchange.enabled"
#: Keycloak's client attribute "OAuth 2.0 DPoP Bound Access Tokens Enabled".
DPOP_ATTRIBUTE = "dpop.bound.access.tokens"
#: Keycloak's client attribute "OAuth 2.0 Mutual TLS Certificate Bound Access Tokens Enabled" (RFC 8705).
MTLS_ATTRIBUTE = "tls.client.certificate.bound.access.tokens"
#: Client attribute naming the one source address (a network zone on loopback, e.g. 127.0.0.2) the agent's token
#: requests must come from; the sandbox's Keycloak provider (client policy executor ``ZONE_EXECUTOR``) enforces it.
ZONE_ATTRIBUTE = "sandbox.zone"
#: The sandbox's own client policy executor (``sandbox/stack/zone_provider``), and the realm profile and policy
#: that apply it to every client (clients without ``ZONE_ATTRIBUTE`` are not affected).
ZONE_EXECUTOR = "sandbox-source-zone"
ZONE_PROFILE = "sandbox-network-zones"
ZONE_POLICY = "sandbox-network-zones"
#: ``amr`` values the browser flow records (RFC 8176): a token whose ``amr`` has "otp" proves MFA.
LOGIN_METHOD_REFERENCES = {"auth-username-password-form": "pwd", "auth-otp-form": "otp"}
#: How long after a login its ``amr`` values stay in newly issued tokens (Keycloak drops them after this).
LOGIN_METHOD_MAX_AGE = 12 * 3600


def operator_client_id(settings: Settings) -> str:
    """The client id of the platform operator: the master realm's admin service account."""
    return settings.keycloak_admin_client_id or ADMIN_CLIENT_ID


def operator_credentials(settings: Settings) -> tuple[str, str]:
    """The operator's client id and secret: an external IdP's service account from the settings, else ours."""
    if settings.external_keycloak:
        if not (settings.keycloak_admin_client_id and settings.keycloak_admin_client_secret):
            raise SandboxError(
                f"SANDBOX_KEYCLOAK_URL={settings.keycloak_url} is set without an admin service account",
                "set SANDBOX_KEYCLOAK_ADMIN_CLIENT_ID and SANDBOX_KEYCLOAK_ADMIN_CLIENT_SECRET",
            )
        return settings.keycloak_admin_client_id, settings.keycloak_admin_client_secret
    secret = Secrets(settings).get(ADMIN_CLIENT_ID)
    if secret is None:
        raise SandboxError(
            f"no sandbox Keycloak credentials in {settings.secrets_file}", "start the stack with `mcp-sandbox up`"
        )
    return ADMIN_CLIENT_ID, secret


def delegation_scope(agent_client_id: str) -> str:
    """The optional client scope of the user login client that lets one agent act for the user (adds it to aud)."""
    return f"delegate:{agent_client_id}"


def load_realm_template(fixtures_dir: Path, name: str = "tenant") -> dict[str, Any]:
    template = json.loads((fixtures_dir / "realms" / f"{name}.json").read_text())
    template.pop("_comment", None)
    return template


def create_tenant(
    adapter: IdentityProvider, settings: Settings, tenant: str, *, demo_secret: str | None = None
) -> Awaitable[None]:
    """Create one tenant realm from the fixtures: template, a client scope per tool scope, introspection client."""
    return adapter.create_tenant_realm(
        tenant,
        load_realm_template(settings.fixtures_dir),
        scopes=ToolMap.load(settings.tools_file).all_scopes(),
        resource_servers={
            server.url: Secrets(settings).get_or_create(RESOURCE_SERVER_SECRET) for server in settings.mcp_servers
        },
        demo_secret=demo_secret,
    )
