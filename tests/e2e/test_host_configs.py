"""Generated host configs, loaded the way each host loads them, make a real tool call on the reference server.

VS Code reads ``servers`` from ``.vscode/mcp.json`` and substitutes ``${env:NAME}`` in headers; Claude Code reads
``mcpServers`` from ``.mcp.json`` and runs a ``headersHelper`` command in a shell, taking the JSON object it prints
as headers. The tests do exactly that, then call a tool with the official MCP SDK client and those headers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from sandbox.harness.provisioning import ProvisionedAgent
from sandbox.pytest_plugin import SandboxStack

BIN = Path(sys.executable).parent
SECRET_ENV = "MCP_AGENT_CLIENT_SECRET"


def mcp_sandbox(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(BIN / "mcp-sandbox"), *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def environment(agent: ProvisionedAgent, **extra: str) -> dict[str, str]:
    secret = getattr(agent.credential, "secret", "")
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SANDBOX_BROKER_TOKEN": agent.tenant.admins["admin"].token(),
        SECRET_ENV: secret,
        **extra,
    }


def generate(agent: ProvisionedAgent, host: str, path: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    mcp_sandbox(
        "agents", "config", "-t", agent.tenant.name, agent.id, "--format", host, "-o", str(path), *extra, env=env
    )
    text = path.read_text()
    assert env[SECRET_ENV] not in text, "the generated config holds the agent's secret"
    return json.loads(text)


async def call_tool(url: str, headers: dict[str, str]) -> Any:
    async with (
        httpx2.AsyncClient(headers=headers, trust_env=False, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as mcp,
    ):
        tools = [tool.name for tool in (await mcp.list_tools()).tools]
        result = await mcp.call_tool("invoices.list", {})
    return tools, result


def test_a_vscode_config_makes_a_real_tool_call(
    sandbox_stack: SandboxStack, sandbox_agent: Callable[..., ProvisionedAgent], tmp_path: Path
) -> None:
    agent = sandbox_agent(role="invoice-writer")
    env = environment(agent)
    (tmp_path / ".vscode").mkdir()  # the workspace's folder, as VS Code makes it; `agents config` creates no folder
    config = generate(agent, "vscode", tmp_path / ".vscode" / "mcp.json", env)
    assert set(config) == {"servers"} and len(config["servers"]) == 1  # one server, as VS Code reads it
    (server,) = config["servers"].values()
    assert server["type"] == "http" and server["url"] == sandbox_stack.settings.mcp_url
    # The user fills the variable the file names with `agents token`, then VS Code substitutes ${env:NAME}.
    (variable,) = {name for value in server["headers"].values() for name in re.findall(r"\$\{env:(\w+)\}", value)}
    env[variable] = mcp_sandbox("agents", "token", "-t", agent.tenant.name, agent.id, env=env).stdout.strip()
    headers = {k: re.sub(r"\$\{env:(\w+)\}", lambda m: env[m.group(1)], v) for k, v in server["headers"].items()}
    tools, result = asyncio.run(call_tool(server["url"], headers))
    assert "invoices.list" in tools and "deploy.trigger" not in tools
    assert not result.is_error and result.structured_content["tenant"] == agent.tenant.name


def test_a_claude_code_config_makes_a_real_tool_call_through_its_header_helper(
    sandbox_stack: SandboxStack, sandbox_agent: Callable[..., ProvisionedAgent], tmp_path: Path
) -> None:
    agent = sandbox_agent(role="invoice-writer")
    env = environment(agent)
    config = generate(agent, "claude-code", tmp_path / ".mcp.json", env)
    assert set(config) == {"mcpServers"} and len(config["mcpServers"]) == 1
    (server,) = config["mcpServers"].values()
    assert server["type"] == "http" and server["url"] == sandbox_stack.settings.mcp_url
    # Claude Code runs the helper in a shell and sends the JSON object it prints as headers.
    helper = subprocess.run(
        server["headersHelper"], shell=True, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert helper.returncode == 0, helper.stderr
    headers = json.loads(helper.stdout)
    assert set(headers) == {"Authorization"}
    tools, result = asyncio.run(call_tool(server["url"], headers))
    assert "invoices.list" in tools and not result.is_error


@pytest.mark.parametrize("host", ["cursor", "json"])
def test_other_formats_name_one_server_and_never_the_secret(
    sandbox_stack: SandboxStack, sandbox_agent: Callable[..., ProvisionedAgent], tmp_path: Path, host: str
) -> None:
    agent = sandbox_agent(role="log-reader")
    config = generate(agent, host, tmp_path / f"{host}.json", environment(agent))
    assert len(config["mcpServers"]) == 1
    (server,) = config["mcpServers"].values()
    assert server["url"] == sandbox_stack.settings.mcp_url
    if host == "cursor":
        assert server["headers"] == {"Authorization": "Bearer ${env:MCP_AGENT_TOKEN}"}
    else:
        assert server["auth"]["credential"] == {"type": "client_secret", "env": SECRET_ENV}
