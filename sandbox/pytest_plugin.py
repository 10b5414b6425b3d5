"""pytest plugin (entry point ``pytest11``): the sandbox stack and its parts as fixtures.

By default a test session gets a private stack: its own state directory and free ports, so it
never disturbs a sandbox you started with ``make sandbox``. It starts on first use (one start even
under pytest-xdist) and stops when the session ends. ``--sandbox-stack=running`` uses the stack
``mcp-sandbox up`` started instead. Either way, a missing stack fails the tests; it never skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from sandbox.agent.sdk import client_credentials_provider, connect
from sandbox.config import Settings, load_settings
from sandbox.harness.agents import ProvisionedAgent, provision_agent
from sandbox.harness.tenants import Tenant, create_tenant, delete_tenant
from sandbox.stack.launcher import Stack
from sandbox.stack.ports import private_stack_environment
from sandbox.stack.state import StackState, load_state

_PRIVATE_MARKER = "SANDBOX_PYTEST_PRIVATE_STACK"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mcp-sandbox")
    group.addoption(
        "--sandbox-stack",
        choices=("private", "running"),
        default="private",
        help="private: start a stack for this session on free ports (default); "
        "running: use the stack `mcp-sandbox up` started.",
    )


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_worker(config) or config.getoption("--sandbox-stack") != "private" or _PRIVATE_MARKER in os.environ:
        return
    # Decide the private stack's place and ports once, in the controlling process; workers inherit them.
    state_dir = tempfile.mkdtemp(prefix="mcp-sandbox-test-")
    os.environ[_PRIVATE_MARKER] = state_dir
    for key, value in private_stack_environment(Path(state_dir)).items():
        os.environ.setdefault(key, value)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _is_worker(config):
        return
    private = os.environ.get(_PRIVATE_MARKER)
    if private and config.getoption("--sandbox-stack") == "private":
        settings = load_settings()
        if settings.state_file.exists():
            Stack(settings).down()
        with contextlib.suppress(OSError):
            os.rmdir(private)  # only when empty: logs of a started stack stay for reading


@dataclass(frozen=True)
class SandboxStack:
    """A running stack: its settings (URLs, ports) and what its components reported."""

    settings: Settings
    state: StackState

    def issuer(self, tenant: str) -> str:
        return self.settings.issuer(tenant)

    @property
    def tenants(self) -> list[str]:
        return list(self.state.components["keycloak"].details.get("tenants", {}))


_STACK: SandboxStack | None = None


def running_stack(config: pytest.Config) -> SandboxStack:
    """The stack for this test process: started once if the session owns a private one; never skipped."""
    global _STACK
    if _STACK is None:
        settings = load_settings()
        stack = Stack(settings)
        if config.getoption("--sandbox-stack") == "private":
            state = stack.up()
        else:
            state = load_state(settings)
            not_running = [s.name for s in stack.status() if s.state != "running"]
            if state is None or not_running:
                pytest.fail(
                    f"--sandbox-stack=running, but these components are not running: {', '.join(not_running)}; "
                    "start the stack with `mcp-sandbox up`",
                    pytrace=False,
                )
        _STACK = SandboxStack(settings, state)
    return _STACK


@pytest.fixture(scope="session")
def sandbox_settings(sandbox_stack: SandboxStack) -> Settings:
    return sandbox_stack.settings


@pytest.fixture(scope="session")
def sandbox_stack(request: pytest.FixtureRequest) -> SandboxStack:
    """The running stack (Keycloak, the reference MCP servers, the broker); started now if this session owns it."""
    return running_stack(request.config)


@pytest.fixture
def sandbox_tenant(sandbox_stack: SandboxStack) -> Iterator[Tenant]:
    """A fresh tenant of its own (a Keycloak realm) with one admin `admin` who logs in with OTP; removed after."""
    tenant = create_tenant(sandbox_stack.settings, {"admin": True}, prefix="pytest")
    yield tenant
    delete_tenant(sandbox_stack.settings, tenant.name)


@pytest.fixture
def sandbox_agent(sandbox_stack: SandboxStack, sandbox_tenant: Tenant) -> Callable[..., ProvisionedAgent]:
    """Provision agents in the test's tenant: ``sandbox_agent(role="invoice-writer", environment="staging")``."""

    def make(role: str, **options: Any) -> ProvisionedAgent:
        return provision_agent(sandbox_stack.settings, sandbox_tenant, sandbox_tenant.admins["admin"], role, **options)

    return make


@pytest.fixture
def sandbox_mcp_client(sandbox_stack: SandboxStack) -> Callable[..., AbstractAsyncContextManager[Client]]:
    """``async with sandbox_mcp_client(agent) as mcp:`` the official MCP SDK client, authenticated as the agent
    (client credentials, discovered from the server's 401), on the reference server (``mode=`` picks another)."""

    def connect_as(agent: ProvisionedAgent, mode: str = "jwt+events") -> AbstractAsyncContextManager[Client]:
        secret = getattr(agent.credential, "secret", None)
        if secret is None:
            raise ValueError("sandbox_mcp_client needs a client_secret agent (the SDK provider takes a secret)")
        url = sandbox_stack.settings.mcp_server(mode).url
        return connect(url, client_credentials_provider(url, agent.client_id, secret, agent.tenant.issuer))

    return connect_as


# Scenario files collected as tests: every *.yaml with top-level `steps` in a directory named `scenarios`.


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".yaml" and file_path.parent.name == "scenarios":
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from sandbox.scenarios.loader import load_scenario

        scenario = load_scenario(self.path)  # a broken file fails collection with file:line, before anything runs
        yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.add_marker(pytest.mark.e2e)
        self.add_marker(pytest.mark.scenario)

    def runtest(self) -> None:
        from sandbox.scenarios.runner import run_scenario

        stack = running_stack(self.config)
        result = asyncio.run(run_scenario(stack.settings, self.scenario))
        self.user_properties.append(("tenant", result.tenant))
        self.add_report_section("call", "steps", "\n".join(step.describe() for step in result.steps))
        if result.not_supported is not None:  # a distinct outcome, never a pass: the IdP lacks what a step needs
            pytest.skip(result.summary())
        if not result.passed:
            raise ScenarioFailed(result.summary())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.scenario.name}"


class ScenarioFailed(AssertionError):
    """A scenario's step did not hold: the message names the step, the expected and the actual outcome."""
