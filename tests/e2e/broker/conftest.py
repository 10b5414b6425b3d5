"""Fixtures of the broker's end-to-end tests: admins who log in through Keycloak, fresh tenants, the API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from sandbox.admin.login import admin_login
from sandbox.admin.operator import operator_token
from sandbox.pytest_plugin import SandboxStack
from sandbox.stack_secrets import SANDBOX_ADMIN, Secrets, admin_secret_names, otp_base32

_SANDBOX_ADMINS: dict[str, Admin] = {}
ADMINS = [{"username": "alice", "otp": True}, {"username": "bob", "otp": True}, {"username": "carol", "otp": False}]


@dataclass
class Admin:
    username: str
    password: str
    otp_secret: str | None
    issuer: str
    _token: str | None = field(default=None, repr=False)
    _expires: float = 0.0

    def token(self, *, fresh: bool = False) -> str:
        """An access token from a real login (password, and the TOTP code when the admin has OTP)."""
        if fresh or self._token is None or time.monotonic() > self._expires:
            tokens = asyncio.run(admin_login(self.issuer, self.username, self.password, self.otp_secret))
            self._token, self._expires = tokens.access_token, time.monotonic() + tokens.expires_in - 60
        return self._token


@dataclass
class Tenant:
    name: str
    issuer: str
    admins: dict[str, Admin]

    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"


class Broker:
    """The stack's broker, spoken to over HTTP as any client would."""

    def __init__(self, stack: SandboxStack) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.url = stack.settings.broker_url
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def call(self, method: str, path: str, token: str | None = None, body: Any = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, path, headers=headers, json=body, params=params or None)

    def operator_token(self) -> str:
        return operator_token(self.settings)

    def new_tenant(self, prefix: str = "t") -> Tenant:
        name = f"{prefix}{uuid.uuid4().hex[:8]}"
        response = self.call("POST", "/tenants", self.operator_token(), {"name": name, "admins": ADMINS})
        assert response.status_code == 201, response.text
        created = response.json()
        admins = {
            a["username"]: Admin(a["username"], a["password"], a["otp_secret"], created["issuer"])
            for a in created["admins"]
        }
        return Tenant(name, created["issuer"], admins)

    def sandbox_admin(self, tenant: str) -> Admin:
        """The admin the stack gave a sandbox tenant (credentials in the stack's secrets file); one per session,
        so its token is reused (Keycloak refuses a one-time code twice)."""
        if tenant not in _SANDBOX_ADMINS:
            _SANDBOX_ADMINS[tenant] = self._sandbox_admin(tenant)
        return _SANDBOX_ADMINS[tenant]

    def _sandbox_admin(self, tenant: str) -> Admin:
        password_name, otp_name = admin_secret_names(tenant)
        secrets = Secrets(self.settings)
        return Admin(
            SANDBOX_ADMIN,
            secrets.get(password_name) or "",
            otp_base32(secrets.get(otp_name) or ""),
            self.settings.issuer(tenant),
        )

    def provision(self, tenant: Tenant, token: str, **body: Any) -> dict[str, Any]:
        defaults = {"name": f"agent-{uuid.uuid4().hex[:6]}", "owner": "owner@example.com", "environment": "staging"}
        response = self.call("POST", f"/tenants/{tenant.name}/agents", token, {**defaults, **body})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def broker(sandbox_stack: SandboxStack) -> Iterator[Broker]:
    kit = Broker(sandbox_stack)
    yield kit
    kit.http.close()


@pytest.fixture(scope="session")
def tenant(broker: Broker) -> Tenant:
    """A tenant of its own for these tests: alice and bob log in with OTP, carol with a password only."""
    return broker.new_tenant("e2e")
