"""What a scenario may name, from the stack it runs against: the broker's policy (roles, their environments,
credential types and token lifetimes, the naming rule for agents) and the MCP server's tool map (tools, scopes).

A scenario is checked against it when it is loaded, so a typo fails at ``file:line`` before anything runs
rather than as a refusal halfway through.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.broker.base import NAME
from sandbox.broker.policy import Policy
from sandbox.config import Settings
from sandbox.scenarios.model import Header, Step
from sandbox.toolmap import ToolMap
from sandbox.yamlfile import YamlDocument


@dataclass(frozen=True)
class Catalog:
    policy: Policy
    tools: ToolMap

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        """The policy and tool map the stack's broker and MCP servers load (the same settings choose them)."""
        tools = ToolMap.load(settings.tools_file)
        return cls(Policy.load(settings.policy_file, tools), tools)

    def check(self, document: YamlDocument, header: Header, steps: list[Step]) -> None:
        """Raise a FileError at the first name the policy or the tool map does not know."""
        refused_on_purpose = {
            step.arguments.agent  # type: ignore[attr-defined]
            for step in steps
            if step.name == "provision" and step.arguments.expect == "refused"  # type: ignore[attr-defined]
        }
        for name, agent in header.agents.items():
            if name in refused_on_purpose:
                continue  # the scenario proves the broker refuses it
            where = ("agents", name)
            if not NAME.fullmatch(name):
                raise document.error(
                    where,
                    f"agent name {name!r} breaks the broker's naming rule",
                    "use 2-48 lowercase letters, digits and dashes, starting with a letter",
                )
            for violation in self.policy.check(
                role=agent.role,
                environment=agent.environment,
                credential_type=agent.credential,
                token_lifetime=agent.token_lifetime,
            ):
                field = {"credential_type": "credential"}.get(violation.field, violation.field)
                raise document.error((*where, field), f"agent {name!r}: {violation.reason}", self._roles_hint())
            if agent.zone is not None and agent.zone not in self.policy.zones.addresses:
                raise document.error((*where, "zone"), f"agent {name!r}: unknown network zone {agent.zone!r}",
                                     self._zones_hint())  # fmt: skip
        scopes = set(self.tools.all_scopes())
        for tenant_name, tenant in header.tenants.items():
            for user_name, user in tenant.users.items():
                for index, scope in enumerate(user.scopes):
                    if scope not in scopes:
                        raise document.error(
                            ("tenants", tenant_name, "users", user_name, "scopes", index),
                            f"user {user_name!r} holds unknown scope {scope!r}",
                            f"use a scope of the tool map: {', '.join(sorted(scopes))}",
                        )
        for step in steps:
            self._check_tools(document, step)
            zone = getattr(step.arguments, "from_zone", None)
            if zone is not None and zone not in self.policy.zones.addresses:
                raise document.error(
                    ("steps", step.index, step.name, "from_zone"), f"unknown network zone {zone!r}", self._zones_hint()
                )

    def _check_tools(self, document: YamlDocument, step: Step) -> None:
        arguments = step.arguments
        named: list[tuple[tuple[str | int, ...], str]] = []
        tool = getattr(arguments, "tool", None)
        if isinstance(tool, str):
            named.append((("tool",), tool))
        if step.name == "list_tools":
            named += [(("expect", index), name) for index, name in enumerate(arguments.expect)]  # type: ignore[attr-defined]
        for location, name in named:
            if name not in self.tools.tools:
                raise document.error(
                    ("steps", step.index, step.name, *location),
                    f"unknown tool {name!r}",
                    f"use a tool of the MCP server: {', '.join(sorted(self.tools.tools))}",
                )

    def _zones_hint(self) -> str:
        zones = ", ".join(f"{name} ({address})" for name, address in sorted(self.policy.zones.addresses.items()))
        return f"use a zone of the policy's network_zones: {zones or '(none defined)'}"

    def _roles_hint(self) -> str:
        return f"see the policy's roles ({', '.join(sorted(self.policy.roles))}): mcp-sandbox agents roles"
