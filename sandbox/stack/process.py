"""Local processes: start one in its own session with a log file, tell whether it lives, stop it and its children."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ProcessRecord:
    """Enough to find a process again from another shell, and not mistake a reused pid for it."""

    pid: int
    started: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


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
    return ProcessRecord(process.pid, psutil.Process(process.pid).create_time())


def is_alive(record: ProcessRecord) -> bool:
    try:
        process = psutil.Process(record.pid)
        return abs(process.create_time() - record.started) < 1 and process.status() != psutil.STATUS_ZOMBIE
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
    members = family(record)
    if not members:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
    for member in members:
        with contextlib.suppress(psutil.Error):
            member.terminate()
    _, alive = psutil.wait_procs(members, timeout=timeout)
    for member in alive:
        with contextlib.suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(alive, timeout=5)
    _reap(record.pid)


def _reap(pid: int) -> None:
    """Collect the exit status if we are the parent, so no zombie outlives `down` in this process."""
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)


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
