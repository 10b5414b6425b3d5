"""A component of the stack: something that starts, becomes ready, and stops.

The launcher only knows this interface, so the broker and the MCP server (and container
variants of everything) plug in as more components without changing it.
"""

from __future__ import annotations

import os
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import Settings
from sandbox.errors import StartupFailed
from sandbox.stack import process
from sandbox.stack.readiness import answers, wait_for_http
from sandbox.stack.state import ComponentState

Report = Callable[[str], None]


@dataclass(frozen=True)
class Port:
    number: int
    purpose: str
    setting: str  # the environment variable that moves it


class Component(ABC):
    name: str
    #: Components that must be ready before this one starts; the others start side by side.
    needs: tuple[str, ...] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def log_path(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    def ports(self) -> list[Port]:
        return []

    def prepare(self, report: Report) -> None:  # noqa: B027 - optional hook
        """Slow one-time work before start (fetch, unpack, build). Safe to repeat."""

    def clear_data(self) -> None:  # noqa: B027 - optional hook
        """Remove the data a stopped stack left behind, so `up` starts clean; whoever starts it calls this."""

    @abstractmethod
    def start(self) -> ComponentState:
        """Launch, without waiting; the returned state is saved at once so `down` can find it."""

    @abstractmethod
    def wait_ready(self, state: ComponentState) -> None:
        """Block until the component serves, or raise StartupFailed."""

    def configure(self, state: ComponentState, report: Report) -> None:  # noqa: B027 - optional hook
        """Work after readiness (create realms, register servers)."""

    @abstractmethod
    def is_running(self, state: ComponentState) -> bool: ...

    @abstractmethod
    def stop(self, state: ComponentState) -> None: ...

    def is_healthy(self, state: ComponentState) -> bool:
        return answers(state.health_url)

    def memory_bytes(self, state: ComponentState) -> int | None:
        return None


class ProcessComponent(Component):
    """A component run as a local process in its own process group, logging to a file."""

    @abstractmethod
    def command(self) -> list[str]: ...

    @property
    @abstractmethod
    def url(self) -> str: ...

    @property
    @abstractmethod
    def health_url(self) -> str: ...

    #: What a process inherits from the caller's environment (nothing of it applies inside a container).
    inherited = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")

    def environment(self) -> dict[str, str]:
        env = {key: os.environ[key] for key in self.inherited if key in os.environ}
        env.update(self.settings.as_environment())
        env.update(process.markers(self.settings.state_dir))  # so `down` finds it even without the state file
        return env

    def run_once(self, command: list[str], *, env: dict[str, str], timeout: float, what: str, fix: str) -> None:
        """A one-off command before the process starts (a migration, a database made), written into its log;
        :class:`StartupFailed` naming ``what`` and ``fix`` when it fails."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            done = subprocess.run(
                command,
                env=env,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        if done.returncode != 0:
            raise StartupFailed(f"{self.name}: {what} failed with exit {done.returncode}", fix)

    def start(self) -> ComponentState:
        record = process.spawn(self.command(), env=self.environment(), log_path=self.log_path)
        return ComponentState(
            name=self.name,
            url=self.url,
            health_url=self.health_url,
            log=str(self.log_path),
            ports={port.purpose: port.number for port in self.ports()},
            process=record,
        )

    def wait_ready(self, state: ComponentState) -> None:
        assert state.process is not None
        record = state.process
        wait_for_http(
            self.name,
            state.health_url,
            timeout=self.settings.startup_timeout,
            alive=lambda: process.is_alive(record),
            log=self.log_path,
        )

    def is_running(self, state: ComponentState) -> bool:
        return state.process is not None and process.is_alive(state.process)

    def stop(self, state: ComponentState) -> None:
        if state.process is not None:
            process.stop(state.process)

    def memory_bytes(self, state: ComponentState) -> int | None:
        return process.rss_bytes(state.process) if state.process else None
