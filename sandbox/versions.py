"""The versions a run depends on, named once for ``--version`` and the reports."""

from __future__ import annotations

import sys
from importlib.metadata import version

from sandbox import __version__
from sandbox.config import Settings
from sandbox.idp import idp_version


def versions(settings: Settings | None = None) -> dict[str, str]:
    """The project, the IdP (the stack's, or the default), the MCP SDK, Python; with settings, the MCP servers'
    revocation modes too."""
    idp, idp_release = idp_version(settings)
    found = {
        "mcp-sandbox": __version__,
        idp: idp_release,
        "mcp SDK": version("mcp"),
        "Python": sys.version.split()[0],
    }
    if settings is not None:
        found["revocation modes"] = ", ".join(server.mode for server in settings.mcp_servers)
    return found
