"""The launcher with stand-in components: ordering, idempotence, cleanup on failure, status."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from sandbox.config import Settings
from sandbox.errors import PortInUse, StartupFailed
from sandbox.stack.component import Component, Port, Report
from sandbox.stack.launcher import Stack
from sandbox.stack.ports import free_port
from sandbox.stack.state import ComponentState, load_state
from sandbox.stack_secrets import Secrets


class FakeComponent(Component):
    def __init__(self, settings: Settings, name: str, journal: list[str], *, fail: bool = False, port: int = 0):
        super().__init__(settings)
        self.name = name
        self.journal = journal
        self.fail = fail
        self.port = port
        self.alive = False

    def ports(self) -> list[Port]:
        return [Port(self.port, f"{self.name} http", "SANDBOX_FAKE_PORT")] if self.port else []

    def prepare(self, report: Report) -> None:
        report("preparing")
        self.journal.append(f"prepare {self.name}")

    def start(self) -> ComponentState:
        self.journal.append(f"start {self.name}")
        self.alive = True
        return ComponentState(self.name, f"http://{self.name}", f"http://{self.name}/health", "log", {})

    def wait_ready(self, state: ComponentState) -> None:
        if self.fail:
            raise StartupFailed(f"{self.name} broke", "fix it")

    def configure(self, state: ComponentState, report: Report) -> None:
        state.details["configured"] = True

    def is_running(self, state: ComponentState) -> bool:
        return self.alive

    def is_healthy(self, state: ComponentState) -> bool:
        return self.alive

    def stop(self, state: ComponentState) -> None:
        self.journal.append(f"stop {self.name}")
        self.alive = False


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"))


def test_up_starts_in_order_and_saves_state(settings: Settings) -> None:
    journal: list[str] = []
    components = [FakeComponent(settings, "first", journal), FakeComponent(settings, "second", journal)]
    state = Stack(settings, components, quiet()).up()
    assert journal == ["prepare first", "start first", "prepare second", "start second"]
    saved = load_state(settings)
    assert saved is not None and list(saved.components) == ["first", "second"]
    details = saved.components["second"].details
    assert details["configured"] is True and details["seconds_to_ready"] >= 0
    assert set(details) == {"configured", "seconds_to_ready"}
    assert state.components["first"].url == "http://first"


def test_up_twice_starts_nothing_the_second_time(settings: Settings) -> None:
    journal: list[str] = []
    stack = Stack(settings, [FakeComponent(settings, "only", journal)], quiet())
    stack.up()
    stack.up()
    assert journal.count("start only") == 1


def test_up_restarts_only_what_died(settings: Settings) -> None:
    journal: list[str] = []
    first, second = FakeComponent(settings, "first", journal), FakeComponent(settings, "second", journal)
    stack = Stack(settings, [first, second], quiet())
    stack.up()
    second.alive = False
    assert [s.state for s in stack.status()] == ["running", "dead"]
    stack.up()
    assert journal.count("start first") == 1 and journal.count("start second") == 2


def test_a_failing_component_stops_what_this_up_started(settings: Settings) -> None:
    journal: list[str] = []
    components = [FakeComponent(settings, "first", journal), FakeComponent(settings, "second", journal, fail=True)]
    with pytest.raises(StartupFailed, match="second broke"):
        Stack(settings, components, quiet()).up()
    assert journal[-2:] == ["stop second", "stop first"]
    saved = load_state(settings)
    assert saved is not None and saved.components == {}


def test_a_busy_port_is_refused_before_anything_starts(settings: Settings) -> None:
    import socket

    journal: list[str] = []
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        components = [FakeComponent(settings, "first", journal), FakeComponent(settings, "second", journal, port=port)]
        with pytest.raises(PortInUse):
            Stack(settings, components, quiet()).up()
    assert journal == []


def test_down_stops_in_reverse_order_and_forgets_the_stack(settings: Settings) -> None:
    journal: list[str] = []
    components = [FakeComponent(settings, "first", journal), FakeComponent(settings, "second", journal)]
    stack = Stack(settings, components, quiet())
    stack.up()
    assert stack.down() == ["second", "first"]
    assert journal[-2:] == ["stop second", "stop first"]
    assert load_state(settings) is None
    assert [s.state for s in stack.status()] == ["stopped", "stopped"]
    assert stack.down() == []


def test_a_fresh_stack_gets_fresh_secrets(settings: Settings) -> None:
    secrets = Secrets(settings)
    settings.state_dir.mkdir(parents=True)
    old = secrets.get_or_create("admin")
    Stack(settings, [FakeComponent(settings, "only", [], port=free_port())], quiet()).up()
    assert secrets.get("admin") is None
    assert secrets.get_or_create("admin") != old


def test_components_start_in_waves_of_what_they_need(settings: Settings) -> None:
    from sandbox.stack.launcher import waves

    journal: list[str] = []
    idp = FakeComponent(settings, "keycloak", journal)
    servers = [FakeComponent(settings, name, journal) for name in ("mcp", "broker")]
    for server in servers:
        server.needs = ("keycloak",)
    assert [[c.name for c in wave] for wave in waves([idp, *servers])] == [["keycloak"], ["mcp", "broker"]]
    assert [[c.name for c in wave] for wave in waves(servers)] == [["mcp", "broker"]]  # keycloak already runs
    Stack(settings, [idp, *servers], quiet()).up()
    assert journal.index("start keycloak") < journal.index("start mcp") < journal.index("start broker")


def test_components_that_wait_for_each_other_are_refused(settings: Settings) -> None:
    from sandbox.errors import SandboxError
    from sandbox.stack.launcher import waves

    first, second = FakeComponent(settings, "a", []), FakeComponent(settings, "b", [])
    first.needs, second.needs = ("b",), ("a",)
    with pytest.raises(SandboxError, match="wait for each other"):
        waves([first, second])
