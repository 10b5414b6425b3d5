"""The state file: what is running, where, and where its logs are, so any shell can ask or stop it.

Secrets (admin and demo credentials) live beside it in a separate file readable only by the user.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.stack.process import ProcessRecord


@dataclass
class ComponentState:
    name: str
    url: str
    health_url: str
    log: str
    ports: dict[str, int]
    process: ProcessRecord | None = None
    container: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComponentState:
        process = data.pop("process", None)
        return cls(**data, process=ProcessRecord(**process) if process else None)


@dataclass
class StackState:
    runtime: str
    components: dict[str, ComponentState] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"runtime": self.runtime, "components": [asdict(c) for c in self.components.values()]}, indent=2
        )

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        components = [ComponentState.from_dict(entry) for entry in data.get("components", [])]
        return cls(runtime=data["runtime"], components={c.name: c for c in components})


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
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


class StateDamaged(SandboxError):
    """The state file exists but cannot be read: half-written, or edited by hand."""


def load_state(settings: Settings) -> StackState | None:
    try:
        return StackState.from_json(settings.state_file.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise StateDamaged(
            f"the state file {settings.state_file} cannot be read ({type(exc).__name__}: {exc})",
            "stop whatever the stack left running with `mcp-sandbox down`, which finds it without the file",
        ) from exc


def save_state(settings: Settings, state: StackState) -> None:
    _write_atomically(settings.state_file, state.to_json())


def clear_state(settings: Settings) -> None:
    settings.state_file.unlink(missing_ok=True)


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
                _write_atomically(self.path, json.dumps(values, indent=2), mode=0o600)
            return values[name]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
