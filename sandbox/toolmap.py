"""The tool map (``fixtures/tools.yaml``): which scope each MCP tool requires.

The MCP server enforces it, the broker's roles grant from it, and Keycloak gets one client
scope per scope in it. A scope may name ``{environment}``; the tool then takes an
``environment`` argument and requires the scope for that environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sandbox.errors import SandboxError


@dataclass(frozen=True)
class Tool:
    name: str
    scope: str
    description: str

    @property
    def per_environment(self) -> bool:
        return "{environment}" in self.scope

    def scope_for(self, environment: str | None = None) -> str:
        return self.scope.format(environment=environment) if self.per_environment else self.scope


@dataclass(frozen=True)
class ToolMap:
    tools: dict[str, Tool]
    environments: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> ToolMap:
        try:
            data: Any = yaml.safe_load(path.read_text())
            environments = tuple(data.get("environments", ()))
            tools = {
                name: Tool(name, spec["scope"], spec.get("description", "")) for name, spec in data["tools"].items()
            }
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
            raise SandboxError(
                f"cannot read the tool map {path}: {exc}",
                "each entry under `tools:` needs a `scope` (see fixtures/tools.yaml)",
            ) from exc
        return cls(tools, environments)

    def required_scope(self, tool: str, arguments: dict[str, Any] | None = None) -> str | None:
        """The scope a call needs, or None for an unknown tool or an environment not in the map."""
        entry = self.tools.get(tool)
        if entry is None:
            return None
        if not entry.per_environment:
            return entry.scope
        environment = (arguments or {}).get("environment")
        return entry.scope_for(environment) if environment in self.environments else None

    def all_scopes(self) -> list[str]:
        """Every concrete scope, with ``{environment}`` expanded."""
        scopes: list[str] = []
        for tool in self.tools.values():
            for environment in self.environments if tool.per_environment else (None,):
                scope = tool.scope_for(environment)
                if scope not in scopes:
                    scopes.append(scope)
        return scopes
