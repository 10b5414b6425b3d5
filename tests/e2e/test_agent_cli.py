"""``mcp-sandbox tools`` and ``call``: an agent's MCP client from the command line, against the real stack."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from sandbox.cli import agent_commands
from sandbox.harness.provisioning import ProvisionedAgent, provision_agent
from sandbox.harness.tenants import create_tenant, delete_tenant
from sandbox.issued import stored_on_purpose
from sandbox.pytest_plugin import SandboxStack

BIN = Path(sys.executable).parent


def mcp_sandbox(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "mcp-sandbox"), *args], capture_output=True, text=True, env=env, timeout=180)


def agent_env(agent: ProvisionedAgent) -> dict[str, str]:
    return {**os.environ, "AGENT_SECRET": getattr(agent.credential, "secret", "")}


def test_the_agent_finds_its_own_issuer_among_those_the_server_lists(
    sandbox_stack: SandboxStack, sandbox_agent: Callable[..., ProvisionedAgent]
) -> None:
    agent = sandbox_agent(role="invoice-writer")
    url = sandbox_stack.settings.mcp_url
    listed = httpx.get(
        f"{sandbox_stack.settings.mcp_server('jwt+events').origin}/.well-known/oauth-protected-resource/mcp"
    )
    issuers = listed.json()["authorization_servers"]
    assert agent.tenant.issuer in issuers and issuers[0] != agent.tenant.issuer  # the first one would refuse it
    env = agent_env(agent)
    tools = mcp_sandbox("tools", "--url", url, "--client-id", agent.client_id, "--secret-env", "AGENT_SECRET", env=env)
    assert tools.returncode == 0, tools.stderr
    assert set(tools.stdout.split()) == {"invoices.create", "invoices.list"}
    called = mcp_sandbox(
        "call",
        "--url",
        url,
        "--client-id",
        agent.client_id,
        "--secret-env",
        "AGENT_SECRET",
        "invoices.list",
        "{}",
        env=env,
    )
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert not result.get("isError") and result["structuredContent"]["tenant"] == agent.tenant.name


def test_a_refused_call_is_one_line_with_the_challenge_and_exit_1(
    sandbox_stack: SandboxStack, sandbox_agent: Callable[..., ProvisionedAgent]
) -> None:
    agent = sandbox_agent(role="read-only-analytics")
    env = agent_env(agent) | {
        "MCP_AGENT_CLIENT_SECRET": getattr(agent.credential, "secret", ""),
        "SANDBOX_BROKER_TOKEN": agent.tenant.admins["admin"].token(),
    }
    refused = mcp_sandbox(
        "call",
        "--as",
        agent.id,
        "-t",
        agent.tenant.name,
        "invoices.create",
        '{"customer": "x", "amount_cents": 1}',
        env=env,
    )
    assert refused.returncode == 1 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the MCP server refused: 403 Bearer"), refused.stderr
    assert 'error="insufficient_scope"' in lines[0]
    wrong = mcp_sandbox(
        "tools",
        "--url",
        sandbox_stack.settings.mcp_url,
        "--client-id",
        agent.client_id,
        env=os.environ | {"MCP_AGENT_CLIENT_SECRET": "not-the-secret"},
    )
    assert wrong.returncode == 1 and len(wrong.stderr.strip().splitlines()) == 1
    assert "no authorization server" in wrong.stderr and "401 " in wrong.stderr


def test_a_private_key_agent_calls_with_its_key_file(
    sandbox_stack: SandboxStack, sandbox_agent: Callable[..., ProvisionedAgent], tmp_path: Path
) -> None:
    agent = sandbox_agent(role="log-reader", credential="private_key_jwt")
    key_file = tmp_path / "agent.jwk"
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(agent.credential.private_jwk, out)  # type: ignore[union-attr]
    stored_on_purpose(key_file)  # the agent's own key file, not a leak, for the run's secret scan
    listed = mcp_sandbox(
        "tools",
        "--client-id",
        agent.client_id,
        "--key-file",
        str(key_file),
        "--issuer",
        agent.tenant.issuer,
        env=dict(os.environ),
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["logs.read"]


def test_the_commands_info_prints_get_a_token_the_server_takes_and_list_the_agents_tools(
    sandbox_stack: SandboxStack, sandbox_agent: Callable[..., ProvisionedAgent]
) -> None:
    agent = sandbox_agent(role="read-only-analytics")
    script = "\n".join([*agent_commands(sandbox_stack.settings, agent.tenant.name, agent.id)])
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MCP_AGENT_CLIENT_SECRET": getattr(agent.credential, "secret", ""),
        "SANDBOX_BROKER_TOKEN": agent.tenant.admins["admin"].token(),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert [tool["name"] for tool in answer["result"]["tools"]] == ["analytics.query"]


def test_a_sandbox_agent_on_hydra_gets_its_token_from_its_tenant_s_hydra(sandbox_stack: SandboxStack) -> None:
    settings = sandbox_stack.settings
    assert settings.hydra_pool, "the test session's stack lends Hydras"
    tenant = create_tenant(settings, {"admin": False}, prefix="cli-hydra", idp="hydra")
    try:
        assert tenant.agents_issuer != tenant.issuer  # --as must take the Hydra's, not the realm's
        agent = provision_agent(settings, tenant, tenant.admins["admin"], "read-only-analytics")
        env = {
            **os.environ,
            "MCP_AGENT_CLIENT_SECRET": getattr(agent.credential, "secret", ""),
            "SANDBOX_BROKER_TOKEN": tenant.admins["admin"].token(),
        }
        issued = mcp_sandbox("agents", "token", "-t", tenant.name, agent.id, env=env)
        assert issued.returncode == 0, issued.stderr
        payload = issued.stdout.strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["iss"] == tenant.agents_issuer
        listed = mcp_sandbox("tools", "--as", agent.id, "-t", tenant.name, env=env)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split() == ["analytics.query"]
    finally:
        delete_tenant(settings, tenant.name)
