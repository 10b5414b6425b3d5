"""Bring a list of components up, report on them, and take them down again.

The launcher does not know what a component is: Keycloak, the broker and the MCP server
(and their container variants) all go through the same four steps.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
from filelock import FileLock
from rich.console import Console

from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.stack import process
from sandbox.stack.component import Component, Report
from sandbox.stack.ports import ensure_free
from sandbox.stack.readiness import last_lines
from sandbox.stack.state import ComponentState, StackState, StateDamaged, clear_state, load_state, save_state
from sandbox.stack_secrets import Secrets


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # running | unhealthy | dead | stopped
    url: str | None
    pid: int | None
    log: str | None
    memory_bytes: int | None = None


def default_components(settings: Settings) -> list[Component]:
    """The stack's components, in start order, for the configured runtime."""
    from sandbox.stack.broker import Broker
    from sandbox.stack.keycloak import ExternalKeycloak, LocalKeycloak
    from sandbox.stack.mcp_server import McpServer

    components: list[Component] = [
        ExternalKeycloak(settings) if settings.external_keycloak else LocalKeycloak(settings),
        *hydra_components(settings),
        *(McpServer(settings, server.mode) for server in settings.mcp_servers),
        Broker(settings),
    ]
    if settings.runtime == "docker":
        from sandbox.stack.docker_runtime import in_containers

        return in_containers(components)
    return components


def hydra_components(settings: Settings) -> list[Component]:
    """Agents on Hydra: one Hydra per sandbox tenant (``SANDBOX_IDP=hydra``) and the pool the broker lends to tenants
    created on Hydra (``SANDBOX_HYDRA_POOL``), beside Keycloak (the people's IdP)."""
    if not settings.hydras:
        return []
    if settings.runtime != "local":
        raise SandboxError(
            f"Ory Hydra runs only as local processes so far, not in the {settings.runtime} runtime",
            "use the local runtime (unset SANDBOX_RUNTIME) with SANDBOX_IDP=hydra or SANDBOX_HYDRA_POOL",
        )
    from sandbox.stack.hydra import Hydra
    from sandbox.stack.postgres import PostgresServer

    database = PostgresServer(settings)
    return [database, *(Hydra(settings, address.tenant, database) for address in settings.hydras)]


def waves(components: list[Component]) -> list[list[Component]]:
    """The components in start order, grouped: each group needs only what earlier groups (or running ones) made."""
    pending = list(components)
    waiting_for = {component.name for component in components}
    result: list[list[Component]] = []
    while pending:
        wave = [c for c in pending if not (set(c.needs) & waiting_for)]
        if not wave:
            raise SandboxError(
                f"components wait for each other: {', '.join(c.name for c in pending)}", "check their `needs`"
            )
        result.append(wave)
        pending = [c for c in pending if c not in wave]
        waiting_for -= {c.name for c in wave}
    return result


class Stack:
    def __init__(
        self,
        settings: Settings,
        components: list[Component] | None = None,
        console: Console | None = None,
    ) -> None:
        self.settings = settings
        self.components = components if components is not None else default_components(settings)
        self.console = console or Console(stderr=True)
        self._lock = FileLock(str(settings.state_dir / ".stack.lock"), timeout=900)

    def _state(self) -> StackState:
        return load_state(self.settings) or StackState(
            runtime=self.settings.runtime, idp=self.settings.idp, hydra_pool=self.settings.hydra_pool
        )

    # up
    def up(self) -> StackState:
        """Start every component that is not running; harmless when all already are.

        A component whose process lives (the same pid and start time as recorded, or the same container) is
        never started again: if it does not answer, `up` waits for it a bounded time and then says which one
        and why. Only dead or never-started components start. A stack with no live process at all starts from
        nothing: its data and secrets are cleared, after the port preflight has passed.
        """
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            state = self._state()
            alive = [c for c in self.components if self._alive(c, state)]
            self._await_answers(alive, state)
            pending = [c for c in self.components if c not in alive]
            for component in pending:  # preflight before anything slow, and before anything is cleared
                for port in component.ports():
                    ensure_free(self.settings.host, port.number, port.purpose, port.setting)
            if not alive:  # a stack started from nothing gets clean data and fresh credentials
                Secrets(self.settings).clear()
                for component in pending:
                    component.clear_data()
            for component in pending:
                state.components.pop(component.name, None)
            started: list[Component] = []
            try:
                for wave in waves(pending):
                    self._bring_up(wave, state, started)
            except BaseException:
                for component in reversed(started):
                    component.stop(state.components.pop(component.name))
                save_state(self.settings, state)
                raise
            return state

    def ready(self) -> StackState:
        """The running stack's state once every component answers (waiting, bounded, for live ones that don't
        yet); starts nothing. Raises naming what is stopped or dead."""
        with self._lock:
            state = self._state()
            missing = [c.name for c in self.components if not self._alive(c, state)]
            if missing:
                raise SandboxError(
                    f"these components are not running: {', '.join(missing)}", "start the stack with `mcp-sandbox up`"
                )
            self._await_answers(self.components, state)
            return state

    def _alive(self, component: Component, state: StackState) -> bool:
        entry = state.components.get(component.name)
        return entry is not None and component.is_running(entry)

    def _await_answers(self, alive: list[Component], state: StackState) -> None:
        """Say which live components answer; wait, side by side and bounded, for those that do not yet."""
        timeout = self.settings.startup_timeout

        def settle(component: Component) -> float | None:
            """Seconds it took to answer, or None if it never did within the timeout."""
            entry = state.components[component.name]
            began = time.monotonic()
            while not component.is_healthy(entry):
                if time.monotonic() - began > timeout:
                    return None
                if not component.is_running(entry):
                    raise SandboxError(
                        f"{component.name} exited while `up` waited for it to answer: {last_lines(Path(entry.log))}",
                        f"read its log (mcp-sandbox logs {component.name}), then run `mcp-sandbox up` again",
                    )
                time.sleep(0.5)
            return time.monotonic() - began

        if not alive:
            return
        with ThreadPoolExecutor(max_workers=len(alive)) as pool:
            waited = dict(zip(alive, pool.map(settle, alive), strict=True))
        for component, seconds in waited.items():
            entry = state.components[component.name]
            if seconds is None:
                raise SandboxError(
                    f"{component.name} is alive ({self._identity(entry)}) but has not answered {entry.health_url} "
                    f"for {timeout:.0f}s: {last_lines(Path(entry.log))}",
                    f"read its log (mcp-sandbox logs {component.name}); `mcp-sandbox down` and `up` restart it, "
                    "or allow longer with SANDBOX_STARTUP_TIMEOUT",
                )
            late = f" (answered after {seconds:.1f}s)" if seconds >= 1 else ""
            self.console.print(f"[green]✔[/] {component.name:<22} already running{late}  {entry.url}")

    @staticmethod
    def _identity(entry: ComponentState) -> str:
        if entry.process is not None:
            return f"pid {entry.process.pid}"
        return f"container {(entry.container or '?')[:12]}"

    def _bring_up(self, wave: list[Component], state: StackState, started: list[Component]) -> None:
        """Prepare and start the wave's components, wait for all of them side by side, then configure each."""
        began = time.monotonic()
        names = ", ".join(component.name for component in wave)
        with self.console.status(f"{names}: starting") as spinner:

            def reporter(component: Component) -> Report:
                def report(step: str) -> None:
                    self.console.print(f"  {component.name:<22} {step}  [dim]({time.monotonic() - began:.1f}s)[/]")
                    spinner.update(f"{component.name}: {step}")

                return report

            entries = {}
            for component in wave:  # every slow preparation (a download, Hydra's build) before any process starts
                component.prepare(reporter(component))
            for component in wave:
                reporter(component)("starting")
                entries[component.name] = state.components[component.name] = component.start()
                started.append(component)
                save_state(self.settings, state)
            spinner.update(f"{names}: waiting until ready")
            with ThreadPoolExecutor(max_workers=len(wave)) as pool:
                for waiting in [pool.submit(c.wait_ready, entries[c.name]) for c in wave]:
                    waiting.result()
            for component in wave:
                component.configure(entries[component.name], reporter(component))
                seconds = round(time.monotonic() - began, 1)
                entries[component.name].details["seconds_to_ready"] = seconds  # from the start of its wave
                save_state(self.settings, state)
                self.console.print(
                    f"[green]✔[/] {component.name:<22} ready in {seconds:.1f}s  {entries[component.name].url}"
                )

    # down
    def down(self) -> list[str]:
        """Stop every component the state file knows, in reverse order, then anything else this stack started
        (found by the marker in its environment, or its container label) even when the state file or the whole
        state directory is damaged or gone; return what was stopped."""
        if not self.settings.state_dir.is_dir():
            return self._sweep()
        with self._lock:
            try:
                state = load_state(self.settings)
            except StateDamaged:
                state = None  # what it named is found by the sweep below
            stopped = []
            by_name = {c.name: c for c in self.components}
            for name in reversed(list(state.components) if state else []):
                component = by_name.get(name)
                if component is None:
                    raise SandboxError(
                        f"the state file names a component {name!r} this runtime does not know",
                        f"stop it with the runtime that started it ({state.runtime}): SANDBOX_RUNTIME={state.runtime}",
                    )
                component.stop(state.components[name])
                stopped.append(name)
            stopped += self._sweep()
            clear_state(self.settings)
            return stopped

    def _sweep(self) -> list[str]:
        """Stop the processes and remove the containers marked as this stack's; name each one."""
        leftovers = process.marked(process.STACK_MARKER, str(self.settings.state_dir))
        names = [f"pid {member.pid} ({_name_of(member)})" for member in leftovers]
        process.stop_all(leftovers)
        if self.settings.runtime == "docker" or docker_socket_exists():
            from sandbox.stack.container import STACK_LABEL, labelled, remove_all

            containers = labelled(STACK_LABEL, str(self.settings.state_dir))
            names += [f"container {container.name}" for container in containers]
            remove_all(containers)
        return names

    # status
    def status(self) -> list[ComponentStatus]:
        state = self._state()
        report = []
        for component in self.components:
            entry: ComponentState | None = state.components.get(component.name)
            if entry is None:
                report.append(ComponentStatus(component.name, "stopped", None, None, None))
                continue
            if not component.is_running(entry):
                condition = "dead"
            else:
                condition = "running" if component.is_healthy(entry) else "unhealthy"
            report.append(
                ComponentStatus(
                    component.name,
                    condition,
                    entry.url,
                    entry.process.pid if entry.process else None,
                    entry.log,
                    component.memory_bytes(entry) if condition != "dead" else None,
                )
            )
        return report


def _name_of(member: psutil.Process) -> str:
    try:
        return member.name()
    except psutil.Error:
        return "gone"


def docker_socket_exists() -> bool:
    """Whether a Docker engine may hold this stack's containers (without importing the docker extra)."""
    return "DOCKER_HOST" in os.environ or Path("/var/run/docker.sock").exists()
