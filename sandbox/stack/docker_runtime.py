"""The docker runtime: the local runtime's components, each run as a container instead of a process.

The list of components is defined once (:func:`sandbox.stack.launcher.default_components`); this maps
each to its container form, so a component added there runs in both runtimes.
"""

from __future__ import annotations

from sandbox.errors import SandboxError
from sandbox.stack.component import Component, ProcessComponent
from sandbox.stack.keycloak import LocalKeycloak

try:
    from sandbox.stack.keycloak_container import ContainerKeycloak
    from sandbox.stack.project_container import ProjectContainer
except ModuleNotFoundError as missing:  # testcontainers and docker come with the [docker] extra
    raise SandboxError(
        f"the docker runtime needs {missing.name}, which is not installed",
        "pip install 'mcp-agent-sandbox[docker]', or use the local runtime",
    ) from missing


def in_container(component: Component) -> Component:
    if isinstance(component, LocalKeycloak):
        return ContainerKeycloak(component.settings)  # the official image, not the local distribution
    if isinstance(component, ProcessComponent):
        return ProjectContainer(component)  # the project's own Python services, from the project image
    return component  # nothing to run here (an external Keycloak)


def in_containers(components: list[Component]) -> list[Component]:
    return [in_container(component) for component in components]
