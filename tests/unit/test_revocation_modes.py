"""One registry of revocation modes: the settings, the stack, certify and the bench read the same facts."""

from __future__ import annotations

import pytest

from sandbox.certify.manifest import Revocation
from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.modes import MODES, revocation_mode
from sandbox.stack.mcp_server import McpServer


def test_each_mode_has_its_own_server_port_and_component() -> None:
    settings = Settings(mcp_port=28083, mcp_introspect_port=28084, mcp_jwt_port=28085)
    servers = {server.mode: server for server in settings.mcp_servers}
    assert list(servers) == ["jwt+events", "introspect", "jwt"]
    assert {mode: server.port for mode, server in servers.items()} == {
        "jwt+events": 28083,
        "introspect": 28084,
        "jwt": 28085,
    }
    assert settings.mcp_url == servers["jwt+events"].url
    assert [mode for mode, server in servers.items() if server.events_url] == ["jwt+events"]
    components = [McpServer(settings, mode) for mode in MODES]
    assert [c.name for c in components] == ["mcp-server", "mcp-server-introspect", "mcp-server-jwt"]
    assert [c.ports()[0].setting for c in components] == [
        "SANDBOX_MCP_PORT",
        "SANDBOX_MCP_INTROSPECT_PORT",
        "SANDBOX_MCP_JWT_PORT",
    ]


def test_budgets_a_round_trip_the_cache_or_the_token_life() -> None:
    def budget(mode: str) -> float:
        return revocation_mode(mode).budget(token_remaining=12.0, cache_ttl=5.0, leeway=4.0)

    assert (budget("jwt+events"), budget("introspect"), budget("jwt")) == (2.0, 7.0, 19.0)
    assert revocation_mode("jwt").budget(token_remaining=-3.0, cache_ttl=5.0, leeway=4.0) == 7.0


def test_certify_grants_an_undeclared_server_the_same_rule() -> None:
    assert Revocation(mode="jwt+events").seconds == 2.0
    assert Revocation(mode="introspect").seconds == 10.0
    assert Revocation(mode="jwt").seconds == 30.0  # the 20 s token, a 7 s leeway and the margin
    assert Revocation(mode="jwt", token_lifetime=60).seconds == 70.0
    assert Revocation(mode="introspect", budget=1.5).seconds == 1.5


def test_an_unknown_mode_is_one_line_naming_the_modes() -> None:
    with pytest.raises(SandboxError, match=r"unknown revocation mode 'push'; use one of: jwt\+events, introspect, jwt"):
        revocation_mode("push")
