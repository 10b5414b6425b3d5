"""The reference MCP server as stack components: one Python process per revocation mode."""

from __future__ import annotations

import sys

from sandbox.config import Settings
from sandbox.modes import revocation_mode
from sandbox.stack.component import Port, ProcessComponent
from sandbox.stack_secrets import RESOURCE_SERVER_SECRET, Secrets


class McpServer(ProcessComponent):
    """``python -m sandbox.mcp_server`` in one mode: trusts the stack's tenants and the broker's trust list."""

    needs: tuple[str, ...] = ("keycloak",)

    def __init__(self, settings: Settings, mode: str = "jwt+events") -> None:
        super().__init__(settings)
        if mode == "jwt+events":  # it joins the broker's SSF stream and catches up before it is ready
            self.needs = ("keycloak", "broker")
        self.address = settings.mcp_server(mode)
        self.mode = revocation_mode(mode)
        self.name = self.mode.component

    @property
    def url(self) -> str:
        return self.address.url

    @property
    def health_url(self) -> str:
        return f"{self.address.origin}/health"

    def ports(self) -> list[Port]:
        return [Port(self.address.port, f"mcp server ({self.mode.name})", self.mode.port_variable)]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "sandbox.mcp_server"]

    def environment(self) -> dict[str, str]:
        # The introspection secret every tenant realm gives this server's client (made here too: against an
        # external Keycloak no sandbox tenant is created at start-up, but scenarios' tenants will use it).
        Secrets(self.settings).get_or_create(RESOURCE_SERVER_SECRET)
        return {**super().environment(), "SANDBOX_MCP_AUTH_MODE": self.address.mode}
