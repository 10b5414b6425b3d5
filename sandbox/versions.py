"""The versions a run depends on, named once for ``--version`` and the reports."""

from __future__ import annotations

import sys
from importlib.metadata import version

from sandbox import __version__
from sandbox.config import DEFAULT_KEYCLOAK_VERSION, Settings


def versions(settings: Settings | None = None) -> dict[str, str]:
    """The project, Keycloak (the stack's, or the default), the MCP SDK, Python; with settings, the MCP servers'
    revocation modes too."""
    found = {
        "mcp-sandbox": __version__,
        "Keycloak": settings.keycloak_version if settings else DEFAULT_KEYCLOAK_VERSION,
        "mcp SDK": version("mcp"),
        "Python": sys.version.split()[0],
    }
    if settings is not None:
        found["revocation modes"] = ", ".join(server.mode for server in settings.mcp_servers)
    return found
