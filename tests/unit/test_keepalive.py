"""Clients of the sandbox's own servers drop an idle connection before the server would close it."""

from __future__ import annotations

import uvicorn

from sandbox.loopback import KEEPALIVE


def test_idle_connections_are_dropped_before_uvicorn_closes_them() -> None:
    # uvicorn closes a connection idle for its keep-alive timeout; a request sent on it just then fails with a
    # ReadError (seen as "security event not delivered" in the broker's log during a long benchmark).
    server_side = uvicorn.Config(app=None).timeout_keep_alive  # type: ignore[arg-type]
    assert KEEPALIVE.keepalive_expiry is not None and KEEPALIVE.keepalive_expiry < server_side
