"""The limit on refused tool calls per principal (sandbox.mcp_server.throttle)."""

from __future__ import annotations

from sandbox.mcp_server.throttle import DeniedCallLimiter

AGENT, OTHER = ("http://issuer/a", "agent-a"), ("http://issuer/a", "agent-b")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_principal_is_limited_after_the_limit_until_its_window_ends() -> None:
    clock = Clock()
    limiter = DeniedCallLimiter(3, 60, clock)
    for _ in range(2):
        limiter.refused(AGENT)
    assert limiter.retry_after(AGENT) is None
    clock.now += 10
    limiter.refused(AGENT)
    assert limiter.retry_after(AGENT) == 50  # what is left of the window that opened with the first refusal
    assert limiter.retry_after(OTHER) is None  # others are not affected
    clock.now += 49.5
    assert limiter.retry_after(AGENT) == 1
    clock.now += 1
    assert limiter.retry_after(AGENT) is None
    limiter.refused(AGENT)  # a new window: counting starts afresh
    assert limiter.retry_after(AGENT) is None


def test_memory_is_bounded_and_ended_windows_go_first(monkeypatch: object) -> None:
    import sandbox.mcp_server.throttle as throttle

    clock = Clock()
    limiter = DeniedCallLimiter(1, 60, clock)
    setattr(throttle, "MAX_TRACKED", 3)  # noqa: B010
    try:
        for index in range(3):
            limiter.refused(("iss", f"old-{index}"))
        clock.now += 61
        limiter.refused(AGENT)
        assert set(limiter._windows) == {AGENT}
        for index in range(5):
            limiter.refused(("iss", f"new-{index}"))
        assert len(limiter._windows) <= 3
    finally:
        setattr(throttle, "MAX_TRACKED", 10_000)  # noqa: B010
