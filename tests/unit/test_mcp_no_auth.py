"""The MCP server's switch for benchmarks: without auth, one anonymous caller in the first issuer's tenant."""

from pathlib import Path

import pytest

from sandbox.config import load_settings
from sandbox.errors import SandboxError
from sandbox.mcp_server.app import _anonymous
from sandbox.mcp_server.options import ServerOptions
from sandbox.mcp_server.scoping import ToolPolicy
from sandbox.toolmap import ToolMap


def _options(tmp_path: Path, **changes: object) -> ServerOptions:
    settings = load_settings(state_dir=tmp_path)
    issuer = settings.issuer("acme")  # a realm of the sandbox's Keycloak: the settings name its tenant
    arguments: dict = {"issuers": [issuer], "port": 9, "mode": "jwt", "broker_url": None, **changes}
    return ServerOptions.standalone(settings, **arguments)


def test_auth_is_on_unless_switched_off(tmp_path: Path) -> None:
    options = _options(tmp_path)
    assert options.no_auth is False
    assert _anonymous(options, ToolPolicy(ToolMap.load(load_settings().tools_file), options.base_scopes)) is None


def test_without_auth_every_call_is_one_caller_with_every_scope_in_the_first_issuers_tenant(tmp_path: Path) -> None:
    options = _options(tmp_path, no_auth=True)
    policy = ToolPolicy(ToolMap.load(load_settings().tools_file), options.base_scopes)
    caller = _anonymous(options, policy)
    assert caller is not None
    assert caller.tenant == "acme"
    assert set(policy.all_scopes()) | set(options.base_scopes) == caller.scopes


def test_without_auth_the_tenant_must_be_named(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="--issuer"):
        _options(tmp_path, issuers=[], broker_url="http://127.0.0.1:2", no_auth=True)
