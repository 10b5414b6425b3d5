"""A Docker engine for the container runtime: use the one that answers, or install and start one (root only).

On machines without a container engine or registry (CI here), this installs Debian's ``docker.io``,
``debootstrap`` and a compose implementation, and starts ``dockerd`` without a bridge or iptables
rules: every container runs with host networking, so nothing but loopback is ever configured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import DockerException

from sandbox.config import Settings
from sandbox.errors import SandboxError

Report = Callable[[str], None]

#: Debian packages that provide each command the container runtime needs here.
PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap", "docker-compose": "docker-compose"}
DAEMON_ARGS = ("--bridge=none", "--iptables=false", "--ip6tables=false")


class DockerUnavailable(SandboxError):
    pass


def client(timeout: int = 120) -> docker.DockerClient:
    """A client of the engine at DOCKER_HOST (default: the local socket); fails in one line when none answers."""
    try:
        engine = docker.from_env(timeout=timeout)
        engine.ping()
    except DockerException as exc:
        raise DockerUnavailable(
            f"no Docker engine answers ({str(exc).splitlines()[0][:160]})",
            "start one (as root: python -m sandbox.stack.images) or set DOCKER_HOST",
        ) from exc
    return engine


def answers() -> bool:
    try:
        docker.from_env(timeout=5).ping()
    except DockerException:
        return False
    return True


def compose_command() -> list[str]:
    """The compose implementation here: the v2 plugin (``docker compose``) if it works, else v1 (``docker-compose``)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise DockerUnavailable(
        "no compose implementation found (neither `docker compose` nor `docker-compose`)",
        "install one: apt-get install docker-compose (or the Docker Compose v2 plugin)",
    )


def install_missing(commands: list[str], report: Report) -> None:
    """apt-get install the Debian packages of those ``commands`` that are not on PATH (root only)."""
    missing = sorted({PACKAGES[command] for command in commands if shutil.which(command) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise DockerUnavailable(
            f"{', '.join(missing)} not installed, and installing needs root",
            f"install them (apt-get install {' '.join(missing)}) or run this as root",
        )
    report(f"installing {', '.join(missing)}")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            tail = " | ".join(result.stderr.strip().splitlines()[-2:])
            raise DockerUnavailable(f"`{' '.join(command)}` failed: {tail}", "fix apt, or install the packages by hand")


def start_daemon(settings: Settings, report: Report, timeout: float = 60) -> None:
    """Start dockerd in the background (its own session, logging to a file) and wait until it answers."""
    if os.geteuid() != 0:
        raise DockerUnavailable("no Docker engine answers, and starting dockerd needs root", "start Docker yourself")
    log_path = daemon_log(settings)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    report(f"starting dockerd {' '.join(DAEMON_ARGS)} (log: {log_path})")
    with log_path.open("ab") as log:
        daemon = subprocess.Popen(
            ["dockerd", *DAEMON_ARGS],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this process: the engine is the machine's, not the stack's
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers():
            return
        if daemon.poll() is not None:
            break
        time.sleep(0.25)
    raise DockerUnavailable(
        f"dockerd did not answer within {timeout:.0f}s (exit {daemon.poll()}); see {log_path}",
        "read that log; another dockerd may hold /var/run/docker.pid",
    )


def daemon_log(settings: Settings) -> Path:
    return settings.cache_dir / "docker" / "dockerd.log"


def ensure_engine(settings: Settings, report: Report) -> docker.DockerClient:
    """A working engine and the tools to build images here: what answers, else (root only) installed and started."""
    tools = ["debootstrap"] if _has_compose() else ["debootstrap", "docker-compose"]
    if answers():
        install_missing(tools, report)
    else:
        install_missing(["dockerd", *tools], report)
        start_daemon(settings, report)
    return client()


def _has_compose() -> bool:
    try:
        compose_command()
    except DockerUnavailable:
        return False
    return True
