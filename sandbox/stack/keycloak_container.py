"""Keycloak as a container: the official image (or one built here), with the local runtime's options."""

from __future__ import annotations

from sandbox.stack.container import ContainerComponent
from sandbox.stack.keycloak import SandboxKeycloak, bootstrap_admin_environment, container_command


def health_probe(management_port: int | str) -> list[str]:
    """GET /health/ready on the management port with bash alone: the official image has no curl."""
    request = "GET /health/ready HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"
    return [
        "bash",
        "-c",
        f"exec 3<>/dev/tcp/127.0.0.1/{management_port} && printf '{request}' >&3 && grep -q '\"UP\"' <&3",
    ]


class ContainerKeycloak(SandboxKeycloak, ContainerComponent):
    """Every `up` starts a new container: an empty database, then the sandbox tenants, as in the local runtime."""

    @property
    def image(self) -> str:
        return self.settings.keycloak_container_image

    def command(self) -> list[str]:
        return container_command(self.settings)

    def environment(self) -> dict[str, str]:
        return bootstrap_admin_environment(self.settings)

    def health_check(self) -> list[str]:
        return health_probe(self.settings.keycloak_management_port)
