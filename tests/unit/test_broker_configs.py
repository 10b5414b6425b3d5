"""MCP client configs: servers, allowed tools and a credential reference, never the credential."""

from __future__ import annotations

import json

from sandbox.broker.configs import allowed_tools, credential_reference, mcp_client_config
from sandbox.config import PACKAGE_DIR
from sandbox.toolmap import ToolMap

TOOLS = ToolMap.load(PACKAGE_DIR.parent / "fixtures" / "tools.yaml")
SECRET = "s3cr3t-value-that-must-not-appear"


def test_allowed_tools_follow_the_scopes_and_environment() -> None:
    scopes = ["mcp:tool:deploy.read", "mcp:tool:deploy.staging.write"]
    assert allowed_tools(TOOLS, scopes, "staging") == ["deploy.status", "deploy.trigger"]
    assert allowed_tools(TOOLS, scopes, "production") == ["deploy.status"]


def test_config_references_the_credential_and_never_contains_it() -> None:
    config = mcp_client_config(
        name="bot",
        client_id="agent-bot-1",
        issuer="http://127.0.0.1:18080/realms/acme",
        servers=["http://127.0.0.1:18083/mcp"],
        tools=["logs.read"],
        scopes=["mcp:tool:logs.read"],
        credential=credential_reference("client_secret", "bot"),
    )
    text = json.dumps(config)
    assert SECRET not in text and 'secret": "' not in text
    server = config["mcpServers"]["127.0.0.1-18083"]
    assert server["auth"]["credential"] == {"type": "client_secret", "env": "MCP_AGENT_CLIENT_SECRET"}
    assert server["auth"]["tokenEndpoint"] == "http://127.0.0.1:18080/realms/acme/protocol/openid-connect/token"
    assert server["allowedTools"] == ["logs.read"] and server["auth"]["resource"] == server["url"]


def test_private_keys_are_named_by_file() -> None:
    assert credential_reference("private_key_jwt", "bot") == {
        "type": "private_key_jwt",
        "file": "~/.config/mcp-agents/bot.private.jwk",
    }
    assert credential_reference("client_secret", "bot", source="file", reference="/run/secrets/bot") == {
        "type": "client_secret",
        "file": "/run/secrets/bot",
    }
