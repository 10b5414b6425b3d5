"""pytest plugin (entry point ``pytest11``): the sandbox stack and its parts as fixtures.

By default a test session gets a private stack: its own state directory and free ports, so it
never disturbs a sandbox you started with ``make sandbox``. It starts on first use and stops when the
session ends. ``--sandbox-stack=running`` uses the stack ``mcp-sandbox up`` started instead. Either
way, a missing stack fails the tests; it never skips them.

Under pytest-xdist the workers share the session's stack through :class:`SharedStart`: the first worker
that needs it starts it and writes the outcome beside it; the others wait on the same lock and read that
outcome, so they never probe or restart a stack that is busy, and a failed start fails every worker with
the same message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from mcp import Client

from sandbox.agent.session import agent_session
from sandbox.config import DEFAULT_IDP, IDP_NAMES, IdpName, Settings, load_settings
from sandbox.errors import SandboxError
from sandbox.harness.provisioning import ProvisionedAgent, provision_agent
from sandbox.harness.tenants import Tenant, create_tenant, delete_tenant
from sandbox.stack.launcher import Stack
from sandbox.stack.ports import TEST_HYDRA_POOL, private_stack_environment
from sandbox.stack.process import RUN_MARKER
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
    if _is_worker(config):
        return
    # Every process a stack of this run starts carries the run's id, so the run can prove it left none behind.
    os.environ.setdefault(RUN_MARKER, uuid.uuid4().hex)
    if config.getoption("--sandbox-stack") != "private" or _PRIVATE_MARKER in os.environ:
        return
    # Decide the private stack's place and ports once, in the controlling process; workers inherit them.
    state_dir = tempfile.mkdtemp(prefix="mcp-sandbox-test-")
    os.environ[_PRIVATE_MARKER] = state_dir
    for key, value in private_stack_environment(Path(state_dir), hydra_pool=TEST_HYDRA_POOL).items():
        os.environ[key] = value  # never a stack the user runs: `down` at the end would stop it


@pytest.hookimpl(tryfirst=True)  # before the checks of what the run left behind (the secret scan, leftovers)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop_private_stack(session.config)


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop_private_stack(config)  # when the session did not finish (interrupted); harmless when it did


def _stop_private_stack(config: pytest.Config) -> None:
    if _is_worker(config):
        return
    private = os.environ.get(_PRIVATE_MARKER)
    if private and config.getoption("--sandbox-stack") == "private":
        settings = load_settings()
        if settings.log_dir.is_dir():  # a stack was started (its state file may be damaged or gone)
            Stack(settings).down()
            SharedStart(settings).forget()
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
        return list(self.state.tenant_issuers)


class SharedStart:
    """One start of a session's private stack, shared by every worker of the session.

    The lock serialises the workers; the outcome file says whether the start (by whichever worker came
    first) succeeded, or why not. Nobody else calls ``up`` on the stack, so a worker never mistakes a
    busy stack for a stopped one.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outcome = settings.state_dir / "pytest-stack-outcome.json"
        self._lock = FileLock(str(settings.state_dir / ".pytest-stack.lock"), timeout=3600)

    def state(self) -> StackState:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if not self.outcome.exists():
                self._start()
            outcome = json.loads(self.outcome.read_text())
        if outcome["error"]:
            pytest.fail(f"the test session's stack did not start: {outcome['error']}", pytrace=False)
        state = load_state(self.settings)
        if state is None:
            pytest.fail(
                f"the test session's stack started, but its state file {self.settings.state_file} is gone",
                pytrace=False,
            )
        return state

    def _start(self) -> None:
        error = None
        try:
            Stack(self.settings).up()
        except SandboxError as exc:
            error = str(exc)
        except Exception as exc:  # a defect of ours: every worker reports it the same way, with its type
            error = f"{type(exc).__name__}: {exc}"
        self.outcome.write_text(json.dumps({"error": error}))

    def forget(self) -> None:
        self.outcome.unlink(missing_ok=True)


_STACK: SandboxStack | None = None


def running_stack(config: pytest.Config) -> SandboxStack:
    """The stack for this test process: started once if the session owns a private one; never skipped."""
    global _STACK
    if _STACK is None:
        settings = load_settings()
        stack = Stack(settings)
        if config.getoption("--sandbox-stack") == "private":
            state = SharedStart(settings).state()
        else:
            try:
                state = stack.ready()
            except SandboxError as error:
                pytest.fail(f"--sandbox-stack=running, but {error}", pytrace=False)
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
    (secret or private key; with its DPoP key when it has one; the authorization server found from the server's
    metadata), on the reference server
    (``mode=`` picks another of the stack's) or on your own (``url=``). A 401 or 403 of the server is raised as
    :class:`sandbox.agent.session.McpRefused` (status and challenge)."""

    def connect_as(
        agent: ProvisionedAgent, mode: str = "jwt+events", *, url: str | None = None
    ) -> AbstractAsyncContextManager[Client]:
        target = url or sandbox_stack.settings.mcp_server(mode).url
        return agent_session(target, agent.credential, issuer=agent.tenant.agents_issuer, dpop=agent.dpop)

    return connect_as


# Scenario files collected as tests: every *.yaml with top-level `steps` in a directory named `scenarios`.


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".yaml" and file_path.parent.name == "scenarios":
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from sandbox.scenarios.catalog import Catalog
        from sandbox.scenarios.loader import load_scenario

        # A broken file, or a name the stack's policy or tool map does not know, fails collection with file:line.
        settings = load_settings()
        scenario = load_scenario(self.path, Catalog.from_settings(settings))
        for idp in scenario_idps(settings):
            yield ScenarioItem.from_parent(self, name=f"{scenario.name}[{idp}]", scenario=scenario, idp=idp)


def scenario_idps(settings: Settings) -> list[str]:
    """The IdPs a stack's scenarios run on: Keycloak, and Hydra when the stack lends Hydras to new tenants."""
    return list(IDP_NAMES) if settings.hydra_pool else [DEFAULT_IDP]


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Any, idp: IdpName = DEFAULT_IDP, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.idp = idp
        self.add_marker(pytest.mark.e2e)
        self.add_marker(pytest.mark.scenario)

    def runtest(self) -> None:
        from sandbox.scenarios.runner import run_scenario

        stack = running_stack(self.config)
        result = asyncio.run(run_scenario(stack.settings, self.scenario, self.idp))
        self.user_properties.append(("tenant", result.tenant))
        for step in result.steps:  # what each step needed of the IdP, and whether it held (or was plainly refused)
            for capability in step.capabilities:
                held = step.outcome == "passed" or (
                    step.outcome == "not supported" and f"by {self.idp}:" in (step.message or "")
                )
                if step.outcome != "not run":
                    proof = {"idp": self.idp, "capability": capability, "passed": held, "test": self.nodeid}
                    self.user_properties.append(("capability", json.dumps(proof)))
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
