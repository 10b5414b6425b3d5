"""Hydra in the stack, without starting it: one per tenant beside Keycloak, its ports, its settings, the MCP
servers' trust, and the agents' IdP remembered in the state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.mcp_server.options import ServerOptions
from sandbox.stack.hydra import Hydra, hydra_secret_name
from sandbox.stack.keycloak import LocalKeycloak
from sandbox.stack.launcher import default_components, waves
from sandbox.stack.postgres import PostgresServer
from sandbox.stack.state import StackState
from sandbox.stack_secrets import Secrets


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache", **overrides)  # type: ignore[arg-type]


def test_on_keycloak_no_hydra_runs(tmp_path: Path) -> None:
    assert not any(isinstance(c, Hydra) for c in default_components(settings(tmp_path)))


def test_on_hydra_each_tenant_gets_its_own_hydra_beside_keycloak_started_with_it(tmp_path: Path) -> None:
    components = default_components(settings(tmp_path, idp="hydra", hydra_port=28090))
    hydras = [c for c in components if isinstance(c, Hydra)]
    assert [h.name for h in hydras] == ["hydra-acme", "hydra-globex"]
    assert isinstance(components[0], LocalKeycloak)  # people (admins, delegating users) stay on Keycloak
    assert [p.number for h in hydras for p in h.ports()] == [28090, 28091, 28092, 28093]
    assert [h.url for h in hydras] == ["http://127.0.0.1:28090/", "http://127.0.0.1:28092/"]
    assert hydras[0].health_url == "http://127.0.0.1:28091/health/ready"
    # Their databases are on one PostgreSQL, started first beside Keycloak.
    first, second = ({c.name for c in wave} for wave in waves(components)[:2])
    assert {"keycloak", "postgres"} <= first and {"hydra-acme", "hydra-globex"} <= second


def test_on_keycloak_no_postgres_runs(tmp_path: Path) -> None:
    assert not any(isinstance(c, PostgresServer) for c in default_components(settings(tmp_path)))


def test_a_hydra_listens_on_loopback_only_with_jwt_access_tokens_and_a_stack_secret(tmp_path: Path) -> None:
    stack_settings = settings(tmp_path, idp="hydra", postgres_port=28079)
    hydra = Hydra(stack_settings, "globex", PostgresServer(stack_settings))
    env = hydra.environment()
    assert env["SERVE_PUBLIC_HOST"] == env["SERVE_ADMIN_HOST"] == "127.0.0.1"
    # The root issuer in the one form every URL parser renders it (pydantic, and so the MCP SDK client, adds
    # the "/"), so the issuer Hydra's metadata and tokens name is the string the SDK compares it with.
    assert env["URLS_SELF_ISSUER"] == "http://127.0.0.1:18092/"
    assert env["STRATEGIES_ACCESS_TOKEN"] == "jwt"
    # Published beside its signing keys, never signed with: where certify puts keys it holds.
    assert env["WEBFINGER_JWKS_BROADCAST_KEYS"].split(",") == ["hydra.jwt.access-token", "mcp-sandbox.published"]
    password = Secrets(hydra.settings).get("postgres/sandbox")
    assert env["DSN"].startswith(f"postgres://sandbox:{password}@127.0.0.1:28079/hydra_globex?")
    assert env["SECRETS_SYSTEM"] == Secrets(hydra.settings).get(hydra_secret_name("globex"))
    assert len(env["SECRETS_SYSTEM"]) >= 32  # Hydra refuses a shorter system secret
    assert hydra.command()[1:3] == ["serve", "all"] and "--sqa-opt-out" in hydra.command()  # no telemetry


def test_the_stacks_mcp_servers_trust_every_tenants_hydra(tmp_path: Path) -> None:
    options = ServerOptions.for_stack(settings(tmp_path, idp="hydra"))
    assert {"http://127.0.0.1:18090/", "http://127.0.0.1:18092/"} <= set(options.issuers)
    assert (
        options.introspection_endpoints["http://127.0.0.1:18090/"] == "http://127.0.0.1:18091/admin/oauth2/introspect"
    )
    assert "http://127.0.0.1:18080/realms/acme" in options.issuers


def test_hydra_in_containers_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="only as local processes") as caught:
        default_components(settings(tmp_path, idp="hydra", runtime="docker"))
    assert "\n" not in str(caught.value)


def test_the_state_file_remembers_the_agents_idp() -> None:
    state = StackState(runtime="local", idp="hydra")
    assert StackState.from_json(state.to_json()).idp == "hydra"
    assert StackState.from_json('{"runtime": "local", "components": []}').idp == "keycloak"


def test_an_unknown_idp_is_refused() -> None:
    with pytest.raises(ValueError, match="idp"):
        Settings(idp="okta")  # type: ignore[arg-type]
