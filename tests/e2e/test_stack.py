"""The foundation, end to end: a real Keycloak with two tenants, driven through the real `mcp-sandbox` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from sandbox.config import Settings
from sandbox.idp.realm import ADMIN_CLIENT_ID, ADMIN_USERNAME
from sandbox.pytest_plugin import SandboxStack
from sandbox.stack.distribution import KeycloakDistribution
from sandbox.stack.keycloak_seed import SeededDatabase
from sandbox.stack.ports import private_stack_environment
from sandbox.stack_secrets import Secrets

MCP_SANDBOX = str(Path(sys.executable).parent / "mcp-sandbox")


def mcp_sandbox(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCP_SANDBOX, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def key_set(settings: Settings, tenant: str) -> KeySet:
    return KeySet.import_key_set(httpx.get(f"{settings.issuer(tenant)}/protocol/openid-connect/certs").json())


def test_up_again_is_harmless_and_prints_a_curl_that_gets_a_tenant_token(sandbox_stack: SandboxStack) -> None:
    settings = sandbox_stack.settings
    pid_before = sandbox_stack.state.components["keycloak"].process.pid  # type: ignore[union-attr]
    result = mcp_sandbox("up")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stderr
    curl = next(line for line in result.stdout.splitlines() if line.startswith("curl "))
    response = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, check=True)
    token = json.loads(response.stdout)["access_token"]

    tenant = settings.tenants[0]
    claims = jwt.decode(token, key_set(settings, tenant)).claims
    assert claims["iss"] == settings.issuer(tenant)
    other_tenant = settings.tenants[1]
    with pytest.raises((JoseError, ValueError)):
        jwt.decode(token, key_set(settings, other_tenant))
    status = json.loads(mcp_sandbox("status", "--json").stdout)
    assert {c["name"]: c["pid"] for c in status["components"]}["keycloak"] == pid_before


def master_token(settings: Settings, form: dict[str, str]) -> str:
    """``issued``, or the OAuth error code of the refusal."""
    response = httpx.post(f"{settings.issuer('master')}/protocol/openid-connect/token", data=form)
    return "issued" if response.status_code == 200 and "access_token" in response.json() else response.json()["error"]


def test_the_seeded_databases_admin_credentials_are_replaced_by_the_stacks_own(sandbox_stack: SandboxStack) -> None:
    settings = sandbox_stack.settings
    seeded = SeededDatabase(settings, KeycloakDistribution(settings)).admin()
    stack = Secrets(settings)

    def service(secret: str) -> dict[str, str]:
        return {"grant_type": "client_credentials", "client_id": ADMIN_CLIENT_ID, "client_secret": secret}

    def user(password: str) -> dict[str, str]:
        return {"grant_type": "password", "client_id": "admin-cli", "username": ADMIN_USERNAME, "password": password}

    assert master_token(settings, service(seeded.client_secret)) == "unauthorized_client"
    assert master_token(settings, user(seeded.password)) == "invalid_grant"
    assert master_token(settings, service(stack.get(ADMIN_CLIENT_ID) or "")) == "issued"
    assert master_token(settings, user(stack.get(ADMIN_USERNAME) or "")) == "issued"


def test_tenants_have_their_own_issuers_and_signing_keys(sandbox_stack: SandboxStack) -> None:
    settings = sandbox_stack.settings
    first, second = sandbox_stack.tenants[:2]
    issuers = {
        tenant: httpx.get(f"{settings.issuer(tenant)}/.well-known/openid-configuration").json()["issuer"]
        for tenant in (first, second)
    }
    assert issuers == {first: settings.issuer(first), second: settings.issuer(second)}
    keys = {
        tenant: httpx.get(f"{settings.issuer(tenant)}/protocol/openid-connect/certs").json()["keys"]
        for tenant in issuers
    }
    assert {k["kid"] for k in keys[first]}.isdisjoint(k["kid"] for k in keys[second])
    modulus = {tenant: {k["n"] for k in keys[tenant] if k["kty"] == "RSA"} for tenant in keys}
    assert modulus[first] and modulus[second] and modulus[first].isdisjoint(modulus[second])


def test_status_json_lists_each_component_with_state_url_and_pid(sandbox_stack: SandboxStack) -> None:
    result = mcp_sandbox("status", "--json")
    assert result.returncode == 0
    components = {c["name"]: c for c in json.loads(result.stdout)["components"]}
    assert set(components) == set(sandbox_stack.state.components)
    keycloak = components["keycloak"]
    assert keycloak["state"] == "running"
    assert keycloak["url"] == sandbox_stack.settings.keycloak_base_url
    assert psutil.pid_exists(keycloak["pid"])


def test_status_shows_each_url_whole_in_80_columns(sandbox_stack: SandboxStack) -> None:
    result = mcp_sandbox("status", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    for name, entry in sandbox_stack.state.components.items():
        row = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
        assert entry.url in row.split() and "running" in row.split(), row
    assert str(sandbox_stack.settings.log_dir) in result.stdout


def test_keycloak_listens_on_loopback_only(sandbox_stack: SandboxStack) -> None:
    root = psutil.Process(sandbox_stack.state.components["keycloak"].process.pid)  # type: ignore[union-attr]
    listening = [
        c.laddr
        for p in [root, *root.children(recursive=True)]
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    ports = {address.port for address in listening}
    settings = sandbox_stack.settings
    assert {settings.keycloak_port, settings.keycloak_management_port, settings.keycloak_https_port} <= ports
    assert all(address.ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for address in listening), listening


def isolated_stack_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**private_stack_environment(tmp_path / "state"), **extra}


def processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(process.info["cmdline"] or []) + " ".join((process.info["environ"] or {}).values())
        except psutil.Error:
            continue
        if str(path) in text and process.pid != os.getpid():
            found.append(process)
    return found


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_port_in_use_is_one_line_naming_the_port_and_the_setting(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = one_line_error(mcp_sandbox("up", env=isolated_stack_env(tmp_path, SANDBOX_KEYCLOAK_PORT=str(port))))
    assert f"port {port}" in line and "already in use" in line and "SANDBOX_KEYCLOAK_PORT=" in line
    assert processes_using(tmp_path / "state") == []


def test_a_missing_jdk_is_one_line_saying_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "no-jvms").mkdir()
    env = isolated_stack_env(
        tmp_path, JAVA_HOME=str(tmp_path / "no-such-jdk"), SANDBOX_JVM_DIRS=json.dumps([str(tmp_path / "no-jvms")])
    )
    line = one_line_error(mcp_sandbox("up", env=env))
    assert "no JDK 17+ found" in line and "apt-get install openjdk-17" in line and "JAVA_HOME" in line


def test_a_corrupt_cached_zip_is_one_line_saying_what_to_delete(tmp_path: Path) -> None:
    settings = Settings()
    cached = tmp_path / "cache" / "keycloak" / f"keycloak-quarkus-dist-{settings.keycloak_version}.zip"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 truncated download")
    line = one_line_error(
        mcp_sandbox("up", env=isolated_stack_env(tmp_path, SANDBOX_CACHE_DIR=str(tmp_path / "cache")))
    )
    assert "corrupt" in line and f"delete {cached}" in line
