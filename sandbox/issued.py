"""A registry of the credentials a test run was issued, so a scan after the run can prove none was stored.

Off unless ``SANDBOX_ISSUED_CREDENTIALS`` names a file (the test suite sets it, in the stack's state directory):
then every secret, password, one-time-code seed and token the harness, the agent client or the broker client
receives is appended to it, one JSON line each (mode 0600, like the stack's own secrets file). The scan
(:mod:`sandbox.harness.secret_scan`) skips this file and looks for each value everywhere else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ENVIRONMENT = "SANDBOX_ISSUED_CREDENTIALS"
#: Fields of an answer (broker, Keycloak) that hold a credential.
SECRET_FIELDS = frozenset(
    {"client_secret", "password", "otp_secret", "access_token", "refresh_token", "id_token", "secret", "d"}
)
SHORTEST = 8  # shorter values would match by chance; no issued credential is that short


def registry() -> Path | None:
    value = os.environ.get(ENVIRONMENT)
    return Path(value) if value else None


def remember(*values: str | None) -> None:
    """Add credentials to the registry (nothing happens when no registry is configured)."""
    _append([v for v in values if isinstance(v, str) and len(v) >= SHORTEST])


def stored_on_purpose(path: Path) -> None:
    """A file the user asked a credential to be written to (an agent's own credential file): the scan skips it."""
    _append([{"stored_on_purpose": str(path.resolve())}])


def _append(entries: list[Any]) -> None:
    path = registry()
    if path is None or not entries:
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a") as out:  # one write per line: appends from parallel workers do not interleave
        for entry in entries:
            out.write(json.dumps(entry) + "\n")


def remember_answer(answer: Any) -> None:
    """Add every credential field found anywhere in a JSON answer."""
    remember(*_secret_values(answer))


def _secret_values(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in SECRET_FIELDS and isinstance(item, str):
                yield item
            else:
                yield from _secret_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _secret_values(item)


def _entries(path: Path) -> list[Any]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def remembered(path: Path) -> set[str]:
    """The credentials in the registry at ``path``."""
    return {entry for entry in _entries(path) if isinstance(entry, str)}


def kept_on_purpose(path: Path) -> set[Path]:
    """The files the registry at ``path`` says a user asked credentials to be written to."""
    return {Path(e["stored_on_purpose"]) for e in _entries(path) if isinstance(e, dict) and "stored_on_purpose" in e}
