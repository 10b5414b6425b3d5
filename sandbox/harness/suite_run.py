"""The record of the newest whole-suite run (``make test``): how long its pytest session took, on how busy a
machine, at which commit, with what outcome.

The test session writes it when it renders the README's tables (only ``make test`` asks for them); the bench's
``suite`` row reads it, since the bench itself does not run the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sandbox.errors import SandboxError

#: Where the record is kept, relative to the project's root (the bench runs there).
RECORD = Path("reports") / "suite-run.json"


@dataclass(frozen=True)
class SuiteRun:
    finished: str  # ISO 8601, UTC
    commit: str
    seconds: float  # the pytest session, from its start to its end (secret scan and leftover check included)
    passed: int
    failed: int
    skipped: int
    exit_status: int
    cores: int
    load_average_at_start: list[float]
    load_average_at_end: list[float]
    ci: bool
    workers: int  # pytest-xdist workers (0: none)
    test_seconds: float  # every test's setup, call and teardown, added up across the workers
    slowest: list[tuple[str, float]]  # the slowest tests (node id, s), slowest first

    @property
    def minutes(self) -> float:
        return round(self.seconds / 60, 2)


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def commit(root: Path) -> str:
    """The checkout's commit, with ``+changes`` when its tree differs from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True)
    except OSError:
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def write(path: Path, run: SuiteRun) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(run), indent=2) + "\n")


def read(path: Path) -> SuiteRun | None:
    """The recorded run, or None when none is; a damaged record is said, with the fix."""
    if not path.is_file():
        return None
    try:
        return SuiteRun(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise SandboxError(
            f"the suite-run record {path} is damaged ({exc})", "run `make test` to write it anew"
        ) from exc


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
