"""What a scenario file says: its tenants and admins, the agents it may provision, and ordered steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox.modes import ModeName


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdminSpec(Strict):
    """A human tenant admin: a user of the tenant realm who logs in through Keycloak's real login form."""

    mfa: bool = Field(default=True, description="Has a TOTP second factor (needed for privileged acts).")


class UserSpec(Strict):
    """A human user of the tenant (not an admin) who may let delegated agents act for them."""

    scopes: list[str] = Field(description="The tool scopes the user holds; an agent acting for them gets no more.")


class TenantSpec(Strict):
    admins: dict[str, AdminSpec] = Field(default={"admin": AdminSpec()}, description="Admins by name.")
    users: dict[str, UserSpec] = Field(default_factory=dict, description="Users by name.")


class AgentSpec(Strict):
    """An agent the scenario may provision, by the name its steps use."""

    tenant: str | None = Field(default=None, description="Tenant name; the first tenant when omitted.")
    role: str = Field(description="Role template from the policy, e.g. read-only-analytics.")
    environment: Literal["staging", "production"] = "staging"
    mode: Literal["autonomous", "delegated"] = "autonomous"
    credential: Literal["client_secret", "private_key_jwt"] = "client_secret"
    binding: Literal["bearer", "dpop", "mtls"] = Field(
        default="bearer",
        description="dpop: the agent keeps a DPoP key; its tokens are bound to it (RFC 9449) and every request "
        "carries a proof made with it. mtls: the agent holds a client certificate of the sandbox's loopback CA; "
        "its tokens are bound to it (RFC 8705, cnf.x5t#S256), taken on Keycloak's HTTPS port and used on the "
        "MCP servers' TLS listeners.",
    )
    token_lifetime: int | None = Field(default=None, gt=0, description="Seconds; at most the role's maximum.")
    servers: list[str] | None = Field(default=None, description="MCP servers it may call; default: all.")
    zone: str | None = Field(
        default=None,
        description="The network zone (a name in the policy's network_zones) its token requests and calls come "
        "from; the machine's own choice of address (127.0.0.1) when omitted.",
    )


class ServerSpec(Strict):
    """An extra reference MCP server of this scenario that trusts only the tenants named (checks tokens locally).

    It is registered with the broker, so agents get it as an audience, but takes no trust list from it.
    """

    trusts: list[str] = Field(min_length=1, description="Tenant names whose tokens it accepts.")
    mode: Literal["jwt"] = "jwt"


class Header(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Identifier: lowercase, digits, dashes.")
    description: str = Field(description="The lifecycle promise this scenario proves, in a sentence or two.")
    seed: int = Field(default=0, description="Seed for generated data (Faker): same seed, same run.")
    revocation_modes: list[ModeName] = Field(
        default=["jwt+events"],
        min_length=1,
        description="The stack's MCP servers (one per revocation mode) that calls go to unless a step names one.",
    )
    tenants: dict[str, TenantSpec] = Field(default={"main": TenantSpec()}, min_length=1)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    servers: dict[str, ServerSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> Header:
        people = [name for tenant in self.tenants.values() for name in [*tenant.admins, *tenant.users]]
        if len(people) != len(set(people)):
            raise ValueError("admin and user names must be unique across tenants")
        for name, agent in self.agents.items():
            if agent.tenant is not None and agent.tenant not in self.tenants:
                raise ValueError(f"agent {name!r} names tenant {agent.tenant!r}, which is not declared")
        for name, server in self.servers.items():
            if unknown := set(server.trusts) - set(self.tenants):
                raise ValueError(f"server {name!r} trusts undeclared tenants {sorted(unknown)}")
        return self

    def tenant_of_agent(self, agent: str) -> str:
        return self.agents[agent].tenant or next(iter(self.tenants))

    def tenant_of_admin(self, admin: str) -> str:
        return next(name for name, tenant in self.tenants.items() if admin in tenant.admins)

    def tenant_of_user(self, user: str) -> str:
        return next(name for name, tenant in self.tenants.items() if user in tenant.users)

    @property
    def admin_names(self) -> list[str]:
        return [name for tenant in self.tenants.values() for name in tenant.admins]

    @property
    def user_names(self) -> list[str]:
        return [name for tenant in self.tenants.values() for name in tenant.users]


@dataclass(frozen=True)
class Step:
    """One step as written: its library name, validated arguments, and where it is in the file."""

    index: int
    name: str
    arguments: BaseModel
    line: int

    def label(self) -> str:
        summary = getattr(self.arguments, "summary", None)
        detail = summary() if callable(summary) else ""
        return f"step {self.index + 1} ({self.name}{': ' + detail if detail else ''})"


@dataclass(frozen=True)
class Scenario:
    path: Path
    header: Header
    steps: list[Step] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.header.name
