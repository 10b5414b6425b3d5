"""Stopping processes: a zombie whose parent is another process counts as ended (a stack started by one
pytest worker and stopped by the controller), and a child of ours is collected, never left a zombie."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from sandbox.stack import process

# A parent that starts a child, prints its pid and never collects it: once the child ends it stays a zombie.
_NEGLECTFUL_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.fixture
def foreign_child() -> psutil.Process:
    parent = subprocess.Popen([sys.executable, "-c", _NEGLECTFUL_PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        yield psutil.Process(int(parent.stdout.readline()))
    finally:
        parent.kill()
        parent.wait()


def _until_zombie(member: psutil.Process) -> None:
    for _ in range(200):
        if member.status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {member.pid} did not become a zombie")


def test_a_zombie_of_another_parent_counts_as_ended(foreign_child: psutil.Process) -> None:
    assert process._wait_ended([foreign_child], timeout=0) == [foreign_child]  # running: not ended
    foreign_child.terminate()
    _until_zombie(foreign_child)
    assert process._wait_ended([foreign_child], timeout=0) == []
    assert foreign_child.status() == psutil.STATUS_ZOMBIE  # not ours to collect: it stays for its parent


def test_stop_all_ends_a_foreign_child_and_reports_nothing_left(foreign_child: psutil.Process) -> None:
    process.stop_all([foreign_child], timeout=30)
    assert foreign_child.status() == psutil.STATUS_ZOMBIE


def test_stop_all_collects_its_own_children(tmp_path) -> None:
    record = process.spawn(
        [sys.executable, "-c", "import time; time.sleep(600)"], env={}, log_path=tmp_path / "sleeper.log"
    )
    process.stop(record, timeout=30)
    assert not psutil.pid_exists(record.pid)  # collected: no zombie left in this process's table
