"""The Keycloak adapter: every Admin REST call the product makes goes through this class.

It authenticates as an admin service account of the ``master`` realm (client credentials) and
talks to tenant realms through python-keycloak, one admin client per realm.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

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
    async def create_realm(self, realm: str, template: dict[str, Any], *, demo_secret: str | None = None) -> None:
        """Create ``realm`` from ``template``; Keycloak generates its own signing keys for it."""
        payload = copy.deepcopy(template)
        payload["realm"] = realm
        payload.setdefault("displayName", f"Sandbox tenant {realm}")
        clients = [c for c in payload.get("clients", []) if c.get("clientId") != DEMO_CLIENT_ID or demo_secret]
        for client in clients:
            if client.get("clientId") == DEMO_CLIENT_ID:
                client["secret"] = demo_secret
        payload["clients"] = clients
        await self.admin("master").a_create_realm(payload)

    @_translated
    async def delete_realm(self, realm: str) -> None:
        await self.admin("master").a_delete_realm(realm)

    async def ensure_realm(self, realm: str, template: dict[str, Any], *, demo_secret: str | None = None) -> bool:
        """Create ``realm`` unless it exists; True if it was created now."""
        if await self.realm_exists(realm):
            return False
        await self.create_realm(realm, template, demo_secret=demo_secret)
        return True
