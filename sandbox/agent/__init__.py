"""The agent side: credentials, tokens, and calls to MCP servers as an agent makes them."""
