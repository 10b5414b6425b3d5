"""compose/docker-compose.yml: it validates, agrees with the docker runtime, and serves tenant tokens."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from joserfc import jwt
from joserfc.jwk import KeySet

from sandbox.config import Settings
from sandbox.idp.realm import DEMO_CLIENT_ID
from sandbox.stack.component import ProcessComponent
from sandbox.stack.distribution import KeycloakDistribution
from sandbox.stack.docker_engine import compose_command
from sandbox.stack.keycloak import container_command
from sandbox.stack.keycloak_container import health_probe
from sandbox.stack.launcher import default_components
from sandbox.stack.ports import PORT_SETTINGS, free_port
from sandbox.stack.readiness import wait_for_http

pytestmark = pytest.mark.xdist_group("docker")

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"


def compose(project: str, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), "-p", project, "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def compose_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {f"SANDBOX_{name}": str(free_port()) for name in PORT_SETTINGS}
    env["SANDBOX_COMPOSE_STATE_DIR"] = str(tmp_path / "state")
    return {**env, **extra}


def settings_of(env: dict[str, str]) -> Settings:
    """The compose stack's settings: these ports, and no Hydra pool (the test session's own stack has one; the
    compose file runs Keycloak's tenants only)."""
    ports = {name.lower(): int(env[f"SANDBOX_{name}"]) for name in PORT_SETTINGS}
    return Settings(**ports, hydra_pool=0)  # type: ignore[arg-type]


def keycloak_arguments_of_init(init: dict[str, Any], state_dir: Path) -> list[str]:
    """What compose's `init` job, run with the environment compose gives it (its state directory moved to
    ``state_dir``), writes for Keycloak's container to run."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    environment |= {k: str(v) for k, v in init["environment"].items()} | {"SANDBOX_STATE_DIR": str(state_dir)}
    assert init["command"] == ["python", "-m", "sandbox.stack.compose_jobs", "init"]
    job = subprocess.run(
        [sys.executable, "-m", "sandbox.stack.compose_jobs", "init"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert job.returncode == 0, job.stderr
    return (state_dir / "keycloak.args").read_text().splitlines()


def test_config_validates_and_keycloak_runs_as_in_the_docker_runtime(tmp_path: Path) -> None:
    env = compose_env(tmp_path)
    result = compose("config-check", env, "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    settings = settings_of(env)
    keycloak = services["keycloak"]
    # Keycloak runs the arguments `init` writes (container_command: the build options of the local runtime's
    # distribution, the server options), never options of the compose file's own.
    assert keycloak.get("command") in (None, [])
    assert (
        "/state/keycloak.args" in keycloak["entrypoint"][-1] and "/opt/keycloak/bin/kc.sh" in keycloak["entrypoint"][-1]
    )
    arguments = keycloak_arguments_of_init(services["init"], tmp_path / "init-state")
    assert arguments == container_command(settings)
    assert set(KeycloakDistribution(settings).build_options()) <= set(arguments)  # the process runtime's build
    assert keycloak["image"] == settings.keycloak_container_image  # the official image, same version
    assert keycloak["healthcheck"]["test"] == ["CMD", *health_probe(settings.keycloak_management_port)]
    assert {service.get("network_mode") for service in services.values()} <= {"host", "none"}
    # Every other component of the stack is a service of the same name, running the same module with the same
    # settings and what the component adds to them (the MCP servers' modes).
    for component in default_components(settings)[1:]:
        assert isinstance(component, ProcessComponent)
        service = services[component.name]
        assert service["command"] == ["python", *component.command()[1:]]
        mounted = {*component.inherited, "SANDBOX_STATE_DIR"}  # the state directory is mounted at /state
        own = {k: v for k, v in component.environment().items() if k not in mounted}
        expected = {
            k: v for k, v in own.items() if k in service["environment"] or k[len("SANDBOX_") :] in PORT_SETTINGS
        }
        assert {k: str(service["environment"][k]) for k in expected} == expected
        assert service["environment"]["HEALTH_URL"] == component.health_url


@pytest.fixture
def compose_stack(tmp_path: Path, docker_images: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    project = f"mcpsbx{secrets.token_hex(4)}"
    env = compose_env(tmp_path, **docker_images)
    try:
        yield project, env
    finally:
        down = compose(project, env, "down", "-v", "--remove-orphans")
        assert down.returncode == 0, down.stderr


def containers_of(project: str) -> list[str]:
    listing = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout.split()


def test_the_compose_stack_serves_a_tenant_token_and_down_removes_it(compose_stack: tuple[str, dict[str, str]]) -> None:
    project, env = compose_stack
    up = compose(project, env, "up", "-d")
    assert up.returncode == 0, up.stderr[-2000:]
    settings = settings_of(env)
    stack_secrets = json.loads((Path(env["SANDBOX_COMPOSE_STATE_DIR"]) / "secrets.json").read_text())

    tenant = settings.tenants[0]
    answer = httpx.post(
        f"{settings.issuer(tenant)}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials"},
        auth=(DEMO_CLIENT_ID, stack_secrets[f"{tenant}/{DEMO_CLIENT_ID}"]),
    )
    assert answer.status_code == 200, answer.text
    keys = KeySet.import_key_set(httpx.get(f"{settings.issuer(tenant)}/protocol/openid-connect/certs").json())
    assert jwt.decode(answer.json()["access_token"], keys).claims["iss"] == settings.issuer(tenant)
    # `up -d` returns once the last service started (compose v1 has no --wait): each service answers soon after.
    for component in default_components(settings)[1:]:
        wait_for_http(component.name, component.health_url, timeout=120, alive=lambda: True, log=Path(os.devnull))

    down = compose(project, env, "down", "-v")
    assert down.returncode == 0, down.stderr
    assert containers_of(project) == []
