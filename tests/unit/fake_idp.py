"""An in-memory IdentityProvider for the broker's unit tests: tenants, agent clients, people and their consents.

``fail`` names calls that fail as if the IdP went away; a call on a client it does not have raises IdpNotFound
and a second user of one name IdpConflict, as the Keycloak adapter does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sandbox.broker.base import BrokerContext
from sandbox.broker.clock import Clock, MovableClock
from sandbox.broker.events import SigningKey
from sandbox.broker.policy import Policy
from sandbox.broker.service import BrokerService
from sandbox.broker.store import Database
from sandbox.config import Settings, load_settings
from sandbox.idp import (
    AgentClient,
    AgentClientSpec,
    Consent,
    EventKind,
    IdentityProvider,
    IdpConflict,
    IdpEvent,
    IdpNotFound,
    IdpUnavailable,
)
from sandbox.toolmap import ToolMap

DOWN = IdpUnavailable("Keycloak at http://127.0.0.1:1 is unreachable", "start it")


class FakeIdentityProvider:
    def __init__(self) -> None:
        self.realms: set[str] = {"acme"}
        self.clients: dict[str, dict[str, Any]] = {}
        self.users: dict[tuple[str, str], dict[str, Any]] = {}  # (tenant, username) -> roles, otp
        self.logins: dict[str, datetime] = {}  # client_id -> when its last token was issued
        self.exchanges: dict[str, list[IdpEvent]] = {}  # client_id -> its token exchanges, newest first
        self.delegation_scopes: set[str] = set()
        self.fail: set[str] = set()
        self.failures: dict[str, list[IdpEvent]] = {}  # realm -> its token refusals, any client's

    async def _call(self, name: str) -> None:
        await asyncio.sleep(0)  # a real round trip lets other tasks run meanwhile
        if name in self.fail:
            raise DOWN

    def _client(self, internal_id: str) -> dict[str, Any]:
        if internal_id not in self.clients:
            raise IdpNotFound(f"no client {internal_id}", "check the id", status=404)
        return self.clients[internal_id]

    # Tenants.
    async def realm_exists(self, realm: str) -> bool:
        await self._call("realm_exists")
        return realm in self.realms

    async def create_tenant_realm(
        self,
        realm: str,
        template: dict[str, Any],
        *,
        scopes: list[str],
        resource_servers: dict[str, str],
        demo_secret: str | None = None,
    ) -> None:
        await self._call("create_tenant_realm")
        if realm in self.realms:
            raise IdpConflict(f"realm {realm} exists", "pick another name", status=409)
        self.realms.add(realm)

    async def delete_realm(self, realm: str) -> None:
        await self._call("delete_realm")
        self.realms.discard(realm)

    async def token_endpoint(self, realm: str) -> str:
        await self._call("token_endpoint")
        return f"http://127.0.0.1:1/realms/{realm}/token"

    # Agents.
    async def create_agent_client(self, realm: str, spec: AgentClientSpec) -> AgentClient:
        await self._call("create_agent_client")
        self.clients[spec.client_id] = {
            "enabled": spec.enabled,
            "scopes": spec.scopes,
            "binding": spec.binding,
            "lifetime": spec.token_lifetime,
            "zone": spec.zone,
        }
        await self._call("after_create")
        return AgentClient(spec.client_id, spec.client_id, f"sa-{spec.client_id}", "generated-secret")

    async def find_client(self, realm: str, client_id: str) -> str | None:
        await self._call("find_client")
        return client_id if client_id in self.clients else None

    async def delete_client(self, realm: str, internal_id: str) -> None:
        await self._call("delete_client")
        self.clients.pop(internal_id, None)  # one already gone counts as removed

    async def set_client_enabled(self, realm: str, internal_id: str, enabled: bool) -> None:
        await self._call("set_client_enabled")
        self._client(internal_id)["enabled"] = enabled

    async def set_default_scopes(self, realm: str, internal_id: str, scopes: list[str]) -> None:
        await self._call("set_default_scopes")
        self._client(internal_id)["scopes"] = scopes

    async def client_secret(self, realm: str, internal_id: str) -> str:
        await self._call("client_secret")
        return str(self._client(internal_id).get("secret", "generated-secret"))

    async def rotate_client_secret(self, realm: str, internal_id: str, grace_seconds: int) -> str:
        await self._call("rotate_client_secret")
        client = self._client(internal_id)
        client["previous"], client["secret"] = client.get("secret", "generated-secret"), "rotated-secret"
        return "rotated-secret"

    async def keep_rotated_secret(self, realm: str, internal_id: str, grace_seconds: int) -> None:
        await self._call("keep_rotated_secret")

    async def end_secret_grace(self, realm: str, internal_id: str) -> None:
        await self._call("end_secret_grace")
        self._client(internal_id).pop("previous", None)

    async def set_client_jwks(self, realm: str, internal_id: str, jwks: dict[str, Any]) -> None:
        await self._call("set_client_jwks")
        self._client(internal_id)["jwks"] = jwks

    async def client_events(
        self, realm: str, client_id: str, kinds: tuple[EventKind, ...], maximum: int = 500
    ) -> list[IdpEvent]:
        await self._call("client_events")
        last = self.logins.get(client_id)
        events = [*self.exchanges.get(client_id, []), *([IdpEvent("token_issued", last, client_id)] if last else [])]
        events.sort(key=lambda e: e.at, reverse=True)
        return [e for e in events if e.kind in kinds][:maximum]

    async def tenant_events(self, realm: str, kinds: tuple[EventKind, ...], maximum: int) -> list[IdpEvent]:
        await self._call("tenant_events")
        events = [e for e in self.failures.get(realm, []) if e.kind in kinds]
        return sorted(events, key=lambda e: e.at, reverse=True)[:maximum]

    # People.
    async def create_tenant_user(
        self,
        realm: str,
        username: str,
        password: str,
        otp_secret: str | None,
        *,
        roles: list[str],
        last_name: str = "",
    ) -> str:
        await self._call("create_tenant_user")
        if (realm, username) in self.users:
            raise IdpConflict(f"user {username} exists", "pick another username", status=409)
        self.users[(realm, username)] = {"roles": roles, "otp": otp_secret is not None}
        return f"id-{username}"

    async def user_consents(self, realm: str, user_id: str) -> list[Consent]:
        scopes = tuple(f"delegate:{c}" for c in self.exchanges)
        return [Consent("sandbox-user-login", scopes, datetime.fromtimestamp(0, tz=UTC))]

    async def add_delegation_scope(self, realm: str, client_id: str, name: str) -> None:
        await self._call("add_delegation_scope")
        self.delegation_scopes.add(client_id)

    async def remove_delegation_scope(self, realm: str, client_id: str) -> None:
        await self._call("remove_delegation_scope")
        self.delegation_scopes.discard(client_id)


def service_of(
    settings: Settings, db: Database, adapter: IdentityProvider, http: httpx.AsyncClient, clock: Clock
) -> BrokerService:
    """A broker service on these parts, with the stack's policy and tool map and a signing key in the state
    directory (what every broker unit test builds)."""
    tools = ToolMap.load(settings.tools_file)
    context = BrokerContext(
        settings=settings,
        db=db,
        adapter=adapter,
        policy=Policy.load(settings.policy_file, tools),
        tools=tools,
        clock=clock,
        signing_key=SigningKey.load_or_create(settings.state_dir / "key.json"),
        http=http,
    )
    return BrokerService(context)


@asynccontextmanager
async def broker_on(idp: FakeIdentityProvider, tmp_path: Path, clock: MovableClock) -> AsyncIterator[BrokerService]:
    """A broker service on this fake IdP and a SQLite database in ``tmp_path``, with the stack's policy and tool
    map, one resource server and the tenant acme (what the broker unit tests share)."""
    settings = load_settings(state_dir=tmp_path, broker_movable_clock=True)
    db = Database(f"sqlite:///{tmp_path / 'broker.db'}")
    db.create_schema()
    try:
        async with httpx.AsyncClient() as http:
            service = service_of(settings, db, idp, http, clock)
            service.tenants.register_resource_server(None, settings.mcp_url, None)
            await service.tenants.adopt_tenant("acme")
            yield service
    finally:
        db.dispose()
