"""Local processes: start one in its own session with a log file, tell whether it lives, stop it and its children.

Every process a stack starts carries two markers in its environment: :data:`STACK_MARKER` (the stack's state
directory) and, when the caller has one, :data:`RUN_MARKER` (a test run's id). ``down`` finds a stack's
processes by the first even when its state file is damaged or gone; a test run checks by the second that it
left nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

#: Names the stack (its state directory) in the environment of each process it starts.
STACK_MARKER = "MCP_SANDBOX_STACK"
#: Names a test run in the environment of each process a stack of that run starts (inherited when set).
RUN_MARKER = "MCP_SANDBOX_RUN"


@dataclass(frozen=True)
class ProcessRecord:
    """Enough to find a process again from another shell, and not mistake a reused pid for it."""

    pid: int
    started: float  # wall-clock seconds (psutil's create_time); the identity only where ``ticks`` is unknown
    #: The start in clock ticks since boot (Linux): the identity, which does not move when the clock is set. A start
    #: in wall-clock seconds is boot time plus ticks, and the boot time the kernel reports follows the clock: a
    #: machine whose clock was stepped mid-run (seen during a benchmark) took every live component for another.
    ticks: int | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (field 22 of ``/proc/<pid>/stat``); None without ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])  # after the command's ")", fields count from the 3rd


def spawn(command: list[str], *, env: dict[str, str], log_path: Path, cwd: Path | None = None) -> ProcessRecord:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so `down` stops its children too
        )
    return ProcessRecord(process.pid, psutil.Process(process.pid).create_time(), start_ticks(process.pid))


def is_alive(record: ProcessRecord) -> bool:
    try:
        process = psutil.Process(record.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        ticks = start_ticks(record.pid) if record.ticks is not None else None
        if ticks is not None:
            return ticks == record.ticks
        return abs(process.create_time() - record.started) < 1  # a record from before ticks were kept
    except psutil.Error:
        return False


def family(record: ProcessRecord) -> list[psutil.Process]:
    """The process and every descendant, still running."""
    if not is_alive(record):
        return []
    root = psutil.Process(record.pid)
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def rss_bytes(record: ProcessRecord) -> int:
    total = 0
    for process in family(record):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def stop(record: ProcessRecord, timeout: float = 30.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left."""
    stop_all(family(record), timeout)


def _reap(pid: int) -> None:
    """Collect the exit status of an ended child of ours, so no zombie outlives `down` in this process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def peak_rss_bytes(record: ProcessRecord) -> int:
    """The high-water mark of resident memory (VmHWM), summed over the process and its descendants."""
    total = 0
    for member in family(record):
        try:
            status = Path(f"/proc/{member.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total


def markers(state_dir: Path) -> dict[str, str]:
    """The environment entries that mark a process as one of this stack's (and of the current test run's)."""
    marks = {STACK_MARKER: str(state_dir)}
    if RUN_MARKER in os.environ:
        marks[RUN_MARKER] = os.environ[RUN_MARKER]
    return marks


def marked(name: str, value: str) -> list[psutil.Process]:
    """The processes whose environment has ``name=value``, except this process and its ancestors."""
    own = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    found = []
    for candidate in psutil.process_iter():
        if candidate.pid in own:
            continue
        try:
            if candidate.environ().get(name) == value and candidate.status() != psutil.STATUS_ZOMBIE:
                found.append(candidate)
        except psutil.Error:  # gone, or not ours to read
            continue
    return found


def stop_all(members: list[psutil.Process], timeout: float = 30.0) -> None:
    """SIGTERM each process (and its group, when it leads one), wait, then SIGKILL whatever is left."""
    if not members:
        return
    for member in members:
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(member.pid) == member.pid:
                os.killpg(member.pid, signal.SIGTERM)
                os.killpg(member.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
            member.terminate()
            member.resume()
    alive = _wait_ended(members, timeout)
    for member in alive:
        with contextlib.suppress(psutil.Error):
            member.kill()
    _wait_ended(alive, 5)


def _ended(member: psutil.Process) -> bool:
    """Gone, or a zombie: a zombie has ended, and only its parent can collect it (we do, when that is us)."""
    try:
        if member.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    _reap(member.pid)
    return True


def _wait_ended(members: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` for every member to end; those still running.

    ``psutil.wait_procs`` would wait the whole timeout for a zombie whose parent is another process (a stack
    started by one pytest worker and stopped by the controller), because the pid still exists.
    """
    deadline = time.monotonic() + timeout
    alive = list(members)
    while alive:
        alive = [member for member in alive if not _ended(member)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return alive
