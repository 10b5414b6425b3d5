"""The reference MCP server as a stack component: a Python process on ``Settings.mcp_url``."""

from __future__ import annotations

import sys

from sandbox.stack.component import Port, ProcessComponent


class McpServer(ProcessComponent):
    """``python -m sandbox.mcp_server``: trusts the stack's tenants and the broker's trust list; mode from settings."""

    name = "mcp-server"

    @property
    def url(self) -> str:
        return self.settings.mcp_url

    @property
    def health_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.mcp_port}/health"

    def ports(self) -> list[Port]:
        return [Port(self.settings.mcp_port, "mcp server", "SANDBOX_MCP_PORT")]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "sandbox.mcp_server"]
