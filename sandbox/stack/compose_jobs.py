"""The one-shot jobs of ``compose/docker-compose.yml``, run from the project image.

``init``: start from nothing, as ``mcp-sandbox up`` of a stopped stack does: clear each component's
data and the stack's secrets in the shared state directory, then write Keycloak's bootstrap admin
(new secrets) as an environment file its container reads at start, and Keycloak's ``kc.sh`` arguments
(:func:`sandbox.stack.keycloak.container_command`, one a line), which its container runs: the compose file
names no Keycloak option of its own, so it runs the build and server options the other runtimes run.
``configure``: once Keycloak is healthy, the ``configure`` step of every component of the stack (the
tenant realms, the tenants' admins), exactly as the launcher runs it after each start.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sandbox.config import Settings, load_settings
from sandbox.errors import SandboxError
from sandbox.stack.keycloak import bootstrap_admin_environment, container_command
from sandbox.stack.launcher import default_components
from sandbox.stack.state import ComponentState
from sandbox.stack_secrets import Secrets

#: The user of the Keycloak images (the official one and compose/keycloak.Dockerfile's).
KEYCLOAK_UID, KEYCLOAK_GID = 1000, 0


def keycloak_env_file(settings: Settings) -> Path:
    return settings.state_dir / "keycloak.env"


def keycloak_arguments_file(settings: Settings) -> Path:
    return settings.state_dir / "keycloak.args"


def init(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    for component in default_components(settings):
        component.clear_data()
    Secrets(settings).clear()
    path = keycloak_env_file(settings)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(descriptor, "w") as out:
        out.writelines(f"{name}={value}\n" for name, value in bootstrap_admin_environment(settings).items())
    if os.geteuid() == 0:
        os.chown(path, KEYCLOAK_UID, KEYCLOAK_GID)  # readable by Keycloak's user alone
    arguments = container_command(settings)
    if any("\n" in argument for argument in arguments):
        raise SandboxError(
            "a Keycloak option holds a line break, which keycloak.args cannot carry",
            "remove the line break from the SANDBOX_* setting it comes from",
        )
    keycloak_arguments_file(settings).write_text("".join(f"{argument}\n" for argument in arguments))


def configure(settings: Settings) -> None:
    for component in default_components(settings):
        entry = ComponentState(component.name, "", "", "", {})
        component.configure(entry, lambda step, name=component.name: print(f"{name}: {step}", flush=True))
        for tenant, issuer in entry.details.get("tenants", {}).items():
            print(f"tenant {tenant}: issuer {issuer}", flush=True)


def main(argv: list[str]) -> None:
    jobs = {"init": init, "configure": configure}
    if len(argv) != 1 or argv[0] not in jobs:
        raise SystemExit(f"usage: python -m sandbox.stack.compose_jobs {{{'|'.join(jobs)}}}")
    try:
        jobs[argv[0]](load_settings(runtime="local"))
    except SandboxError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from error


if __name__ == "__main__":
    main(sys.argv[1:])
