"""Onboarding as code: bring a tenant's agents to the state an ``agents.yaml`` declares.

The plan compares the file with the broker's live agents: agents to create, roles to change, and agents
to revoke (only agents an earlier ``apply`` created: ``source`` "apply"; agents made by hand are never
touched). Every create and role change is checked against the broker's policy before anything changes;
a second run of the same file plans nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.admin.client import BrokerClient
from sandbox.errors import SandboxError
from sandbox.idp.provider import Binding
from sandbox.yamlfile import YamlDocument, load_yaml

APPLY_SOURCE = "apply"
LIVE = ("provisioning", "pending_approval", "active", "rotating", "dormant", "suspended", "revoking")


class DesiredAgent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    owner: str
    role: str
    environment: str
    mode: Literal["autonomous", "delegated"] = "autonomous"
    credential_type: Literal["client_secret", "private_key_jwt"] = "client_secret"
    binding: Binding = Field(
        "bearer",
        description="dpop: its tokens are bound to a key it keeps; mtls: to its TLS client certificate (at creation).",
    )
    jwk_file: str | None = Field(None, description="Path (relative to the file) of the agent's public JWK.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class AgentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str
    agents: list[DesiredAgent] = Field(default_factory=list)


@dataclass(frozen=True)
class Change:
    action: Literal["create", "change_role", "revoke"]
    name: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    agent_id: str | None = None
    index: int | None = None  # position in the file, for file:line errors

    def describe(self) -> str:
        if self.action == "create":
            return f"+ create {self.name} ({self.after['role']}/{self.after['environment']})"
        if self.action == "change_role":
            return (
                f"~ change role {self.name}: {self.before['role']}/{self.before['environment']}"
                f" -> {self.after['role']}/{self.after['environment']}"
            )
        return f"- revoke {self.name} ({self.before['role']}/{self.before['environment']})"


@dataclass(frozen=True)
class Plan:
    tenant: str
    changes: list[Change]

    @property
    def empty(self) -> bool:
        return not self.changes

    def describe(self) -> str:
        if self.empty:
            return f"tenant {self.tenant}: no changes; the agents match the file"
        return "\n".join(
            [f"tenant {self.tenant}: {len(self.changes)} change(s)", *(c.describe() for c in self.changes)]
        )


def load_agents_file(path: Path) -> tuple[YamlDocument, AgentsFile]:
    document = load_yaml(path)
    declared = document.validate(AgentsFile)
    seen: dict[str, int] = {}
    for index, agent in enumerate(declared.agents):
        if agent.name in seen:
            raise document.error(
                ("agents", index, "name"),
                f"agent {agent.name!r} is declared twice (first as agents[{seen[agent.name]}])",
                "give each agent its own name",
            )
        seen[agent.name] = index
        if agent.credential_type == "private_key_jwt" and not agent.jwk_file:
            raise document.error(("agents", index), f"agent {agent.name!r} uses private_key_jwt", "add jwk_file")
    return document, declared


def make_plan(declared: AgentsFile, current: list[dict[str, Any]]) -> Plan:
    """The changes that turn ``current`` (the broker's agents of the tenant) into ``declared``."""
    live = {agent["name"]: agent for agent in current if agent["status"] in LIVE}
    changes: list[Change] = []
    for index, desired in enumerate(declared.agents):
        wanted = {"role": desired.role, "environment": desired.environment}
        existing = live.get(desired.name)
        if existing is None:
            changes.append(Change("create", desired.name, after=wanted, index=index))
        elif (existing["role"], existing["environment"]) != (desired.role, desired.environment):
            before = {"role": existing["role"], "environment": existing["environment"]}
            changes.append(Change("change_role", desired.name, before, wanted, existing["id"], index))
    declared_names = {agent.name for agent in declared.agents}
    for name, existing in sorted(live.items()):
        if name not in declared_names and existing.get("source") == APPLY_SOURCE:
            before = {"role": existing["role"], "environment": existing["environment"]}
            changes.append(Change("revoke", name, before=before, agent_id=existing["id"]))
    return Plan(declared.tenant, changes)


def _provision_body(document: YamlDocument, desired: DesiredAgent) -> dict[str, Any]:
    body = desired.model_dump(exclude={"jwk_file"})
    body["metadata"] = {**desired.metadata, "managed_by": APPLY_SOURCE, "declared_in": str(document.path)}
    if desired.jwk_file:
        jwk_path = (document.path.parent / desired.jwk_file).expanduser()
        try:
            body["jwk"] = json.loads(jwk_path.read_text())
        except (OSError, ValueError) as exc:
            raise SandboxError(
                f"cannot read the JWK of agent {desired.name} at {jwk_path}: {exc}", "fix jwk_file"
            ) from None
    return body


def check_plan(client: BrokerClient, document: YamlDocument, declared: AgentsFile, plan: Plan) -> None:
    """Ask the broker's policy about every create and role change; refuse the whole plan on any violation."""
    checked = [c for c in plan.changes if c.action in ("create", "change_role")]
    if not checked:
        return
    bodies = []
    for change in checked:
        assert change.index is not None
        desired = declared.agents[change.index]
        body = _provision_body(document, desired) if change.action == "create" else desired.model_dump()
        body.pop("jwk_file", None)
        if change.action == "change_role":
            body["metadata"] = {}
        bodies.append(body)
    results = client.post(f"/tenants/{declared.tenant}/policy/check", {"agents": bodies})
    for change, result in zip(checked, results, strict=True):
        if result["violations"]:
            assert change.index is not None
            named = result["violations"][0].split(":", 1)[0]
            where = ("agents", change.index, named) if named in DesiredAgent.model_fields else ("agents", change.index)
            raise document.error(
                where,
                f"agent {change.name!r} breaks the policy: {'; '.join(result['violations'])}",
                "fix the entry; nothing was changed",
            )


def apply_plan(
    client: BrokerClient, document: YamlDocument, declared: AgentsFile, plan: Plan, *, reason: str = "apply"
) -> dict[str, Any]:
    """Carry out a checked plan; return what was done and each new agent's credential (shown once)."""
    done: list[str] = []
    credentials: dict[str, Any] = {}
    tenant = declared.tenant
    for change in plan.changes:
        if change.action == "create":
            assert change.index is not None
            body = _provision_body(document, declared.agents[change.index])
            result = client.post(f"/tenants/{tenant}/agents", body)
            credentials[change.name] = {**result["credential"], "status": result["status"]}
        elif change.action == "change_role":
            client.post(f"/tenants/{tenant}/agents/{change.agent_id}/role", {**change.after, "reason": reason})
        else:
            client.post(f"/tenants/{tenant}/agents/{change.agent_id}/revoke", {"reason": f"{reason}: not declared"})
        done.append(change.describe())
    return {"tenant": tenant, "done": done, "credentials": credentials}


def apply_agents_file(client: BrokerClient, path: Path, *, plan_only: bool = False) -> tuple[Plan, dict[str, Any]]:
    """Load ``path``, plan against the tenant's agents, check the whole plan, then apply it (unless ``plan_only``)."""
    document, declared = load_agents_file(path)
    current = client.get(f"/tenants/{declared.tenant}/agents")
    plan = make_plan(declared, current)
    check_plan(client, document, declared, plan)
    if plan_only or plan.empty:
        return plan, {"tenant": declared.tenant, "plan": [c.describe() for c in plan.changes], "applied": False}
    return plan, {**apply_plan(client, document, declared, plan), "applied": True}
