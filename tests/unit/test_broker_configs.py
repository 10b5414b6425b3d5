"""MCP client configs: servers, allowed tools and a credential reference, never the credential."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.agent.mcp_config import CredentialSource, McpClientConfig
from sandbox.broker.configs import allowed_tools, credential_reference, host_config, mcp_client_config
from sandbox.config import PACKAGE_DIR
from sandbox.errors import SandboxError
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
        token_endpoint="http://127.0.0.1:18080/realms/acme/protocol/openid-connect/token",
        servers=["http://127.0.0.1:18083/mcp"],
        tools=["logs.read"],
        scopes=["mcp:tool:logs.read"],
        credential=credential_reference("client_secret", "bot"),
    ).document()
    text = json.dumps(config)
    assert SECRET not in text and 'secret": "' not in text
    server = config["mcpServers"]["127.0.0.1-18083"]
    assert server["auth"]["credential"] == {"type": "client_secret", "env": "MCP_AGENT_CLIENT_SECRET"}
    assert server["auth"]["tokenEndpoint"] == "http://127.0.0.1:18080/realms/acme/protocol/openid-connect/token"
    assert server["allowedTools"] == ["logs.read"] and server["auth"]["resource"] == server["url"]


def test_private_keys_are_named_by_file() -> None:
    assert credential_reference("private_key_jwt", "bot").document() == {
        "type": "private_key_jwt",
        "file": "~/.config/mcp-agents/bot.private.jwk",
    }
    assert credential_reference("client_secret", "bot", source="file", reference="/run/secrets/bot").document() == {
        "type": "client_secret",
        "file": "/run/secrets/bot",
    }


def generic_config(servers: list[str], credential: CredentialSource | None = None) -> McpClientConfig:
    return mcp_client_config(
        name="bot",
        client_id="agent-bot-1",
        issuer="http://127.0.0.1:18080/realms/acme",
        token_endpoint="http://127.0.0.1:18080/realms/acme/protocol/openid-connect/token",
        servers=servers,
        tools=["logs.read"],
        scopes=["mcp:tool:logs.read"],
        credential=credential or credential_reference("client_secret", "bot"),
    )


SERVERS = ["http://127.0.0.1:18083/mcp", "http://127.0.0.1:18084/mcp", "http://127.0.0.1:18085/mcp"]


@pytest.mark.parametrize(
    ("host", "top"), [("claude-code", "mcpServers"), ("vscode", "servers"), ("cursor", "mcpServers")]
)
def test_each_host_gets_one_server_in_its_own_shape(host: str, top: str) -> None:
    shaped = host_config(host, generic_config(SERVERS), SERVERS[1])
    assert set(shaped) == {top} and len(shaped[top]) == 1
    (server,) = shaped[top].values()
    assert server["url"] == SERVERS[1] and "auth" not in server
    assert SECRET not in json.dumps(shaped)


def test_claude_code_gets_a_header_helper_naming_the_secret_by_variable() -> None:
    (server,) = host_config("claude-code", generic_config(SERVERS), SERVERS[0])["mcpServers"].values()
    assert server["type"] == "http" and "headers" not in server
    assert server["headersHelper"] == (
        "mcp-sandbox agents token --client-id agent-bot-1 --issuer http://127.0.0.1:18080/realms/acme "
        "--server http://127.0.0.1:18083/mcp --secret-env MCP_AGENT_CLIENT_SECRET --header-json"
    )
    key = credential_reference("private_key_jwt", "bot")
    (keyed,) = host_config("claude-code", generic_config(SERVERS, key), SERVERS[0])["mcpServers"].values()
    assert "--key-file ~/.config/mcp-agents/bot.private.jwk" in keyed["headersHelper"]
    (by_env,) = host_config("claude-code", generic_config(SERVERS), SERVERS[0], token_env="TOK")["mcpServers"].values()
    assert by_env["headers"] == {"Authorization": "Bearer ${TOK}"} and "headersHelper" not in by_env


def test_vscode_and_cursor_read_the_token_from_the_environment() -> None:
    (vscode,) = host_config("vscode", generic_config(SERVERS), SERVERS[0])["servers"].values()
    assert vscode == {"type": "http", "url": SERVERS[0], "headers": {"Authorization": "Bearer ${env:MCP_AGENT_TOKEN}"}}
    (cursor,) = host_config("cursor", generic_config(SERVERS), SERVERS[0], token_env="T")["mcpServers"].values()
    assert cursor == {"url": SERVERS[0], "headers": {"Authorization": "Bearer ${env:T}"}}


def test_json_keeps_the_sandbox_shape_for_one_server_and_a_server_the_agent_lacks_is_refused() -> None:
    shaped = host_config("json", generic_config(SERVERS), None)
    assert list(shaped["mcpServers"]) == ["127.0.0.1-18083"] and shaped["agent"]["clientId"] == "agent-bot-1"
    with pytest.raises(ValueError, match=r"may not call http://127.0.0.1:9/mcp \(its servers: "):
        host_config("vscode", generic_config(SERVERS), "http://127.0.0.1:9/mcp")


def test_an_issuer_without_resource_indicators_gets_the_audience_to_ask_for() -> None:
    def auth(audience_parameter: bool) -> dict[str, Any]:
        config = mcp_client_config(
            name="bot",
            client_id="agent-bot-1",
            issuer="http://127.0.0.1:18090/",
            token_endpoint="http://127.0.0.1:18090/oauth2/token",
            servers=["http://127.0.0.1:18083/mcp"],
            tools=[],
            scopes=[],
            credential=credential_reference("client_secret", "bot"),
            audience_parameter=audience_parameter,
        )
        return dict(config.document()["mcpServers"]["127.0.0.1-18083"]["auth"])

    assert auth(True)["audience"] == auth(True)["resource"] == "http://127.0.0.1:18083/mcp"
    assert "audience" not in auth(False)  # Keycloak takes resource= (RFC 8707)


def test_a_config_read_back_is_the_one_written_and_a_wrong_one_is_one_line() -> None:
    written = generic_config(SERVERS).document()
    assert McpClientConfig.read(json.loads(json.dumps(written)), "the file").document() == written
    broken = {**written, "agent": {"name": "bot"}}
    with pytest.raises(SandboxError) as refused:
        McpClientConfig.read(broken, "the broker's answer")
    assert str(refused.value).startswith(
        "the broker's answer is not an MCP client config (agent.clientId: Field required)"
    )
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("places", [{}, {"env": "A", "file": "/b"}])
def test_a_credential_source_names_exactly_one_place(places: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one of env and file"):
        CredentialSource(type="client_secret", **places)
