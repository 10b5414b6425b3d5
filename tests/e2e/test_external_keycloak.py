"""Against a team's own Keycloak: the harness uses it through an admin service account instead of starting
one, each scenario makes and removes its own realm there, and nothing else in it changes.

The session's Keycloak plays the team's Keycloak: a second stack (its own broker and MCP servers, no
Keycloak of its own) is pointed at it as if it were external.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.realm import ADMIN_CLIENT_ID
from sandbox.pytest_plugin import SandboxStack
from sandbox.stack.ports import private_stack_environment
from sandbox.stack_secrets import Secrets

MCP_SANDBOX = str(Path(sys.executable).parent / "mcp-sandbox")
SCENARIOS = Path(__file__).parents[2] / "scenarios"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MCP_SANDBOX, *args], capture_output=True, text=True, timeout=900, env={**os.environ, **env})


async def snapshot(adapter: KeycloakAdapter) -> dict[str, list[str]]:
    """Every realm of the Keycloak, with its clients' ids: what 'touching nothing else' is checked against."""
    realms = await adapter.admin("master").a_get_realms()
    return {
        realm["realm"]: sorted(client["clientId"] for client in await adapter.admin(realm["realm"]).a_get_clients())
        for realm in realms
    }


def test_scenarios_run_against_an_existing_keycloak_and_leave_it_as_it_was(
    sandbox_stack: SandboxStack, tmp_path: Path
) -> None:
    team = sandbox_stack.settings
    env = {
        **private_stack_environment(tmp_path / "state"),
        "SANDBOX_KEYCLOAK_URL": team.keycloak_base_url,
        "SANDBOX_KEYCLOAK_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
        "SANDBOX_KEYCLOAK_ADMIN_CLIENT_SECRET": Secrets(team).get(ADMIN_CLIENT_ID) or "",
    }
    adapter = KeycloakAdapter.from_settings(team)
    before = asyncio.run(snapshot(adapter))
    up = run("up", env=env)
    assert up.returncode == 0, up.stderr
    try:
        status = {c["name"]: c for c in json.loads(run("status", "--json", env=env).stdout)["components"]}
        assert status["keycloak"]["url"] == team.keycloak_base_url and status["keycloak"]["pid"] is None
        scenario = run("run", str(SCENARIOS / "01-least-privilege.yaml"), str(SCENARIOS / "06-revoke-then-401.yaml"),
                       env=env)  # fmt: skip
        assert scenario.returncode == 0, scenario.stdout + scenario.stderr
        assert "2 of 2 scenarios passed" in scenario.stdout
    finally:
        down = run("down", env=env)
    assert down.returncode == 0, down.stderr
    after = asyncio.run(snapshot(KeycloakAdapter.from_settings(team)))
    assert after == before
