"""A process is known again by its pid and its start in clock ticks since boot, which a clock being set does not move
(a real sleeper process; the clock shift is a record whose wall-clock start is off, as after a step of the clock)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.stack import process
from sandbox.stack.state import ComponentState


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[process.ProcessRecord]:
    record = process.spawn(
        [sys.executable, "-c", "import time; time.sleep(600)"], env={}, log_path=tmp_path / "sleeper.log"
    )
    yield record
    process.stop(record, timeout=30)


def test_a_live_process_is_known_even_after_the_clock_moved(sleeper: process.ProcessRecord) -> None:
    assert sleeper.ticks is not None and sleeper.ticks > 0
    assert process.is_alive(sleeper)
    assert process.is_alive(dataclasses.replace(sleeper, started=sleeper.started + 90))  # the clock stepped 90 s


def test_another_process_with_the_same_pid_is_not_taken_for_it(sleeper: process.ProcessRecord) -> None:
    assert not process.is_alive(dataclasses.replace(sleeper, ticks=sleeper.ticks - 1))  # type: ignore[operator]


def test_a_record_without_ticks_is_matched_by_its_wall_clock_start(sleeper: process.ProcessRecord) -> None:
    assert process.is_alive(dataclasses.replace(sleeper, ticks=None))
    assert not process.is_alive(dataclasses.replace(sleeper, ticks=None, started=sleeper.started + 90))


def test_the_state_file_keeps_the_ticks_and_reads_a_record_without_them(sleeper: process.ProcessRecord) -> None:
    component = ComponentState("broker", "u", "h", "l", {"http": 1}, sleeper)
    assert ComponentState.from_dict(dataclasses.asdict(component)).process == sleeper
    old = dataclasses.asdict(component) | {"process": {"pid": sleeper.pid, "started": sleeper.started}}
    assert ComponentState.from_dict(old).process == dataclasses.replace(sleeper, ticks=None)


def test_a_process_that_ended_is_not_alive(tmp_path: Path) -> None:
    record = process.spawn([sys.executable, "-c", "pass"], env={}, log_path=tmp_path / "quick.log")
    process.stop(record, timeout=30)
    assert not process.is_alive(record)
