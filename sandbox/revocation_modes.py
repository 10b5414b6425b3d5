"""The three revocation modes of an MCP server and what each promises: the one place their budgets are defined.

- ``jwt+events``: the server hears the revocation as an SSF event before the broker's revoke call returns, so
  the next call is refused: a round trip.
- ``introspect``: the server reuses an introspection answer for its cache TTL, so the refusal comes within it.
- ``jwt``: nothing tells the server; the token works until it expires (plus the server's clock leeway, plus one
  second because ``exp`` has whole seconds).

Scenarios (``expect_401_within``) and the bench add their own slack for a loaded machine on top.
"""

from __future__ import annotations

from typing import Literal

from sandbox.config import Settings

RevocationMode = Literal["jwt", "introspect", "jwt+events"]
MODES: tuple[RevocationMode, ...] = ("jwt+events", "introspect", "jwt")


def revocation_budget(settings: Settings, mode: str, *, remaining_lifetime: float) -> float:
    """Seconds after a revocation within which a server in ``mode`` refuses the token, before any slack.

    ``remaining_lifetime``: seconds the revoked token had left when it was revoked (only ``jwt`` needs it).
    """
    if mode == "jwt+events":
        return 0.0
    if mode == "introspect":
        return settings.mcp_introspection_cache_ttl
    if mode == "jwt":
        return max(0.0, remaining_lifetime) + settings.mcp_leeway + 1
    raise ValueError(f"unknown revocation mode {mode!r}")
