"""``python -m sandbox.mcp_server``: the stack's MCP server, configured entirely by the SANDBOX_* settings."""

from __future__ import annotations

import sys

from sandbox.config import load_settings
from sandbox.errors import SandboxError
from sandbox.mcp_server.options import ServerOptions
from sandbox.mcp_server.server import serve


def main() -> int:
    try:
        options = ServerOptions.for_stack(load_settings())
    except SandboxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    serve(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
