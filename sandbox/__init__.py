"""mcp-agent-sandbox: a local sandbox and end-to-end harness for the identity lifecycle of AI agents on MCP."""

__version__ = "0.1.0"
