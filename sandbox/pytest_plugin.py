"""pytest plugin (entry point ``pytest11``): the sandbox stack and its parts as fixtures.

By default a test session gets a private stack: its own state directory and free ports, so it
never disturbs a sandbox you started with ``make sandbox``. It starts on first use (one start even
under pytest-xdist) and stops when the session ends. ``--sandbox-stack=running`` uses the stack
``mcp-sandbox up`` started instead. Either way, a missing stack fails the tests; it never skips them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.config import Settings, load_settings
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


@pytest.fixture(scope="session")
def sandbox_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def sandbox_stack(request: pytest.FixtureRequest, sandbox_settings: Settings) -> Iterator[SandboxStack]:
    """The running stack; started now if this session owns a private one."""
    stack = Stack(sandbox_settings)
    if request.config.getoption("--sandbox-stack") == "private":
        state = stack.up()
    else:
        state = load_state(sandbox_settings)
        not_running = [s.name for s in stack.status() if s.state != "running"]
        if state is None or not_running:
            pytest.fail(
                f"--sandbox-stack=running, but these components are not running: {', '.join(not_running)}; "
                "start the stack with `mcp-sandbox up`",
                pytrace=False,
            )
    yield SandboxStack(sandbox_settings, state)
