"""Lifecycle policy (issue 19): token lifetime per environment, risk tiers and reviews, credential age.

The fields live in ``fixtures/policy.yaml`` beside the roles; :mod:`sandbox.broker.policy` reads them through the
models here and resolves them per role into :class:`RoleLifecycle`. Kept apart from the role templates so other
lifecycle policies (anomalies, zones, sender-constrained tokens) add their own sections without touching these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RotateMode = Literal["automatic", "manual"]
AgeState = Literal["ok", "near", "past"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnvironmentPolicy(_Strict):
    """What an environment sets for every agent in it."""

    token_lifetime: int = Field(gt=0, le=86400, description="Seconds an agent's access token lives in it.")


class RiskTier(_Strict):
    """A risk category of roles: how often its agents are reviewed and how old their credentials may get."""

    review_interval_days: int = Field(gt=0, le=3650)
    max_credential_age_days: int | None = Field(None, gt=0, le=3650)


class CredentialAgePolicy(_Strict):
    """How the broker treats credentials that get old."""

    warn_days: int = Field(7, ge=0, le=3650, description="Flag a credential this many days before its maximum age.")
    rotate: RotateMode = Field("manual", description="automatic: the broker rotates old client secrets itself.")
    grace_seconds: int = Field(3600, ge=0, le=7 * 86400, description="The old secret's grace after such a rotation.")


class RoleLifecycleSpec(_Strict):
    """The lifecycle fields a role may set (each overrides what its tier or ``credential_age`` says)."""

    risk_tier: str | None = None
    max_credential_age_days: int | None = Field(None, gt=0, le=3650)
    rotate: RotateMode | None = None


@dataclass(frozen=True)
class RoleLifecycle:
    """One role's resolved lifecycle policy."""

    risk_tier: str | None
    review_interval_days: int | None
    max_credential_age_days: int | None
    warn_days: int
    rotate: RotateMode
    grace_seconds: int

    def review_due(self, since: datetime) -> datetime | None:
        """When an agent reviewed (or activated) at ``since`` is next due for review; None: its tier has none."""
        return since + timedelta(days=self.review_interval_days) if self.review_interval_days else None

    def credential_age(self, created: datetime, now: datetime) -> CredentialAge:
        age = now - created
        if self.max_credential_age_days is None:
            return CredentialAge(age, None, "ok")
        limit = timedelta(days=self.max_credential_age_days)
        state: AgeState = "past" if age >= limit else "near" if age >= limit - timedelta(days=self.warn_days) else "ok"
        return CredentialAge(age, limit, state)


@dataclass(frozen=True)
class CredentialAge:
    age: timedelta
    limit: timedelta | None
    state: AgeState

    def as_dict(self) -> dict[str, object]:
        return {
            "age_days": round(self.age.total_seconds() / 86400, 2),
            "max_age_days": self.limit.days if self.limit else None,
            "state": self.state,
        }


__all__ = [
    "CredentialAge",
    "CredentialAgePolicy",
    "EnvironmentPolicy",
    "RiskTier",
    "RoleLifecycle",
    "RoleLifecycleSpec",
]
