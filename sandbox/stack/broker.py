"""The credential broker as a stack component: uvicorn on loopback, its database in the state directory.

``configure`` gives each sandbox tenant one admin (password and TOTP secret in the stack's secrets file),
so a fresh stack can be driven at once: ``mcp-sandbox admin login --tenant acme``.
"""

from __future__ import annotations

import asyncio
import shutil
import sys

from sandbox.broker.store import broker_dir
from sandbox.config import Settings
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.provider import IdpConflict
from sandbox.stack.component import Port, ProcessComponent, Report
from sandbox.stack.keycloak import startup_call_timeout
from sandbox.stack.state import ComponentState
from sandbox.stack_secrets import SANDBOX_ADMIN, Secrets, admin_secret_names


class Broker(ProcessComponent):
    name = "broker"
    needs = ("keycloak",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)

    @property
    def url(self) -> str:
        return self.settings.broker_url

    @property
    def health_url(self) -> str:
        return f"{self.settings.broker_url}/health"

    def ports(self) -> list[Port]:
        return [Port(self.settings.broker_port, "credential broker", "SANDBOX_BROKER_PORT")]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "sandbox.broker"]

    def environment(self) -> dict[str, str]:
        # The sandbox's broker lets scenarios move a tenant's clock (dormancy after 31 days, in seconds).
        return {**super().environment(), "SANDBOX_BROKER_MOVABLE_CLOCK": "true"}

    def clear_data(self) -> None:
        # A stack started from nothing starts the broker from an empty database, like Keycloak (the SET signing
        # key too); a broker restarted beside a live stack keeps its database.
        if not self.settings.broker_database_url:
            shutil.rmtree(broker_dir(self.settings), ignore_errors=True)

    def configure(self, state: ComponentState, report: Report) -> None:
        secrets = Secrets(self.settings)

        async def create_admins() -> None:
            adapter = KeycloakAdapter.from_settings(self.settings, timeout=startup_call_timeout(self.settings))
            for tenant in self.settings.tenants:
                password_name, otp_name = admin_secret_names(tenant)
                try:
                    await adapter.create_tenant_admin(
                        tenant, SANDBOX_ADMIN, secrets.get_or_create(password_name), secrets.get_or_create(otp_name)
                    )
                    report(f"created admin {SANDBOX_ADMIN!r} of tenant {tenant}")
                except IdpConflict:
                    pass  # the admin exists (an external Keycloak kept it)

        if not self.settings.external_keycloak:
            asyncio.run(create_admins())
        state.details["openapi"] = f"{self.url}/openapi.json"
        state.details["admins"] = {tenant: SANDBOX_ADMIN for tenant in self.settings.tenants}
