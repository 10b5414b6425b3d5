"""A Python component of the project (the broker, the MCP server) run from the project image.

It wraps the component's local definition, so the name, ports, URLs, command, settings and
``configure`` step are those of the local runtime; only the place it runs differs. The state and
fixtures directories are mounted at the same paths, and the process runs as the host user, so the
files it writes are the same files, owned by the same user, as when it runs as a local process.
"""

from __future__ import annotations

import os
import sys

from sandbox.errors import SandboxError
from sandbox.stack.component import Port, ProcessComponent, Report
from sandbox.stack.container import ContainerComponent
from sandbox.stack.state import ComponentState


class ProjectContainer(ContainerComponent):
    def __init__(self, process: ProcessComponent) -> None:
        self.process = process
        self.name = process.name
        self.needs = process.needs
        super().__init__(process.settings)

    @property
    def image(self) -> str:
        return self.settings.project_container_image

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def health_url(self) -> str:
        return self.process.health_url

    def ports(self) -> list[Port]:
        return self.process.ports()

    def command(self) -> list[str]:
        interpreter, *arguments = self.process.command()
        if interpreter != sys.executable:
            raise SandboxError(
                f"{self.name} is not a Python module of this project ({interpreter}), so it has no container form",
                "run it with the local runtime (SANDBOX_RUNTIME=local)",
            )
        return ["python", *arguments]

    def environment(self) -> dict[str, str]:
        """The process's own environment (every setting, and what the component adds), less the host's."""
        env = {k: v for k, v in self.process.environment().items() if k not in self.process.inherited}
        return {**env, "PYTHONUNBUFFERED": "1", "HOME": "/tmp"}

    def health_check(self) -> list[str]:
        probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)"
        return ["python", "-c", probe, self.health_url]

    def container_options(self) -> dict[str, object]:
        return {"user": f"{os.getuid()}:{os.getgid()}"}

    def mounts(self) -> list[tuple[str, str, str]]:
        s = self.settings
        shared = [(s.state_dir, "rw"), (s.fixtures_dir, "ro")]
        if s.broker_policy_file is not None:
            shared.append((s.broker_policy_file.parent, "ro"))
        return [(str(path), str(path), mode) for path, mode in shared]

    def clear_data(self) -> None:
        self.process.clear_data()

    def configure(self, state: ComponentState, report: Report) -> None:
        self.process.configure(state, report)
