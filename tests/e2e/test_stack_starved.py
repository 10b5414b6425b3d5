"""A stack of its own on a starved machine: what a busy CI host or laptop does to `up` and `down`.

One isolated stack (its own state directory and ports) goes through, in order: two `up` at once from
nothing while burners load every core; an `up` while every component is stalled (SIGSTOP to each process
group: what a starved machine looks like to a health probe); a dead Keycloak restarted beside the live
components; and `down` with a garbled state file. At each step the stack keeps its secrets and its
processes, a token is still issued, and at the end no process of the stack is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
from test_stack import MCP_SANDBOX, isolated_stack_env, mcp_sandbox

from sandbox.harness.burners import Burners
from sandbox.stack.process import STACK_MARKER, marked

STALL_SECONDS = 6  # longer than the 2 s health probe: every component looks dead to a quick probe
#: How long `up` may take to reach its first health probe (its start-up on a loaded machine included).
PROBE_BUDGET = 600


def components(env: dict[str, str]) -> dict[str, dict[str, object]]:
    result = mcp_sandbox("status", "--json", env=env)
    return {c["name"]: c for c in json.loads(result.stdout)["components"]}


def logs(env: dict[str, str]) -> str:
    """The stack's last log lines, for a failure's message (the state directory goes with the test's tmp_path)."""
    texts = []
    for log in sorted(Path(env["SANDBOX_STATE_DIR"], "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-30:]
        texts.append(f"--- {log.name} ---\n" + "\n".join(lines))
    return "\n" + "\n".join(texts)


def token_from_printed_curl(stdout: str) -> str:
    curl = next(line for line in stdout.splitlines() if line.startswith("curl "))
    response = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, check=True)
    return str(json.loads(response.stdout)["access_token"])


def wait_until_probing(up: subprocess.Popen[str]) -> None:
    """Wait until `up` holds a TCP connection: its first health probe (it connects to nothing before). On a loaded
    machine its start-up alone can outlast a fixed stall, and then it would never see the stall at all."""
    deadline = time.monotonic() + PROBE_BUDGET
    while up.poll() is None and time.monotonic() < deadline:
        try:
            if psutil.Process(up.pid).net_connections(kind="tcp"):
                return
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    pytest.fail(f"`up` made no health probe within {PROBE_BUDGET}s (exit code {up.poll()})")


def up_in_background(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MCP_SANDBOX, "up"], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.reliability(
    "Faults",
    "`up` on a starved machine: two at once from nothing under load; every component stalled (SIGSTOP); "
    "Keycloak dead beside live components; `down` with a garbled state file",
    "one stack; `up` waits for a stalled component and exits 0; secrets, processes and tenants kept; "
    "a token issued after each; `down` leaves no process",
)
def test_up_and_down_hold_on_a_starved_machine(tmp_path: Path, reliability) -> None:  # type: ignore[no-untyped-def]
    env = isolated_stack_env(tmp_path)
    state_dir = Path(env["SANDBOX_STATE_DIR"])
    try:
        # Two `up` at once from nothing, while burners keep every core busy.
        with Burners(processes=2 * (psutil.cpu_count() or 2), seconds=900):
            racing = [up_in_background(env) for _ in range(2)]
            outputs = [up.communicate(timeout=1200) for up in racing]
        for up, (_, stderr) in zip(racing, outputs, strict=True):
            assert up.returncode == 0, stderr + logs(env)
        started = components(env)
        assert {c["state"] for c in started.values()} == {"running"}, started
        pids = {name: c["pid"] for name, c in started.items()}
        jvms = [member for member in marked(STACK_MARKER, str(state_dir)) if member.name() == "java"]
        assert len(jvms) == 1, jvms  # one Keycloak: the second `up` waited for the first and started nothing
        secrets = (state_dir / "secrets.json").read_text()
        assert token_from_printed_curl(outputs[0][0])
        reliability.add()

        # `up` while every component is stalled: it waits for them, starts nothing, clears nothing.
        groups = [int(pid) for pid in pids.values()]
        for group in groups:
            os.killpg(group, signal.SIGSTOP)
        try:
            up = up_in_background(env)
            wait_until_probing(up)
            time.sleep(STALL_SECONDS)
        finally:
            for group in groups:
                os.killpg(group, signal.SIGCONT)
        stdout, stderr = up.communicate(timeout=900)
        assert up.returncode == 0, stderr + logs(env)
        assert "answered after" in stderr, stderr  # it saw the stall and waited, rather than missing it
        assert (state_dir / "secrets.json").read_text() == secrets
        after = components(env)
        assert {name: c["pid"] for name, c in after.items()} == pids
        assert {c["state"] for c in after.values()} == {"running"}, after
        assert token_from_printed_curl(stdout)
        reliability.add()

        # A dead Keycloak restarts beside the live components, on its own database: same tenants, same secrets.
        keycloak = psutil.Process(int(pids["keycloak"]))
        family = [keycloak, *keycloak.children(recursive=True)]
        for member in family:
            member.send_signal(signal.SIGKILL)
        psutil.wait_procs(family, timeout=30)
        assert components(env)["keycloak"]["state"] == "dead"
        dead = mcp_sandbox("status", env=env)
        assert dead.returncode == 1 and "not running: keycloak (dead)" in dead.stderr, dead.stderr
        up = mcp_sandbox("up", env=env, timeout=900)
        assert up.returncode == 0, up.stderr + logs(env)
        restarted = components(env)
        assert restarted["keycloak"]["pid"] != pids["keycloak"]
        assert {n: c["pid"] for n, c in restarted.items() if n != "keycloak"} == {
            n: p for n, p in pids.items() if n != "keycloak"
        }
        assert (state_dir / "secrets.json").read_text() == secrets
        token = token_from_printed_curl(up.stdout)  # the demo client of a tenant realm kept its secret
        broker = str(restarted["broker"]["url"])
        assert httpx.get(f"{broker}/health", timeout=30).status_code == 200
        assert token
        reliability.add()

        # `down` with a garbled state file still stops every process the stack started.
        running = processes_of(restarted)
        (state_dir / "state.json").write_text('{"runtime": "local", "components": [')
        down = mcp_sandbox("down", env=env)
        assert down.returncode == 0, down.stderr
        assert marked(STACK_MARKER, str(state_dir)) == []
        assert [member for member in running if still_running(member)] == []
        reliability.add()
    finally:
        mcp_sandbox("down", env=env)
    assert marked(STACK_MARKER, str(state_dir)) == []


def processes_of(status: dict[str, dict[str, object]]) -> list[psutil.Process]:
    """Each component's process, known by pid and start time (a busy machine reuses pids within minutes)."""
    return [psutil.Process(int(c["pid"])) for c in status.values() if c["pid"]]


def still_running(member: psutil.Process) -> bool:
    """Running and not a zombie; ``is_running`` also tells a reused pid from the process it was."""
    try:
        return member.is_running() and member.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
