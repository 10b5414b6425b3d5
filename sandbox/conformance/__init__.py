"""The official MCP conformance suite, installed from npm at a pinned version and run on loopback only."""
