"""What the reliability tests share: the stack's broker spoken to over HTTP, fresh tenants, broker processes a
test may kill, the audit check, and the agents Keycloak holds for a tenant."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from broker.conftest import Broker, Tenant

from sandbox.config import Settings
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.idp.realm import AGENT_ATTRIBUTE
from sandbox.pytest_plugin import SandboxStack
from sandbox.stack.ports import free_port
from sandbox.stack.readiness import last_lines

HERE = Path(__file__).parent
MCP_SANDBOX = str(Path(sys.executable).parent / "mcp-sandbox")
LIVE = ("provisioning", "pending_approval", "active", "rotating", "dormant", "revoking")


@pytest.fixture(scope="session")
def broker(sandbox_stack: SandboxStack) -> Iterator[Broker]:
    kit = Broker(sandbox_stack)
    yield kit
    kit.http.close()


@pytest.fixture
def tenant(broker: Broker) -> Tenant:
    """A tenant of its own: alice and bob log in with OTP, carol with a password only."""
    return broker.new_tenant("rel")


class BrokerProcess:
    """``python -m sandbox.broker`` as the stack runs it, on a port and database of its own, killed at will."""

    def __init__(self, settings: Settings, database_url: str, *, name: str, extra: dict[str, str] | None = None):
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.log = settings.log_dir / f"{name}.log"  # beside the stack's logs: the secret scan reads it too
        self.environment = {
            **os.environ,
            **settings.as_environment(),
            "SANDBOX_BROKER_PORT": str(self.port),
            "SANDBOX_BROKER_DATABASE_URL": database_url,
            "SANDBOX_BROKER_HOUSEKEEPING_INTERVAL": "0.5",
            "SANDBOX_BROKER_MOVABLE_CLOCK": "false",
            **(extra or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *arguments: str) -> BrokerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(HERE / "killable_broker.py"), *arguments],
                env=self.environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the broker process did not start: {last_lines(self.log)}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no clean-up, no last write."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def client(self, stack: SandboxStack) -> Broker:
        kit = Broker(stack)
        kit.url = self.url
        kit.http = httpx.Client(base_url=self.url, timeout=60)
        return kit


def audit_verify(settings: Settings, database_url: str) -> subprocess.CompletedProcess[str]:
    """``mcp-sandbox audit verify`` on that database, as an operator would run it."""
    return subprocess.run(
        [MCP_SANDBOX, "audit", "verify", "--database-url", database_url],
        env={**os.environ, **settings.as_environment()},
        capture_output=True,
        text=True,
        timeout=120,
    )


def keycloak_agents(settings: Settings, realm: str) -> dict[str, bool]:
    """The agent clients Keycloak holds in a tenant realm: client id -> enabled."""

    async def read() -> list[dict[str, Any]]:
        return await KeycloakAdapter.from_settings(settings).admin(realm).a_get_clients()  # type: ignore[no-any-return]

    clients = asyncio.run(read())
    return {c["clientId"]: c["enabled"] for c in clients if (c.get("attributes") or {}).get(AGENT_ATTRIBUTE) == "true"}


def live_agents(broker: Broker, tenant: Tenant, token: str) -> dict[str, dict[str, Any]]:
    """The tenant's agents the broker lists as live, by client id."""
    listed = broker.call("GET", f"/tenants/{tenant.name}/agents", token)
    assert listed.status_code == 200, listed.text
    return {a["client_id"]: a for a in listed.json() if a["status"] in LIVE}


def wait_for(check: Any, *, budget: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``budget`` seconds."""
    deadline = time.monotonic() + budget
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {budget:.0f}s")
        time.sleep(0.25)
