"""What a caller asks the broker's service for: an agent to provision, an admin to add (the API's bodies and the
CLI's files become these; :mod:`sandbox.broker.schemas` describes the answers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProvisionRequest:
    name: str
    owner: str
    role: str
    environment: str
    mode: str = "autonomous"
    credential_type: str = "client_secret"
    jwk: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    servers: list[str] | None = None
    token_lifetime: int | None = None
    source: str = "api"
    binding: str = "bearer"  # bearer; dpop: tokens bound to a key the agent keeps; mtls: to its client certificate


@dataclass(frozen=True)
class AdminSpec:
    username: str
    otp: bool = True
