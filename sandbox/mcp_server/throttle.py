"""A limit on refused tool calls per principal: an agent that keeps calling tools it may not use is slowed down.

Per principal (issuer and client id), refusals (403) are counted in a fixed window that opens with the first
one. Once ``limit`` are counted, every tool call of that principal is answered 429 with ``Retry-After`` (what
is left of the window) until the window ends; then counting starts afresh. Allowed calls do not count, other
principals are not affected, and the 429s are reported to the broker like refusals, so the agent's monitoring
shows them. Kept in memory: a restarted server starts counting anew.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Key = tuple[str, str]  # (issuer, client id)
MAX_TRACKED = 10_000  # principals remembered at once; windows that ended are forgotten first


@dataclass
class _Window:
    opened: float
    refusals: int = 0


class DeniedCallLimiter:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._windows: dict[Key, _Window] = {}

    def refused(self, key: Key) -> None:
        """Count one refused call of ``key``."""
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window.opened >= self.window:
            if len(self._windows) >= MAX_TRACKED:
                self._forget_ended(now)
            window = self._windows[key] = _Window(now)
        window.refusals += 1

    def retry_after(self, key: Key) -> int | None:
        """Whole seconds until ``key`` may call tools again, or None when it is not limited."""
        window = self._windows.get(key)
        if window is None or window.refusals < self.limit:
            return None
        left = self.window - (self.clock() - window.opened)
        return max(1, int(left + 0.999)) if left > 0 else None

    def _forget_ended(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if now - w.opened >= self.window]:
            del self._windows[key]
        while len(self._windows) >= MAX_TRACKED:  # all still open: forget the oldest
            del self._windows[min(self._windows, key=lambda k: self._windows[k].opened)]
