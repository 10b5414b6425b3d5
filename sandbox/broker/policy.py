"""Role templates and policy as code (``fixtures/policy.yaml``, or any path).

A role grants tool scopes per environment; the policy also bounds token lifetime, allowed credential
types, approval and the dormancy period. Invalid files are refused with ``<file>:<line>: <reason>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.broker.lifecycle_policy import (
    CredentialAgePolicy,
    EnvironmentPolicy,
    RiskTier,
    RoleLifecycle,
    RotateMode,
)
from sandbox.toolmap import ToolMap
from sandbox.yamlfile import FileError, YamlDocument, load_yaml
from sandbox.zones import zone_address_problem

CredentialType = Literal["client_secret", "private_key_jwt"]
CREDENTIAL_TYPES: tuple[CredentialType, ...] = ("client_secret", "private_key_jwt")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Defaults(_Strict):
    max_token_lifetime: int = Field(300, gt=0, le=86400)
    credential_types: list[CredentialType] = Field(default_factory=lambda: list(CREDENTIAL_TYPES), min_length=1)
    approval_required: bool | list[str] = False
    dormancy_days: int = Field(30, gt=0)
    # Lifecycle (see sandbox.broker.lifecycle_policy).
    risk_tier: str | None = None


class RoleSpec(_Strict):
    description: str = ""
    environments: dict[str, list[str]] = Field(min_length=1)
    max_token_lifetime: int | None = Field(None, gt=0, le=86400)
    credential_types: list[CredentialType] | None = Field(None, min_length=1)
    approval_required: bool | list[str] | None = None
    dormancy_days: int | None = Field(None, gt=0)
    # Lifecycle (see sandbox.broker.lifecycle_policy): each overrides the tier's or credential_age's.
    risk_tier: str | None = None
    max_credential_age_days: int | None = Field(None, gt=0, le=3650)
    rotate: RotateMode | None = None


class PolicyFile(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    mfa_environments: list[str] = Field(default_factory=lambda: ["production"])
    roles: dict[str, RoleSpec] = Field(min_length=1)
    # Lifecycle (see sandbox.broker.lifecycle_policy).
    environments: dict[str, EnvironmentPolicy] = Field(default_factory=dict)
    risk_tiers: dict[str, RiskTier] = Field(default_factory=dict)
    credential_age: CredentialAgePolicy = Field(default_factory=CredentialAgePolicy)
    network_zones: NetworkZonesSpec | None = None  # see "Network zones" below
    anomalies: AnomaliesSpec | None = None  # see "Anomalies" below


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    scopes_by_environment: dict[str, list[str]]
    max_token_lifetime: int
    credential_types: tuple[str, ...]
    approval_environments: tuple[str, ...]
    dormancy_days: int
    token_lifetimes: dict[str, int]  # per environment: the role's maximum, or less if the environment says so
    lifecycle: RoleLifecycle

    def scopes(self, environment: str) -> list[str]:
        return list(self.scopes_by_environment[environment])

    def token_lifetime(self, environment: str) -> int:
        """Seconds an agent's tokens live in ``environment`` (the most it may ask for, too)."""
        return self.token_lifetimes.get(environment, self.max_token_lifetime)

    def needs_approval(self, environment: str) -> bool:
        return environment in self.approval_environments


@dataclass(frozen=True)
class Violation:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True)
class Policy:
    path: Path
    roles: dict[str, Role]
    mfa_environments: tuple[str, ...]
    default_dormancy_days: int
    zones: NetworkZones = field(default_factory=lambda: NetworkZones({}, {}))
    anomalies: AnomalyRules = field(default_factory=lambda: AnomalyRules({}, ()))

    @classmethod
    def load(cls, path: Path, tools: ToolMap) -> Policy:
        document = load_yaml(path)
        spec = document.validate(PolicyFile)
        known_scopes = set(tools.all_scopes())
        environments = set(tools.environments)
        for index, environment in enumerate(spec.mfa_environments):
            if environment not in environments:
                raise document.error(
                    ("mfa_environments", index),
                    f"unknown environment {environment!r}",
                    f"use one of {sorted(environments)} (environments in the tool map)",
                )
        for environment in spec.environments:
            if environment not in environments:
                raise document.error(
                    ("environments", environment),
                    f"unknown environment {environment!r}",
                    f"use one of {sorted(environments)} (environments in the tool map)",
                )
        tiers = spec.risk_tiers
        if spec.defaults.risk_tier is not None and spec.defaults.risk_tier not in tiers:
            raise document.error(("defaults", "risk_tier"), *_unknown_tier(spec.defaults.risk_tier, tiers))
        roles = {}
        for name, role in spec.roles.items():
            if role.risk_tier is not None and role.risk_tier not in tiers:
                raise document.error(("roles", name, "risk_tier"), *_unknown_tier(role.risk_tier, tiers))
            for environment, scopes in role.environments.items():
                if environment not in environments:
                    raise document.error(
                        ("roles", name, "environments", environment),
                        f"role {name!r} names unknown environment {environment!r}",
                        f"use one of {sorted(environments)} (environments in the tool map)",
                    )
                for index, scope in enumerate(scopes):
                    if scope not in known_scopes:
                        raise document.error(
                            ("roles", name, "environments", environment, index),
                            f"role {name!r} grants unknown scope {scope!r}",
                            "use a scope of the tool map (fixtures/tools.yaml), e.g. mcp:tool:analytics.read",
                        )
            approval = spec.defaults.approval_required if role.approval_required is None else role.approval_required
            if isinstance(approval, list):
                for index, environment in enumerate(approval):
                    if environment not in role.environments:
                        raise document.error(
                            ("roles", name, "approval_required", index),
                            f"role {name!r} requires approval in {environment!r}, which it does not grant",
                            f"name one of its environments: {sorted(role.environments)}",
                        )
            roles[name] = Role(
                name=name,
                description=role.description,
                scopes_by_environment=dict(role.environments),
                max_token_lifetime=role.max_token_lifetime or spec.defaults.max_token_lifetime,
                credential_types=tuple(role.credential_types or spec.defaults.credential_types),
                approval_environments=tuple(role.environments) if approval is True else tuple(approval or ()),
                dormancy_days=role.dormancy_days or spec.defaults.dormancy_days,
                token_lifetimes=_token_lifetimes(role, spec),
                lifecycle=_lifecycle(role, spec),
            )
        return cls(
            path,
            roles,
            tuple(spec.mfa_environments),
            spec.defaults.dormancy_days,
            NetworkZones.load(document, spec.network_zones, roles),
            AnomalyRules.load(document, spec.anomalies, environments),
        )

    def check(
        self, *, role: str, environment: str, credential_type: str, token_lifetime: int | None = None
    ) -> list[Violation]:
        """Why an agent with these settings may not exist (empty when it may)."""
        found = self.roles.get(role)
        if found is None:
            return [Violation("role", f"unknown role {role!r}; known roles: {', '.join(sorted(self.roles))}")]
        problems = []
        if environment not in found.scopes_by_environment:
            problems.append(
                Violation(
                    "environment",
                    f"role {role!r} has no environment {environment!r}; "
                    f"it has: {', '.join(found.scopes_by_environment)}",
                )
            )
        if credential_type not in found.credential_types:
            problems.append(
                Violation(
                    "credential_type",
                    f"role {role!r} allows {', '.join(found.credential_types)}, not {credential_type!r}",
                )
            )
        limit = found.token_lifetime(environment)
        if token_lifetime is not None and token_lifetime > limit:
            where = f" in {environment}" if limit < found.max_token_lifetime else ""
            problems.append(
                Violation("token_lifetime", f"{token_lifetime}s exceeds role {role!r}'s maximum{where} of {limit}s")
            )
        return problems

    def zone_for(self, role: str, environment: str) -> str | None:
        """The address an agent of ``role`` in ``environment`` must call from, or None when it is not limited."""
        return self.zones.zone_for(role, environment)

    def needs_mfa(self, environment: str) -> bool:
        return environment in self.mfa_environments

    def as_dict(self) -> dict[str, object]:
        return {
            "source": str(self.path),
            "mfa_environments": list(self.mfa_environments),
            "roles": {
                name: {
                    "description": role.description,
                    "environments": role.scopes_by_environment,
                    "max_token_lifetime": role.max_token_lifetime,
                    "credential_types": list(role.credential_types),
                    "approval_required": list(role.approval_environments),
                    "dormancy_days": role.dormancy_days,
                    "token_lifetimes": dict(role.token_lifetimes),
                    "risk_tier": role.lifecycle.risk_tier,
                    "review_interval_days": role.lifecycle.review_interval_days,
                    "max_credential_age_days": role.lifecycle.max_credential_age_days,
                    "rotate": role.lifecycle.rotate,
                }
                for name, role in self.roles.items()
            },
            "network_zones": self.zones.as_dict(),
            "anomalies": self.anomalies.as_dict(),
        }


# Lifecycle (see sandbox.broker.lifecycle_policy).


def _unknown_tier(tier: str, tiers: dict[str, RiskTier]) -> tuple[str, str]:
    known = sorted(tiers)
    return (
        f"unknown risk tier {tier!r}",
        f"use one of {known} (risk_tiers)" if known else "declare it under risk_tiers (review_interval_days: …)",
    )


def _token_lifetimes(role: RoleSpec, spec: PolicyFile) -> dict[str, int]:
    maximum = role.max_token_lifetime or spec.defaults.max_token_lifetime
    return {
        environment: min(maximum, spec.environments[environment].token_lifetime)
        if environment in spec.environments
        else maximum
        for environment in role.environments
    }


def _lifecycle(role: RoleSpec, spec: PolicyFile) -> RoleLifecycle:
    tier_name = role.risk_tier or spec.defaults.risk_tier
    tier = spec.risk_tiers[tier_name] if tier_name else None
    return RoleLifecycle(
        risk_tier=tier_name,
        review_interval_days=tier.review_interval_days if tier else None,
        max_credential_age_days=role.max_credential_age_days or (tier.max_credential_age_days if tier else None),
        warn_days=spec.credential_age.warn_days,
        rotate=role.rotate or spec.credential_age.rotate,
        grace_seconds=spec.credential_age.grace_seconds,
    )


# --- Network zones (issue 19) --------------------------------------------------------------------------------------
# A zone is a name for one source address of 127.0.0.0/8. A role may be limited to a zone per environment: its
# agents' token requests are refused by Keycloak from elsewhere, and the MCP servers refuse their calls from
# elsewhere (the zone travels in the token).


class NetworkZonesSpec(_Strict):
    zones: dict[str, str] = Field(default_factory=dict)  # name -> address, e.g. ops: 127.0.0.2
    roles: dict[str, dict[str, str]] = Field(default_factory=dict)  # role -> environment -> zone name


@dataclass(frozen=True)
class NetworkZones:
    addresses: dict[str, str]  # zone name -> address
    limits: dict[tuple[str, str], str]  # (role, environment) -> zone name

    @classmethod
    def load(cls, document: YamlDocument, spec: NetworkZonesSpec | None, roles: dict[str, Role]) -> NetworkZones:
        if spec is None:
            return cls({}, {})
        for name, address in spec.zones.items():
            problem = zone_address_problem(address)
            if problem:
                raise document.error(("network_zones", "zones", name), f"zone {name!r}: {problem}", "give it one")
        limits = {}
        for role, by_environment in spec.roles.items():
            if role not in roles:
                raise document.error(
                    ("network_zones", "roles", role),
                    f"network_zones limits unknown role {role!r}",
                    f"name one of the roles: {', '.join(sorted(roles))}",
                )
            for environment, zone in by_environment.items():
                if environment not in roles[role].scopes_by_environment:
                    raise document.error(
                        ("network_zones", "roles", role, environment),
                        f"role {role!r} has no environment {environment!r}",
                        f"name one of its environments: {', '.join(roles[role].scopes_by_environment)}",
                    )
                if zone not in spec.zones:
                    raise document.error(
                        ("network_zones", "roles", role, environment),
                        f"unknown zone {zone!r}",
                        f"name a zone of network_zones.zones: {', '.join(sorted(spec.zones)) or '(none defined)'}",
                    )
                limits[(role, environment)] = zone
        return cls(dict(spec.zones), limits)

    def zone_for(self, role: str, environment: str) -> str | None:
        name = self.limits.get((role, environment))
        return self.addresses[name] if name is not None else None

    def name_of(self, address: str) -> str | None:
        return next((name for name, found in self.addresses.items() if found == address), None)

    def as_dict(self) -> dict[str, object]:
        limited: dict[str, dict[str, str]] = {}
        for (role, environment), zone in self.limits.items():
            limited.setdefault(role, {})[environment] = zone
        return {"zones": dict(self.addresses), "roles": limited}


# --- Anomalies (issue 19) ------------------------------------------------------------------------------------------
# What counts as an anomaly: so many refused tool calls (403/429), failed token requests, or calls from outside the
# agent's zone within a window. When a rule trips, the broker suspends the agent (see sandbox/broker/suspension.py).

AnomalyKind = Literal["refused_calls", "failed_token_requests", "outside_zone_calls"]
ANOMALY_KINDS: tuple[AnomalyKind, ...] = ("refused_calls", "failed_token_requests", "outside_zone_calls")


class AnomalyRuleSpec(_Strict):
    count: int = Field(gt=0, le=100_000)
    window_seconds: int = Field(gt=0, le=30 * 86400)


class AnomaliesSpec(_Strict):
    environments: list[str] | None = None  # which agents are watched; every environment when left out
    refused_calls: AnomalyRuleSpec | None = None
    failed_token_requests: AnomalyRuleSpec | None = None
    outside_zone_calls: AnomalyRuleSpec | None = None


@dataclass(frozen=True)
class AnomalyRule:
    kind: AnomalyKind
    count: int
    window_seconds: int

    def describe(self) -> str:
        return f"{self.count} {self.kind.replace('_', ' ')} within {self.window_seconds}s"


@dataclass(frozen=True)
class AnomalyRules:
    rules: dict[AnomalyKind, AnomalyRule]
    environments: tuple[str, ...]  # empty: every environment

    @classmethod
    def load(cls, document: YamlDocument, spec: AnomaliesSpec | None, environments: set[str]) -> AnomalyRules:
        if spec is None:
            return cls({}, ())
        for index, environment in enumerate(spec.environments or []):
            if environment not in environments:
                raise document.error(
                    ("anomalies", "environments", index),
                    f"unknown environment {environment!r}",
                    f"use one of {sorted(environments)} (environments in the tool map)",
                )
        rules = {}
        for kind in ANOMALY_KINDS:
            rule = getattr(spec, kind)
            if rule is not None:
                rules[kind] = AnomalyRule(kind, rule.count, rule.window_seconds)
        return cls(rules, tuple(spec.environments or ()))

    def watches(self, environment: str) -> bool:
        return bool(self.rules) and (not self.environments or environment in self.environments)

    def as_dict(self) -> dict[str, object]:
        return {
            "environments": list(self.environments) or "all",
            **{kind: {"count": r.count, "window_seconds": r.window_seconds} for kind, r in self.rules.items()},
        }


PolicyFile.model_rebuild()

__all__ = [
    "ANOMALY_KINDS",
    "CREDENTIAL_TYPES",
    "AnomalyRule",
    "AnomalyRules",
    "FileError",
    "NetworkZones",
    "Policy",
    "Role",
    "Violation",
]
