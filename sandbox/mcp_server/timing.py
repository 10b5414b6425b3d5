"""Where a served request's time went at the server, told to its caller in a ``Server-Timing`` header.

Each step is measured from the moment the request reached the protected endpoint, so the caller (the
auth-overhead benchmark) can set the server's own checks beside the whole call it timed: ``read`` (body read and
the tool call parsed), ``verify`` (the token checked, in the configured mode), ``authorize`` (zone, routing and
tool-scope checks) and ``sdk`` (the MCP SDK's session manager answering). Only a request that was served carries
the header: a refused caller learns nothing about how long a check took.
"""

from __future__ import annotations

import contextlib
import time

HEADER = b"server-timing"


class Steps:
    """Step durations (ms) of one request, in the order they ran."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.durations: dict[str, float] = {}

    def end(self, name: str) -> None:
        """The step ``name`` ends now; it began where the previous one ended."""
        now = time.perf_counter()
        self.durations[name] = (now - self._last) * 1000
        self._last = now

    def header(self) -> tuple[bytes, bytes]:
        """The ``Server-Timing`` header (W3C Server Timing: ``name;dur=<ms>`` entries)."""
        value = ", ".join(f"{name};dur={ms:.3f}" for name, ms in self.durations.items())
        return HEADER, value.encode()


def parse_server_timing(value: str) -> dict[str, float]:
    """``{name: ms}`` from a ``Server-Timing`` header value; entries without a duration are left out."""
    steps: dict[str, float] = {}
    for entry in value.split(","):
        name, *parameters = (part.strip() for part in entry.split(";"))
        for parameter in parameters:
            key, _, number = parameter.partition("=")
            if key.strip() == "dur" and name:
                with contextlib.suppress(ValueError):
                    steps[name] = float(number)
    return steps
