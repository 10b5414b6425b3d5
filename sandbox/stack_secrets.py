"""The stack's own generated credentials and their names, in one 0600 file beside the state file.

Keycloak's admin service account, the demo clients, each sandbox tenant's admin, the MCP server's
introspection client and the usage-report bearer secret: made on first use, read by whoever runs on
this stack (the launcher, the broker, the MCP server, the CLI and the tests).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from pathlib import Path

from filelock import FileLock

from sandbox.config import Settings

#: The introspection client secret every tenant realm gives the reference MCP server.
RESOURCE_SERVER_SECRET = "mcp-resource-server"
#: The bearer secret of ``POST /usage`` (the MCP server's usage reports to the broker).
USAGE_INGEST_SECRET = "usage-ingest"
#: The admin each sandbox tenant gets at start-up.
SANDBOX_ADMIN = "admin"


def admin_secret_names(tenant: str, username: str = SANDBOX_ADMIN) -> tuple[str, str]:
    """Names in the stack's secrets file of a sandbox tenant admin's password and raw OTP secret."""
    return f"{tenant}/{username}/password", f"{tenant}/{username}/otp"


def otp_base32(raw: str) -> str:
    """What an authenticator app (or pyotp) takes for Keycloak's raw OTP secret."""
    return base64.b32encode(raw.encode()).decode().rstrip("=")


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Secrets:
    """Credentials the stack generates for itself (admin, demo clients), kept in a 0600 file.

    Every call reads the file afresh and writes under a lock, so processes and objects never
    overwrite each other's entries.
    """

    def __init__(self, settings: Settings) -> None:
        self.path = settings.secrets_file
        self._lock = FileLock(str(self.path.with_name(".secrets.lock")), timeout=30)

    def _read(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def get_or_create(self, name: str) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            values = self._read()
            if name not in values:
                values[name] = secrets.token_urlsafe(24)
                write_atomically(self.path, json.dumps(values, indent=2), mode=0o600)
            return values[name]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
