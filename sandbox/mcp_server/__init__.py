"""The reference MCP server: a strict OAuth protected resource with per-tool scopes and instant revocation.

Streamable HTTP on the official ``mcp`` SDK. Every request to ``/mcp`` carries a bearer token that
is checked before the SDK sees it (:mod:`.verification`, :mod:`.introspection`), every tool call
needs its tool's scope (:mod:`.scoping`), and each tenant, read from the token's issuer, sees only
its own data (:mod:`.tenants`). Run it with :func:`sandbox.mcp_server.server.serve`.
"""

from __future__ import annotations

from sandbox.mcp_server.app import build_app
from sandbox.mcp_server.options import ServerOptions
from sandbox.mcp_server.server import serve

__all__ = [
    "ServerOptions",
    "build_app",
    "serve",
]
