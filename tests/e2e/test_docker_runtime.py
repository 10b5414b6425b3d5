"""The docker runtime (SANDBOX_RUNTIME=docker): the same stack as containers, driven through `mcp-sandbox`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from test_stack import isolated_stack_env, mcp_sandbox

from sandbox.config import Settings

pytestmark = pytest.mark.xdist_group("docker")  # one worker builds the images and runs these one by one

REPOSITORY = Path(__file__).resolve().parents[2]


def containers_of(state_dir: Path) -> list[str]:
    """Every container, running or not, labelled as this stack's (`docker ps -a`)."""
    listing = subprocess.run(
        ["docker", "ps", "-a", "-q", "--no-trunc", "--filter", f"label=mcp-sandbox.stack={state_dir}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout.split()


#: The acceptance scenarios of the container runtime: the very files the local runtime runs (scenarios/).
SCENARIOS = ["06-revoke-then-401.yaml", "07-tenant-isolation.yaml", "05-rotation-secret.yaml"]


def test_up_runs_the_stack_in_containers_that_pass_the_scenarios_and_down_removes_them_all(
    tmp_path: Path, docker_images: dict[str, str]
) -> None:
    env = {**isolated_stack_env(tmp_path, **docker_images), "SANDBOX_RUNTIME": "docker"}
    settings = Settings(**{k.removeprefix("SANDBOX_").lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    up = mcp_sandbox("up", "--runtime", "docker", env=env)
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads(settings.state_file.read_text())
        assert state["runtime"] == "docker"
        ids = {c["name"]: c["container"] for c in state["components"]}
        assert set(ids) >= {"keycloak", "mcp-server", "broker"} and all(ids.values()), ids
        assert sorted(ids.values()) == sorted(containers_of(settings.state_dir))

        status = json.loads(mcp_sandbox("status", "--json", env=env).stdout)
        assert {c["name"]: c["state"] for c in status["components"]} == dict.fromkeys(ids, "running")

        # A tenant token through the containerised Keycloak, signed by that tenant's key, with its issuer.
        curl = next(line for line in up.stdout.splitlines() if line.startswith("curl "))
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, check=True)
        tenant = settings.tenants[0]
        keys = KeySet.import_key_set(httpx.get(f"{settings.issuer(tenant)}/protocol/openid-connect/certs").json())
        assert jwt.decode(json.loads(answer.stdout)["access_token"], keys).claims["iss"] == settings.issuer(tenant)

        # Host networking, but bound to loopback only, as the local runtime.
        ports = {settings.keycloak_port, settings.keycloak_management_port, settings.broker_port}
        ports |= {server.port for server in settings.mcp_servers}
        listening = [
            c.laddr for c in psutil.net_connections(kind="inet") if c.status == "LISTEN" and c.laddr.port in ports
        ]
        assert {address.port for address in listening} == ports
        assert all(address.ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for address in listening), listening

        # Revoke then 401, tenant isolation, rotation without outage: `mcp-sandbox run` on this stack.
        run = mcp_sandbox("run", *(str(REPOSITORY / "scenarios" / name) for name in SCENARIOS), env=env, timeout=900)
        failures = [
            line for line in run.stderr.splitlines() if "FAILED" in line or ": error" in line or "failed" in line
        ]
        assert run.returncode == 0, "\n".join(failures) or run.stderr[-3000:]
        assert f"{len(SCENARIOS)} of {len(SCENARIOS)} scenarios passed" in run.stdout
    finally:
        down = mcp_sandbox("down", env=env)
    assert down.returncode == 0, down.stderr
    assert containers_of(settings.state_dir) == []
    assert "Keycloak" in (settings.log_dir / "keycloak.log").read_text()  # its output outlives the container


def test_up_refuses_another_runtime_while_a_stack_runs(tmp_path: Path) -> None:
    env = isolated_stack_env(tmp_path)
    state = Path(env["SANDBOX_STATE_DIR"]) / "state.json"
    state.parent.mkdir(parents=True)
    running = {"name": "keycloak", "url": "", "health_url": "", "log": "", "ports": {}, "container": "c0ffee"}
    state.write_text(json.dumps({"runtime": "docker", "components": [running]}))
    result = mcp_sandbox("up", "--runtime", "local", env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "docker runtime is running" in errors[0] and "mcp-sandbox down" in errors[0]
