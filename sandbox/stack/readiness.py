"""Wait strategies: poll until a component answers, or fail with the reason and its log."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from sandbox.errors import StartupFailed


def last_lines(path: Path, count: int = 5) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no log yet)"
    return " | ".join(line.strip()[:200] for line in lines[-count:])


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_http(
    name: str, url: str, *, timeout: float, alive: Callable[[], bool], log: Path, interval: float = 0.25
) -> None:
    """Poll ``url`` until it answers 200; stop early, with the log's last lines, if the process dies."""
    wait_until(name, url, lambda: answers(url), timeout=timeout, alive=alive, log=log, interval=interval)


def wait_until(
    name: str,
    url: str,
    ready: Callable[[], bool],
    *,
    timeout: float,
    alive: Callable[[], bool],
    log: Path,
    interval: float = 0.25,
) -> None:
    """Poll ``ready`` (whether the component at ``url`` serves) until it holds; stop early if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise StartupFailed(
                f"{name} exited during start-up: {last_lines(log)}",
                f"read the whole log: mcp-sandbox logs {name}",
            )
        time.sleep(interval)
    raise StartupFailed(
        f"{name} was not ready at {url} after {timeout:.0f}s: {last_lines(log)}",
        f"read the log (mcp-sandbox logs {name}) or allow longer with SANDBOX_STARTUP_TIMEOUT",
    )
