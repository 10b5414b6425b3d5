"""Run one MCP server instance with uvicorn on loopback until it is told to stop."""

from __future__ import annotations

import uvicorn

from sandbox.http_limits import MAX_HEADER_BYTES
from sandbox.log import configure_logging
from sandbox.mcp_server.app import build_app
from sandbox.mcp_server.options import ServerOptions


def serve(options: ServerOptions) -> None:
    configure_logging()
    config = uvicorn.Config(
        build_app(options),
        host=options.host,
        port=options.port,
        log_config=None,
        access_log=False,  # sandbox.mcp_server.app.AccessLog logs each request, without its query string
        proxy_headers=False,  # loopback only: no proxy's X-Forwarded-* is ever believed
        server_header=False,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,  # the parser's own bound; HeaderSizeLimit is exact
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
