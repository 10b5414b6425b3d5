"""Bounded CPU burners: load this machine the way a busy CI host or laptop is loaded.

Each burner is a process that spins until its own deadline, so none outlives its bound even when
whoever started it dies. ``python -m sandbox.harness.burners --processes 4 --seconds 5400 -- make test``
runs a command while they burn and stops them when it ends (``make test-under-load``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from types import TracebackType

import psutil

_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


class Burners:
    """``with Burners(4, seconds=600):`` four processes each keep a core busy for at most 600 s."""

    def __init__(self, processes: int, seconds: float) -> None:
        if processes < 1 or seconds <= 0:
            raise ValueError("burners need at least one process and a positive number of seconds")
        self.processes = processes
        self.seconds = seconds
        self._running: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Burners:
        code = _SPIN.format(seconds=self.seconds)
        self._running = [
            subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL) for _ in range(self.processes)
        ]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for burner in self._running:
            burner.kill()
        for burner in self._running:
            burner.wait()

    @property
    def alive(self) -> int:
        return sum(1 for burner in self._running if burner.poll() is None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.harness.burners", description="Run a command while CPU burners load the machine."
    )
    parser.add_argument("--processes", type=int, default=4, help="how many burners (default 4)")
    parser.add_argument("--seconds", type=float, default=5400, help="each burner's bound (default 5400)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("give the command to run after --")
    print(
        f"burners: {options.processes} processes for at most {options.seconds:.0f}s on {psutil.cpu_count()} cores",
        flush=True,
    )
    with Burners(options.processes, options.seconds):
        return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
