"""A component run as a container (testcontainers), on the host's network, bound to loopback like a process.

Host networking keeps every port, URL and setting the same as in the local runtime, and needs no
bridge or published ports. Ryuk, testcontainers' reaper, is off: the state file records each
container's id, and ``mcp-sandbox down`` removes it. Every container carries the label
``mcp-sandbox.stack=<state dir>``, so a stack's containers can be listed and a leftover removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from abc import abstractmethod
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

from sandbox.errors import SandboxError, StartupFailed
from sandbox.stack.component import Component, Report
from sandbox.stack.docker_engine import client
from sandbox.stack.process import RUN_MARKER
from sandbox.stack.state import ComponentState

STACK_LABEL = "mcp-sandbox.stack"
COMPONENT_LABEL = "mcp-sandbox.component"
RUN_LABEL = "mcp-sandbox.run"  # the test run that started it, when one did (see process.RUN_MARKER)
SECOND = 1_000_000_000  # Docker health check durations are in nanoseconds


class UntilHealthy(WaitStrategy):
    """Docker's health check of the container reports healthy; fail at once if the container stops."""

    def __init__(self, name: str, log_hint: str) -> None:
        super().__init__()
        self.name = name
        self.log_hint = log_hint
        self._poll_interval = 0.5

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        wrapped: Container = container.get_wrapped_container()
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            wrapped.reload()
            state = wrapped.attrs["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return
            if state["Status"] in ("exited", "dead"):
                raise StartupFailed(
                    f"{self.name} container exited with {state.get('ExitCode')} during start-up: {self._tail(wrapped)}",
                    f"read the whole log: {self.log_hint}",
                )
            time.sleep(self._poll_interval)
        raise StartupFailed(
            f"{self.name} container was not healthy after {self._startup_timeout:.0f}s: {self._tail(wrapped)}",
            f"read the log ({self.log_hint}) or allow longer with SANDBOX_STARTUP_TIMEOUT",
        )

    @staticmethod
    def _tail(container: Container) -> str:
        lines = container.logs(tail=5).decode(errors="replace").strip().splitlines()
        return " | ".join(line.strip()[:200] for line in lines) or "(no output)"


class ContainerComponent(Component):
    """Runs :meth:`command` in :attr:`image` with host networking until :meth:`health_check` passes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._container: DockerContainer | None = None
        self._until_healthy = UntilHealthy(self.name, f"docker logs {self.container_name}")

    @property
    @abstractmethod
    def image(self) -> str: ...

    @property
    @abstractmethod
    def url(self) -> str: ...

    @property
    @abstractmethod
    def health_url(self) -> str: ...

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def health_check(self) -> list[str]:
        """Docker's ``HEALTHCHECK`` command (``CMD`` form), run inside the container."""

    def environment(self) -> dict[str, str]:
        return {}

    def mounts(self) -> list[tuple[str, str, str]]:
        """Host directories to mount: (host path, container path, "ro" or "rw")."""
        return []

    def container_options(self) -> dict[str, object]:
        """More arguments for Docker's container create (``user``, say)."""
        return {}

    @property
    def labels(self) -> dict[str, str]:
        labels = {STACK_LABEL: str(self.settings.state_dir), COMPONENT_LABEL: self.name}
        if RUN_MARKER in os.environ:
            labels[RUN_LABEL] = os.environ[RUN_MARKER]
        return labels

    @property
    def container_name(self) -> str:
        stack = hashlib.sha256(str(self.settings.state_dir).encode()).hexdigest()[:8]
        return f"mcp-sandbox-{stack}-{self.name}"

    def prepare(self, report: Report) -> None:
        engine = client()
        try:
            engine.images.get(self.image)
        except ImageNotFound:
            report(f"pulling {self.image}")
            try:
                engine.images.pull(self.image)
            except DockerException as exc:
                raise SandboxError(
                    f"image {self.image} is not on this machine and pulling it failed ({str(exc)[:120]})",
                    "build the images here (python -m sandbox.stack.images) and set the SANDBOX_*_IMAGE it prints",
                ) from exc
        self._remove_leftover(engine)

    def _remove_leftover(self, engine: Any) -> None:
        """A container of this stack and component that no state file knows (the last `up` was killed)."""
        with contextlib.suppress(NotFound):
            engine.containers.get(self.container_name).remove(force=True)

    def start(self) -> ComponentState:
        testcontainers_config.ryuk_disabled = True  # the state file and `down` clean up, not a reaper
        check = {
            "test": ["CMD", *self.health_check()],
            "interval": SECOND,
            "timeout": 5 * SECOND,
            "retries": 3,
            "start_period": int(self.settings.startup_timeout * SECOND),
        }
        # No waiting_for(): start() returns at once, so the launcher saves the id before wait_ready() waits.
        container = DockerContainer(
            self.image,
            command=self.command(),
            env=self.environment(),
            name=self.container_name,
            volumes=self.mounts(),
        ).with_kwargs(network_mode="host", labels=self.labels, healthcheck=check, **self.container_options())
        self._container = container
        try:
            container.start()
        except APIError as exc:
            raise StartupFailed(
                f"Docker refused to start {self.name} from {self.image}: {exc.explanation or exc}",
                "check `docker info`, and that no other container holds its name or ports",
            ) from exc
        return ComponentState(
            name=self.name,
            url=self.url,
            health_url=self.health_url,
            log=str(self.log_path),
            ports={port.purpose: port.number for port in self.ports()},
            container=container.get_container_id(),
            details={"image": self.image},
        )

    def wait_ready(self, state: ComponentState) -> None:
        assert self._container is not None, "start() came first"
        try:
            self._until_healthy.with_startup_timeout(self.settings.startup_timeout).wait_until_ready(self._container)
        finally:
            self._save_log(state)

    def _find(self, state: ComponentState) -> Container | None:
        if state.container is None:
            return None
        try:
            return client().containers.get(state.container)
        except NotFound:
            return None

    def is_running(self, state: ComponentState) -> bool:
        container = self._find(state)
        return container is not None and container.status == "running"

    def stop(self, state: ComponentState) -> None:
        container = self._find(state)
        if container is None:
            return
        self._save_log(state, container)
        with contextlib.suppress(DockerException):
            container.stop(timeout=10)  # SIGTERM first, as for a process: let it close its files
        container.remove(force=True, v=True)

    def _save_log(self, state: ComponentState, container: Container | None = None) -> None:
        """The container's output so far, into the component's log file (it outlives the container)."""
        container = container or self._find(state)
        if container is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(DockerException):
            self.log_path.write_bytes(container.logs())

    def memory_bytes(self, state: ComponentState) -> int | None:
        container = self._find(state)
        if container is None:
            return None
        with contextlib.suppress(DockerException, KeyError):
            return int(container.stats(stream=False, one_shot=True)["memory_stats"]["usage"])
        return None


def labelled(label: str, value: str) -> list[Container]:
    """Every container (running or not) with ``label=value``; none when no Docker engine answers."""
    try:
        return client().containers.list(all=True, filters={"label": f"{label}={value}"})
    except (DockerException, SandboxError):
        return []


def remove_all(containers: list[Container]) -> None:
    for container in containers:
        with contextlib.suppress(DockerException):
            container.remove(force=True, v=True)
