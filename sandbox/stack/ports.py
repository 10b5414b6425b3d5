"""Check that the ports a component needs are free before anything slow starts."""

from __future__ import annotations

import contextlib
import errno
import socket
from pathlib import Path

from sandbox.errors import PortInUse


def is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As servers do: a port whose last connections linger in TIME_WAIT (a server just stopped) is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def ensure_free(host: str, port: int, purpose: str, setting: str) -> None:
    """Raise :class:`PortInUse` naming the port, what needed it, and the setting that moves it."""
    if not is_free(host, port):
        raise PortInUse(
            f"port {port} on {host} ({purpose}) is already in use",
            f"stop what holds it (see: ss -ltnp 'sport = :{port}') or pick another port with {setting}=<port>",
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (tests use it to run a stack beside a user's own)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


#: The settings that hold the stack's ports.
PORT_SETTINGS = (
    "KEYCLOAK_PORT",
    "KEYCLOAK_MANAGEMENT_PORT",
    "BROKER_PORT",
    "MCP_PORT",
    "MCP_INTROSPECT_PORT",
    "MCP_JWT_PORT",
    "KEYCLOAK_HTTPS_PORT",
    "MCP_TLS_PORT",
    "MCP_INTROSPECT_TLS_PORT",
    "MCP_JWT_TLS_PORT",
    "POSTGRES_PORT",
)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different ports the OS considers free right now (each held until all are chosen)."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for probe in probes:
            probe.bind((host, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


#: Ports a stack's Hydras may take, from ``SANDBOX_HYDRA_PORT`` on (two per Hydra: the sandbox tenants' and the pool).
HYDRA_PORT_BLOCK = 16
#: Hydras a private test stack lends to tenants made on Hydra: two scenarios of two tenants each at once, and spares.
TEST_HYDRA_POOL = 6


def free_port_block(count: int, host: str = "127.0.0.1", attempts: int = 50) -> int:
    """The first of ``count`` consecutive ports that are all free right now."""
    for _ in range(attempts):
        first = free_port(host)
        if first + count <= 65535 and all(is_free(host, first + offset) for offset in range(count)):
            return first
    raise PortInUse(f"found no {count} consecutive free ports on {host}", "free some ports, or set them explicitly")


def private_stack_environment(state_dir: Path, *, hydra_pool: int = 0) -> dict[str, str]:
    """SANDBOX_* variables for a stack of its own: its own state directory and free ports, all different, and
    ``hydra_pool`` Hydras for tenants made on Hydra (the test session's stack has :data:`TEST_HYDRA_POOL`)."""
    hydra = free_port_block(HYDRA_PORT_BLOCK)
    ports = free_ports(len(PORT_SETTINGS))
    while any(hydra <= port < hydra + HYDRA_PORT_BLOCK for port in ports):
        ports = free_ports(len(PORT_SETTINGS))
    return {
        "SANDBOX_STATE_DIR": str(state_dir),
        **{f"SANDBOX_{name}": str(port) for name, port in zip(PORT_SETTINGS, ports, strict=True)},
        "SANDBOX_HYDRA_PORT": str(hydra),
        "SANDBOX_HYDRA_POOL": str(hydra_pool),
    }
