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
        self.answers = True  # alive but not answering, when False: what a starved machine looks like
        self.cleared = 0

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
        return self.alive and self.answers

    def clear_data(self) -> None:
        self.cleared += 1

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
    # one wave: every component is prepared (a download, a build) before any starts
    assert journal == ["prepare first", "prepare second", "start first", "start second"]
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


def test_a_fresh_stack_gets_fresh_secrets_and_data(settings: Settings) -> None:
    secrets = Secrets(settings)
    settings.state_dir.mkdir(parents=True)
    old = secrets.get_or_create("admin")
    component = FakeComponent(settings, "only", [], port=free_port())
    Stack(settings, [component], quiet()).up()
    assert secrets.get("admin") is None and component.cleared == 1
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


def test_a_live_component_that_does_not_answer_is_waited_for_never_restarted(settings: Settings) -> None:
    import threading

    journal: list[str] = []
    first, second = FakeComponent(settings, "first", journal), FakeComponent(settings, "second", journal)
    stack = Stack(settings, [first, second], quiet())
    stack.up()
    secrets = Secrets(settings)
    kept = secrets.get_or_create("admin")
    first.answers = second.answers = False  # both stalled: every health probe fails
    assert [s.state for s in stack.status()] == ["unhealthy", "unhealthy"]
    threading.Timer(1.0, lambda: setattr(first, "answers", True)).start()
    threading.Timer(1.5, lambda: setattr(second, "answers", True)).start()
    stack.up()
    assert journal.count("start first") == 1 and journal.count("start second") == 1
    assert secrets.get("admin") == kept
    assert first.cleared == second.cleared == 1  # only by the first up, which started from nothing


def test_a_live_component_that_never_answers_is_named_after_a_bounded_wait(settings: Settings) -> None:
    from sandbox.errors import SandboxError

    bounded = settings.model_copy(update={"startup_timeout": 0.5})
    journal: list[str] = []
    stuck = FakeComponent(bounded, "stuck", journal)
    stack = Stack(bounded, [stuck], quiet())
    stack.up()
    kept = Secrets(bounded).get_or_create("admin")
    stuck.answers = False
    with pytest.raises(SandboxError, match=r"stuck is alive .* but has not answered http://stuck/health for 0s"):
        stack.up()
    assert journal.count("start stuck") == 1
    assert Secrets(bounded).get("admin") == kept
    saved = load_state(bounded)
    assert saved is not None and "stuck" in saved.components  # still known, so `down` stops it


def test_a_dead_component_restarts_beside_live_ones_keeping_data_and_secrets(settings: Settings) -> None:
    journal: list[str] = []
    first, second = FakeComponent(settings, "first", journal), FakeComponent(settings, "second", journal)
    stack = Stack(settings, [first, second], quiet())
    stack.up()
    kept = Secrets(settings).get_or_create("admin")
    second.alive = False
    stack.up()
    assert journal.count("start second") == 2
    assert second.cleared == 1 and Secrets(settings).get("admin") == kept


def test_secrets_are_kept_when_the_preflight_fails(settings: Settings) -> None:
    import socket

    settings.state_dir.mkdir(parents=True)
    kept = Secrets(settings).get_or_create("admin")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        component = FakeComponent(settings, "only", [], port=holder.getsockname()[1])
        with pytest.raises(PortInUse):
            Stack(settings, [component], quiet()).up()
    assert Secrets(settings).get("admin") == kept and component.cleared == 0


def test_up_refuses_a_damaged_state_file_in_words(settings: Settings) -> None:
    from sandbox.errors import SandboxError

    settings.state_dir.mkdir(parents=True)
    settings.state_file.write_text('{"components": [')
    with pytest.raises(SandboxError, match=r"cannot be read .*mcp-sandbox down"):
        Stack(settings, [FakeComponent(settings, "only", [])], quiet()).up()


def marked_sleeper(settings: Settings) -> int:
    """A real process started the way the stack starts its components (its own group, the stack's marker)."""
    import os
    import sys

    from sandbox.stack import process

    env = {**os.environ, **process.markers(settings.state_dir)}
    command = [sys.executable, "-c", "import time; time.sleep(120)"]
    return process.spawn(command, env=env, log_path=settings.state_dir / "logs" / "sleeper.log").pid


@pytest.mark.parametrize("damage", ["state file garbled", "state directory removed"])
def test_down_stops_the_stacks_processes_without_a_readable_state(settings: Settings, damage: str) -> None:
    import shutil

    import psutil

    stack = Stack(settings, [], quiet())
    settings.state_dir.mkdir(parents=True)
    pid = marked_sleeper(settings)
    other = Settings(state_dir=settings.state_dir.parent / "other")
    other.state_dir.mkdir()
    bystander = marked_sleeper(other)  # another stack's process: not ours to stop
    try:
        if damage == "state file garbled":
            settings.state_file.write_text("not json")
        else:
            shutil.rmtree(settings.state_dir)
        stopped = stack.down()
        assert len(stopped) == 1 and stopped[0].startswith(f"pid {pid} (")
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert psutil.Process(bystander).is_running()
    finally:
        Stack(other, [], quiet()).down()
    assert not psutil.pid_exists(bystander) or psutil.Process(bystander).status() == psutil.STATUS_ZOMBIE


def test_the_cli_says_a_damaged_state_file_in_words_and_down_still_works(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_text('{"runtime": "local", "components": [')
    command = str(Path(sys.executable).parent / "mcp-sandbox")
    env = {**os.environ, "SANDBOX_STATE_DIR": str(state_dir)}
    for name in ("status", "logs", "info"):
        result = subprocess.run([command, name], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("error: the state file ") and "mcp-sandbox down" in result.stderr
    down = subprocess.run([command, "down"], capture_output=True, text=True, env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not (state_dir / "state.json").exists()
