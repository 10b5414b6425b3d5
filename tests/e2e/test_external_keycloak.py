"""Against a team's own Keycloak: the harness uses it through an admin service account instead of starting
one, each scenario makes and removes its own realm there, and nothing else in it changes.

The session's Keycloak plays the team's Keycloak: a second stack (its own broker and MCP servers, no
Keycloak of its own) is pointed at it as if it were external. Other tests use that Keycloak at the same
time (their tenants come and go, their agents are added to the seeded realms), so what is compared is what
the second stack could have touched: the realms of the tenants it made (read from its own audit log), the
realms that were there before, and the master realm's own clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
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


async def realms_and_master_clients(adapter: KeycloakAdapter) -> tuple[set[str], set[str]]:
    """The Keycloak's realms, and the master realm's clients except the one Keycloak adds for each realm."""
    realms = {realm["realm"] for realm in await adapter.admin("master").a_get_realms()}
    clients = {client["clientId"] for client in await adapter.admin("master").a_get_clients()}
    return realms, {client for client in clients if not client.endswith("-realm")}


def tenants_made(state_dir: Path) -> set[str]:
    """The tenants a stack's broker created, from its audit log (entries outlive the tenant)."""
    with sqlite3.connect(f"file:{state_dir / 'broker' / 'broker.db'}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT tenant FROM audit WHERE action = 'tenant.created'")}


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
    realms_before, master_before = asyncio.run(realms_and_master_clients(KeycloakAdapter.from_settings(team)))
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
    realms_after, master_after = asyncio.run(realms_and_master_clients(KeycloakAdapter.from_settings(team)))
    made = tenants_made(tmp_path / "state")
    assert len(made) >= 2, made  # one fresh tenant per scenario at least
    assert made & realms_after == set(), "the scenarios' realms were left behind"
    lasting = {"master", *team.tenants}  # other tests' tenants come and go; these stay for the session
    assert lasting <= realms_before and lasting <= realms_after, "realms that were there before are gone"
    assert master_after == master_before
