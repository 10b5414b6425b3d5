"""The revocation modes: how a resource server learns that an agent was revoked, and what each promises.

One registry for the settings (each mode's reference server and its port), the stack (one component per
mode), the MCP server (its ``--mode``), scenarios, ``certify`` and the bench (the time from a revoke to
the first 401 each mode promises).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sandbox.errors import SandboxError

ModeName = Literal["jwt+events", "introspect", "jwt"]

#: A push and one call: the server answers the next call after the revoke returned with 401.
ROUND_TRIP = 2.0
#: What comes on top of a cache or a token's lifetime: the refusal itself, and a scheduler on a busy machine.
MARGIN = 3.0


@dataclass(frozen=True)
class RevocationMode:
    name: ModeName
    #: The ``Settings`` field that holds the port of the stack's reference server in this mode.
    port_setting: str
    #: The ``Settings`` field that holds the port of that server's TLS listener (client certificates requested).
    tls_port_setting: str
    #: The name of that server as a stack component.
    component: str
    #: Whether the server takes the broker's signed revocation events (``POST /events``).
    receives_events: bool

    @property
    def port_variable(self) -> str:
        return f"SANDBOX_{self.port_setting.upper()}"

    @property
    def tls_port_variable(self) -> str:
        return f"SANDBOX_{self.tls_port_setting.upper()}"

    def budget(self, *, token_remaining: float, cache_ttl: float, leeway: float) -> float:
        """Seconds from the revoke to the first 401: a round trip with events, the introspection cache
        (``cache_ttl``) plus a round trip, or the token's remaining life plus the server's clock leeway."""
        if self.receives_events:
            return ROUND_TRIP
        if self.name == "introspect":
            return cache_ttl + ROUND_TRIP
        return max(0.0, token_remaining) + leeway + MARGIN


JWT_EVENTS = RevocationMode("jwt+events", "mcp_port", "mcp_tls_port", "mcp-server", receives_events=True)
INTROSPECT = RevocationMode(
    "introspect", "mcp_introspect_port", "mcp_introspect_tls_port", "mcp-server-introspect", receives_events=False
)
JWT = RevocationMode("jwt", "mcp_jwt_port", "mcp_jwt_tls_port", "mcp-server-jwt", receives_events=False)

#: Every mode, in the order the stack starts their servers (the first is the stack's main server).
MODES: dict[str, RevocationMode] = {mode.name: mode for mode in (JWT_EVENTS, INTROSPECT, JWT)}


def revocation_mode(name: str) -> RevocationMode:
    try:
        return MODES[name]
    except KeyError:
        raise SandboxError(f"unknown revocation mode {name!r}", f"use one of: {', '.join(MODES)}") from None
