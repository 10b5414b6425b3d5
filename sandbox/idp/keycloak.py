"""The Keycloak adapter: every Admin REST call the product makes goes through this class.

It authenticates as an admin service account of the ``master`` realm (client credentials) and
talks to tenant realms through python-keycloak, one admin client per realm.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import (
    KeycloakAuthenticationError,
    KeycloakConnectionError,
    KeycloakGetError,
)

from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.stack.state import Secrets

P = ParamSpec("P")
R = TypeVar("R")

ADMIN_CLIENT_ID = "sandbox-admin"
DEMO_CLIENT_ID = "quickstart-agent"
#: Stack secret of the reference MCP server's introspection client (see :meth:`KeycloakAdapter.create_tenant_realm`).
RESOURCE_SERVER_SECRET = "mcp-resource-server"
#: Built-in scope that carries ``sub``; every agent gets it besides its tool scopes.
BASE_SCOPES = ("basic",)


@dataclass(frozen=True)
class AgentClientSpec:
    """What Keycloak needs to know about one agent identity."""

    client_id: str
    name: str
    scopes: list[str]  # tool scopes, made the client's default scopes
    audiences: list[str]  # canonical URLs of the MCP servers it may call
    token_lifetime: int  # seconds
    credential: Literal["client_secret", "private_key_jwt"] = "client_secret"
    jwks: dict[str, Any] | None = None  # the agent's public keys, for private_key_jwt
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentClient:
    id: str  # Keycloak's internal id of the client
    client_id: str
    service_account_id: str
    secret: str | None  # only for client_secret, only at creation


def resource_server_client(url: str, secret: str) -> dict[str, Any]:
    """A resource server's own client: no flows, only a credential for RFC 7662 introspection.

    Its ``resource_url`` attribute makes ``resource=<url>`` (RFC 8707) a valid target in token
    requests: Keycloak then narrows the token's ``aud`` to exactly that URL.
    """
    return {
        "clientId": url,
        "name": f"MCP resource server {url} (introspection only)",
        "enabled": True,
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "secret": secret,
        "serviceAccountsEnabled": False,
        "standardFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "attributes": {"resource_url": url},
    }


def audience_mapper(audience: str) -> dict[str, Any]:
    return {
        "name": f"audience {audience}",
        "protocol": "openid-connect",
        "protocolMapper": "oidc-audience-mapper",
        "config": {
            "included.custom.audience": audience,
            "access.token.claim": "true",
            "introspection.token.claim": "true",
            "id.token.claim": "false",
        },
    }


class IdpUnavailable(SandboxError):
    """Keycloak could not be reached or refused the admin credentials."""


def _translated(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn python-keycloak's transport and auth failures into errors with a cause and a fix."""

    @wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        adapter = args[0]
        assert isinstance(adapter, KeycloakAdapter)
        try:
            return await method(*args, **kwargs)
        except KeycloakConnectionError as exc:
            raise IdpUnavailable(
                f"Keycloak at {adapter.base_url} is unreachable ({exc.error_message})",
                "start the stack with `mcp-sandbox up`, or check SANDBOX_KEYCLOAK_URL",
            ) from exc
        except KeycloakAuthenticationError as exc:
            raise IdpUnavailable(
                f"Keycloak at {adapter.base_url} refused the admin service account {adapter.client_id!r}",
                "check SANDBOX_KEYCLOAK_ADMIN_CLIENT_ID/SECRET (it needs the realm-admin role in master)",
            ) from exc

    return wrapper


def load_realm_template(fixtures_dir: Path, name: str = "tenant") -> dict[str, Any]:
    template = json.loads((fixtures_dir / "realms" / f"{name}.json").read_text())
    template.pop("_comment", None)
    return template


class KeycloakAdapter:
    def __init__(self, base_url: str, client_id: str, client_secret: str, *, timeout: int = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._timeout = timeout
        self._admins: dict[str, KeycloakAdmin] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> KeycloakAdapter:
        """The adapter for the configured Keycloak: an external one's service account, or our own."""
        if settings.external_keycloak:
            if not (settings.keycloak_admin_client_id and settings.keycloak_admin_client_secret):
                raise SandboxError(
                    f"SANDBOX_KEYCLOAK_URL={settings.keycloak_url} is set without an admin service account",
                    "set SANDBOX_KEYCLOAK_ADMIN_CLIENT_ID and SANDBOX_KEYCLOAK_ADMIN_CLIENT_SECRET",
                )
            return cls(
                settings.keycloak_base_url,
                settings.keycloak_admin_client_id,
                settings.keycloak_admin_client_secret,
            )
        secret = Secrets(settings).get(ADMIN_CLIENT_ID)
        if secret is None:
            raise SandboxError(
                f"no sandbox Keycloak credentials in {settings.secrets_file}",
                "start the stack with `mcp-sandbox up`",
            )
        return cls(settings.keycloak_base_url, ADMIN_CLIENT_ID, secret)

    def admin(self, realm: str) -> KeycloakAdmin:
        """The python-keycloak admin client bound to ``realm`` (authenticated in master)."""
        if realm not in self._admins:
            connection = KeycloakOpenIDConnection(
                server_url=self.base_url,
                realm_name=realm,
                user_realm_name="master",
                client_id=self.client_id,
                client_secret_key=self._secret,
                grant_type="client_credentials",
                timeout=self._timeout,
            )
            self._admins[realm] = KeycloakAdmin(connection=connection)
        return self._admins[realm]

    # Realms (tenants).
    @_translated
    async def realm_exists(self, realm: str) -> bool:
        try:
            await self.admin("master").a_get_realm(realm)
        except KeycloakGetError as exc:
            if exc.response_code == 404:
                return False
            raise
        return True

    @_translated
    async def create_tenant_realm(
        self,
        realm: str,
        template: dict[str, Any],
        *,
        scopes: list[str],
        resource_servers: dict[str, str],
        demo_secret: str | None = None,
    ) -> None:
        """Create ``realm`` from ``template`` with a client scope per tool scope and a client per resource server.

        Keycloak generates the realm's own signing keys, so every tenant has a separate issuer and keys.
        ``resource_servers`` maps each MCP server's canonical URL to its introspection secret: Keycloak only
        answers an introspection for a client in the token's audience, so the client is named by that URL.
        """
        payload = copy.deepcopy(template)
        payload["realm"] = realm
        payload.setdefault("displayName", f"Sandbox tenant {realm}")
        clients = [c for c in payload.get("clients", []) if c.get("clientId") != DEMO_CLIENT_ID or demo_secret]
        for client in clients:
            if client.get("clientId") == DEMO_CLIENT_ID:
                client["secret"] = demo_secret
        clients.extend(resource_server_client(url, secret) for url, secret in resource_servers.items())
        payload["clients"] = clients
        await self.admin("master").a_create_realm(payload)
        admin = self.admin(realm)
        for scope in scopes:
            await admin.a_create_client_scope(
                {
                    "name": scope,
                    "protocol": "openid-connect",
                    "attributes": {"include.in.token.scope": "true", "display.on.consent.screen": "false"},
                },
                skip_exists=True,
            )

    @_translated
    async def create_resource_server_client(self, realm: str, url: str, secret: str) -> str:
        """Add one more resource server (canonical ``url``) to an existing realm; return the client's internal id."""
        return await self.admin(realm).a_create_client(resource_server_client(url, secret))

    @_translated
    async def delete_realm(self, realm: str) -> None:
        await self.admin("master").a_delete_realm(realm)
        self._admins.pop(realm, None)

    # Agents (confidential clients with a service account).
    @_translated
    async def create_agent_client(self, realm: str, spec: AgentClientSpec) -> AgentClient:
        """Create the agent's client: its scopes only, its audiences, its token lifetime, its credential."""
        attributes = {
            "access.token.lifespan": str(spec.token_lifetime),
            "client_credentials.use_refresh_token": "false",
            **spec.attributes,
        }
        if spec.credential == "private_key_jwt":
            if not spec.jwks:
                raise ValueError("private_key_jwt needs the agent's public JWKS")
            attributes.update(
                {
                    "use.jwks.string": "true",
                    "jwks.string": json.dumps(spec.jwks),
                    "token.endpoint.auth.signing.alg": spec.jwks["keys"][0].get("alg", "RS256"),
                }
            )
        payload = {
            "clientId": spec.client_id,
            "name": spec.name,
            "enabled": True,
            "protocol": "openid-connect",
            "publicClient": False,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "implicitFlowEnabled": False,
            "directAccessGrantsEnabled": False,
            "fullScopeAllowed": False,
            "clientAuthenticatorType": "client-jwt" if spec.credential == "private_key_jwt" else "client-secret",
            "defaultClientScopes": [*BASE_SCOPES, *spec.scopes],
            "optionalClientScopes": [],
            "protocolMappers": [audience_mapper(audience) for audience in spec.audiences],
            "attributes": attributes,
        }
        admin = self.admin(realm)
        internal_id = await admin.a_create_client(payload)
        service_account = await admin.a_get_client_service_account_user(internal_id)
        secret = None
        if spec.credential == "client_secret":
            secret = (await admin.a_get_client_secrets(internal_id))["value"]
        return AgentClient(internal_id, spec.client_id, service_account["id"], secret)

    @_translated
    async def delete_client(self, realm: str, internal_id: str) -> None:
        await self.admin(realm).a_delete_client(internal_id)

    @_translated
    async def client_scope_names(self, realm: str, internal_id: str) -> list[str]:
        scopes = await self.admin(realm).a_get_client_default_client_scopes(internal_id)
        return [scope["name"] for scope in scopes]
