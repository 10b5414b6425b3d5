"""Tenants and their human admins, as the harness drives them: through the broker's API and Keycloak's login.

Scenarios, the pytest plugin's fixtures and the end-to-end tests all make tenants this way, so each gets a
fresh realm of its own, admins who log in for real (password, and a TOTP code where they have OTP), and a
clean removal afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sandbox.admin.client import BrokerClient
from sandbox.admin.login import admin_login
from sandbox.admin.operator import operator_token
from sandbox.config import DEFAULT_IDP, IdpName, Settings
from sandbox.errors import SandboxError
from sandbox.oidc import discover
from sandbox.stack_secrets import SANDBOX_ADMIN, Secrets, admin_secret_names, otp_base32

T = TypeVar("T")


@dataclass
class TenantAdmin:
    """A human admin of one tenant; ``token()`` logs in through Keycloak's real login form when needed."""

    username: str
    password: str = field(repr=False)
    otp_secret: str | None = field(repr=False)
    issuer: str
    _token: str | None = field(default=None, repr=False)
    _expires: float = 0.0

    @property
    def has_mfa(self) -> bool:
        return self.otp_secret is not None

    async def login(self) -> str:
        if self._token is None or time.monotonic() > self._expires:
            tokens = await admin_login(self.issuer, self.username, self.password, self.otp_secret)
            self._token, self._expires = tokens.access_token, time.monotonic() + tokens.expires_in - 30
        return self._token

    def token(self) -> str:
        """The same, for synchronous callers (also from inside a running event loop, e.g. an async test)."""
        if self._token is None or time.monotonic() > self._expires:
            return run_sync(self.login())
        return self._token


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, on a thread of its own if a loop runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass
class Tenant:
    name: str
    issuer: str  # the realm: where its people log in
    admins: dict[str, TenantAdmin]
    idp: IdpName = DEFAULT_IDP  # the agents' IdP
    agents_issuer: str = ""  # the issuer of its agents' tokens (its Hydra, or the realm)

    def __post_init__(self) -> None:
        self.agents_issuer = self.agents_issuer or self.issuer

    @property
    def token_url(self) -> str:
        """The agents' token endpoint."""
        return discover(self.agents_issuer).token_endpoint


def create_tenant(settings: Settings, admins: dict[str, bool], prefix: str = "t", idp: IdpName = DEFAULT_IDP) -> Tenant:
    """A fresh tenant through the broker (operator), with admins by name (True: with OTP), its agents on ``idp``."""
    name = f"{prefix[:22].rstrip('-')}-{uuid.uuid4().hex[:8]}".lower()  # tenant names have at most 31 characters
    body: dict[str, Any] = {"name": name, "admins": [{"username": u, "otp": otp} for u, otp in admins.items()]}
    if idp != DEFAULT_IDP:
        body["idp"] = idp
    with BrokerClient(settings.broker_url, operator_token(settings)) as broker:
        created = broker.post("/tenants", body)
    issued = {
        entry["username"]: TenantAdmin(entry["username"], entry["password"], entry["otp_secret"], created["issuer"])
        for entry in created["admins"]
    }
    return Tenant(created["tenant"], created["issuer"], issued, created["idp"], created["agents_issuer"])


def delete_tenant(settings: Settings, tenant: str) -> None:
    """Remove a tenant made by :func:`create_tenant`: its agents, its realm; the audit stays."""
    with BrokerClient(settings.broker_url, operator_token(settings)) as broker:
        broker.request("DELETE", f"/tenants/{tenant}")


def sandbox_admin(settings: Settings, tenant: str) -> TenantAdmin:
    """The admin the stack gave one of its own tenants (credentials in the stack's secrets file)."""
    password_name, otp_name = admin_secret_names(tenant)
    secrets = Secrets(settings)
    password, otp = secrets.get(password_name), secrets.get(otp_name)
    if password is None:
        raise SandboxError(f"the stack has no admin for tenant {tenant!r}", "start the stack with `mcp-sandbox up`")
    return TenantAdmin(SANDBOX_ADMIN, password, otp_base32(otp) if otp else None, settings.issuer(tenant))
