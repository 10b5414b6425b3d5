"""The docker runtime's definitions, without an engine: one component list, one set of Keycloak options."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sandbox.config import Settings
from sandbox.stack.broker import Broker
from sandbox.stack.distribution import build_options
from sandbox.stack.keycloak import ExternalKeycloak, LocalKeycloak, container_command, server_options
from sandbox.stack.keycloak_container import ContainerKeycloak
from sandbox.stack.launcher import default_components
from sandbox.stack.mcp_server import McpServer
from sandbox.stack.ports import free_port, is_free
from sandbox.stack.project_container import ProjectContainer


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache", **overrides)  # type: ignore[arg-type]


def test_each_runtime_runs_the_same_components_in_the_same_order(tmp_path: Path) -> None:
    local = default_components(settings(tmp_path))
    docker = default_components(settings(tmp_path, runtime="docker"))
    assert [c.name for c in docker] == [c.name for c in local]
    assert isinstance(local[0], LocalKeycloak) and isinstance(docker[0], ContainerKeycloak)
    assert all(isinstance(c, ProjectContainer) for c in docker[1:])
    assert [c.ports() for c in docker] == [c.ports() for c in local]
    assert [(c.url, c.health_url) for c in docker] == [(c.url, c.health_url) for c in local]  # type: ignore[attr-defined]


def test_an_external_keycloak_is_not_started_by_either_runtime(tmp_path: Path) -> None:
    external = settings(
        tmp_path,
        runtime="docker",
        keycloak_url="http://127.0.0.1:9",
        keycloak_admin_client_id="a",
        keycloak_admin_client_secret="s",
    )
    assert isinstance(default_components(external)[0], ExternalKeycloak)


def test_keycloak_gets_the_same_options_in_a_container_as_from_the_distribution(tmp_path: Path) -> None:
    s = settings(tmp_path, keycloak_port=28080, keycloak_management_port=28081)
    local = LocalKeycloak(s).command()
    assert local[1:3] == ["start", "--optimized"] and local[3:-1] == server_options(s)  # built with build_options
    assert container_command(s) == ["start", *build_options(s), *server_options(s)]
    assert "--http-host=127.0.0.1" in container_command(s) and "--http-port=28080" in container_command(s)
    container = ContainerKeycloak(s)
    assert container.image == f"quay.io/keycloak/keycloak:{s.keycloak_version}"
    assert "/dev/tcp/127.0.0.1/28081" in container.health_check()[-1]
    assert set(container.environment()) == {
        "KC_BOOTSTRAP_ADMIN_USERNAME",
        "KC_BOOTSTRAP_ADMIN_PASSWORD",
        "KC_BOOTSTRAP_ADMIN_CLIENT_ID",
        "KC_BOOTSTRAP_ADMIN_CLIENT_SECRET",
    }


def test_image_names_are_settings(tmp_path: Path) -> None:
    s = settings(tmp_path, runtime="docker", keycloak_image="kc:mine", project_image="sandbox:mine")
    keycloak, *services = default_components(s)
    assert keycloak.image == "kc:mine"  # type: ignore[attr-defined]
    assert {service.image for service in services} == {"sandbox:mine"}  # type: ignore[attr-defined]


def test_a_project_service_runs_its_own_module_with_the_same_settings_and_files(tmp_path: Path) -> None:
    s = settings(tmp_path, runtime="docker", broker_port=28082)
    broker = ProjectContainer(Broker(s))
    assert broker.command() == ["python", "-m", "sandbox.broker"]
    assert broker.environment()["SANDBOX_BROKER_PORT"] == "28082"
    assert broker.environment()["SANDBOX_STATE_DIR"] == str(s.state_dir)
    assert (str(s.state_dir), str(s.state_dir), "rw") in broker.mounts()
    assert (str(s.fixtures_dir), str(s.fixtures_dir), "ro") in broker.mounts()
    run = os.environ["MCP_SANDBOX_RUN"]  # this test run's id: its stacks' containers carry it as a label
    assert broker.labels == {
        "mcp-sandbox.stack": str(s.state_dir),
        "mcp-sandbox.component": "broker",
        "mcp-sandbox.run": run,
    }
    assert not {"PATH", "VIRTUAL_ENV"} & set(broker.environment())  # the host's, meaningless in the image


def test_what_a_component_adds_to_its_environment_reaches_its_container(tmp_path: Path) -> None:
    s = settings(tmp_path, runtime="docker")
    server = ProjectContainer(McpServer(s, "introspect"))
    assert server.environment()["SANDBOX_MCP_AUTH_MODE"] == "introspect"
    assert server.name == "mcp-server-introspect" and server.ports() == McpServer(s, "introspect").ports()


def test_a_port_held_by_a_listener_is_taken_but_one_in_time_wait_is_free() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Keycloak (Vert.x) and uvicorn do
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not is_free("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: its end of the connection lingers in TIME_WAIT
            client.recv(1)
    assert is_free("127.0.0.1", port)
    assert is_free("127.0.0.1", free_port())
