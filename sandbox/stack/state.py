"""The state file: what is running, where, and where its logs are, so any shell can ask or stop it.

Secrets (admin and demo credentials) live beside it in a separate file readable only by the user
(:mod:`sandbox.stack_secrets`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox.config import DEFAULT_IDP, Settings
from sandbox.errors import SandboxError
from sandbox.stack.process import ProcessRecord
from sandbox.stack_secrets import write_atomically


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
    idp: str = DEFAULT_IDP  # the agents' IdP the stack was started with (SANDBOX_IDP)
    hydra_pool: int = 0  # the Hydras it lends to tenants made on Hydra (SANDBOX_HYDRA_POOL)

    @property
    def tenant_issuers(self) -> dict[str, str]:
        """The sandbox tenants made when the stack started, and their issuers (as the component that made them
        recorded them)."""
        return {t: i for entry in self.components.values() for t, i in entry.details.get("tenants", {}).items()}

    def to_json(self) -> str:
        components = [asdict(c) for c in self.components.values()]
        return json.dumps(
            {"runtime": self.runtime, "idp": self.idp, "hydra_pool": self.hydra_pool, "components": components},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        components = [ComponentState.from_dict(entry) for entry in data.get("components", [])]
        return cls(
            runtime=data["runtime"],
            components={c.name: c for c in components},
            idp=data.get("idp", DEFAULT_IDP),
            hydra_pool=int(data.get("hydra_pool", 0)),
        )


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
    write_atomically(settings.state_file, state.to_json())


def clear_state(settings: Settings) -> None:
    settings.state_file.unlink(missing_ok=True)
