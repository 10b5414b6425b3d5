"""Request and response bodies of the broker's HTTP API (they make its OpenAPI document)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.broker.clock import MAX_ADVANCE
from sandbox.broker.specs import AdminSpec, ProvisionRequest
from sandbox.config import DEFAULT_IDP, IdpName
from sandbox.idp.provider import Binding

#: The values a user chooses from; the CLI offers the same choices.
AgentMode = Literal["autonomous", "delegated"]
CredentialType = Literal["client_secret", "private_key_jwt"]
AgentStatus = Literal[
    "provisioning",
    "pending_approval",
    "active",
    "rotating",
    "dormant",
    "suspended",
    "revoking",
    "revoked",
    "rejected",
    "failed",
]
ReviewDecision = Literal["keep", "revoke"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdminIn(_Body):
    username: str = Field(examples=["alice"])
    otp: bool = Field(True, description="Give the admin a TOTP second factor (needed for privileged acts).")

    def spec(self) -> AdminSpec:
        return AdminSpec(self.username, self.otp)


class TenantIn(_Body):
    name: str = Field(examples=["initech"], description="Lowercase letters, digits and dashes.")
    admins: list[AdminIn] = Field(default_factory=list)
    idp: IdpName = Field(
        DEFAULT_IDP,
        description="Where the tenant's agents live: its Keycloak realm, or a Hydra of its own lent from the "
        "stack's pool (SANDBOX_HYDRA_POOL). Its people log in to the realm either way.",
    )


class IssuedAdmin(BaseModel):
    username: str
    password: str = Field(description="Shown once.")
    otp_secret: str | None = Field(None, description="Base32 TOTP secret, shown once.")
    otpauth_uri: str | None = None


class UserIn(_Body):
    username: str = Field(examples=["dana"])
    scopes: list[str] = Field(
        default_factory=list,
        examples=[["mcp:tool:invoices.read"]],
        description="Tool scopes the user holds: an agent acting for the user gets at most these.",
    )
    otp: bool = Field(False, description="Give the user a TOTP second factor too.")


class IssuedUser(IssuedAdmin):
    scopes: list[str]
    login_client: str = Field(description="The realm's client the user logs in with to let an agent act for them.")


class TenantCreated(BaseModel):
    tenant: str
    issuer: str = Field(description="The tenant's realm: where its people log in.")
    idp: str = Field(description="The agents' IdP: keycloak or hydra.")
    agents_issuer: str = Field(description="The issuer of the agents' tokens (the realm, or the tenant's Hydra).")
    admins: list[IssuedAdmin]


class TenantOut(BaseModel):
    tenant: str
    issuer: str
    idp: str
    agents_issuer: str
    created_at: str


class TrustList(BaseModel):
    issuers: list[str] = Field(description="The issuers of the tenants' agents' tokens; no other is trusted.")
    tenants: dict[str, str] = Field(description="The tenant each issuer stands for, by issuer.")


class ResourceServerIn(_Body):
    url: str = Field(description="The server's canonical URL: the audience of the tokens it accepts.")
    events_url: str | None = Field(None, description="Where it receives revocation events (RFC 8935 push).")


class ResourceServerOut(BaseModel):
    url: str
    events_url: str | None


class ProvisionIn(_Body):
    name: str = Field(examples=["invoice-bot"])
    owner: str = Field(examples=["finance-team@acme.example"])
    role: str = Field(examples=["invoice-writer"])
    environment: str = Field(examples=["staging"])
    mode: AgentMode = "autonomous"
    credential_type: CredentialType = "client_secret"
    binding: Binding = Field(
        "bearer",
        description="dpop: the agent's tokens are bound to a key it keeps (RFC 9449, cnf.jkt); mtls: to its TLS client "
        "certificate (RFC 8705, cnf.x5t#S256).",
    )
    jwk: dict[str, Any] | None = Field(None, description="The agent's public JWK (private_key_jwt only).")
    metadata: dict[str, Any] = Field(default_factory=dict)
    servers: list[str] | None = Field(None, description="MCP servers it may call; default: every registered one.")
    token_lifetime: int | None = Field(None, gt=0, description="Seconds; at most the role's maximum.")

    def request(self, source: str = "api") -> ProvisionRequest:
        return ProvisionRequest(
            name=self.name,
            owner=self.owner,
            role=self.role,
            environment=self.environment,
            mode=self.mode,
            credential_type=self.credential_type,
            binding=self.binding,
            jwk=self.jwk,
            metadata=self.metadata,
            servers=self.servers,
            token_lifetime=self.token_lifetime,
            source=str(self.metadata.get("managed_by") or source),
        )


class ReviewDueOut(BaseModel):
    reason: Literal["dormant", "access_review"]
    risk_tier: str | None
    due_at: str | None


class AgentOut(BaseModel):
    id: str
    tenant: str
    name: str
    owner: str
    role: str
    environment: str
    mode: str
    credential_type: str
    binding: str = "bearer"
    client_id: str
    status: AgentStatus
    scopes: list[str]
    audiences: list[str]
    token_lifetime: int
    metadata: dict[str, Any]
    source: str
    requested_by: str
    approved_by: str | None
    created_at: str
    grace_ends_at: str | None
    dormant_since: str | None
    revoked_at: str | None
    zone: str | None = Field(None, description="The network zone (source address) the agent must call from.")
    suspended_at: str | None = Field(None, description="When an anomaly suspended the agent (tenant time).")
    delegation_scope: str | None = Field(
        None,
        description="Delegated agents: the scope a user asks for when logging in with sandbox-user-login to let "
        "this agent act for them (it puts the agent in the user token's aud).",
    )
    review: ReviewDueOut | None = Field(None, description="In the review queue: why the agent is there.")


class CredentialOut(BaseModel):
    type: str
    client_id: str
    client_secret: str | None = Field(None, description="Shown once; the broker keeps only a fingerprint.")
    key_id: str | None = None
    token_endpoint: str
    issuer: str | None = None


class Provisioned(BaseModel):
    agent: AgentOut
    status: str
    credential: CredentialOut
    steps_ms: dict[str, float] = Field(
        default_factory=dict,
        description="Milliseconds from the start of the provision's work to the end of each step: "
        "provisioning_recorded (request checked, agent recorded as provisioning), idp_client_created (the IdP's "
        "token endpoint read, the client created, and the delegation scope added for a delegated agent), "
        "status_recorded (client, credential fingerprint and audit entry recorded).",
    )


class PolicyCheckIn(_Body):
    agents: list[ProvisionIn]


class PolicyCheckOut(BaseModel):
    name: str
    violations: list[str]


class RoleChangeIn(_Body):
    role: str
    environment: str | None = None
    reason: str = ""


class RotateIn(_Body):
    grace_seconds: int = Field(300, ge=0, description="How long the old credential keeps working.")
    jwk: dict[str, Any] | None = Field(None, description="The new public JWK (private_key_jwt only).")
    reason: str = ""


class Dependencies(BaseModel):
    agent_id: str
    servers_used: list[dict[str, Any]]
    configs: list[dict[str, Any]]
    audiences: list[str]


class Rotated(BaseModel):
    agent: AgentOut
    dependencies: Dependencies
    grace_ends_at: str | None
    credential: CredentialOut


class ReasonIn(_Body):
    reason: str = ""


class RevokeIn(_Body):
    reason: str = ""
    verify_token: str | None = Field(
        None,
        description="An access token the agent held: after revoking, the broker calls each of the agent's MCP "
        "servers with it and reports whether each now answers 401. Used once, never stored or logged.",
    )


class Revoked(BaseModel):
    agent: AgentOut
    already_revoked: bool
    events: list[dict[str, Any]]
    verification: list[dict[str, Any]]
    steps_ms: dict[str, float] = Field(
        default_factory=dict,
        description="Milliseconds from the start of the revocation's work to the end of each step: "
        "first_event_answered, idp_disabled, closing_event_answered_and_client_removed.",
    )


class Suspended(BaseModel):
    agent: AgentOut
    events: list[dict[str, Any]] = Field(description="The session-revoked event's delivery to each server.")


class ReviewIn(_Body):
    decision: ReviewDecision
    reason: str = ""


# Lifecycle policy: access reviews and credential pickup (sandbox.broker.lifecycle).


class AccessReviewOut(BaseModel):
    agent_id: str
    risk_tier: str | None
    due: bool
    due_at: str | None
    window_days: int
    scopes: list[str]
    unused_scopes: list[str] = Field(description="Scopes no allowed tool call needed in the window.")
    recommended: dict[str, list[str]] = Field(description="The change the review recommends: remove_scopes.")


class AccessReviewIn(_Body):
    remove_scopes: list[str] | None = Field(
        None, description="Recommended scopes to remove; omitted: every recommended one; []: keep all."
    )
    reason: str = ""


class CredentialPickupOut(BaseModel):
    client_id: str
    client_secret: str = Field(description="The agent's new secret from the broker's automatic rotation.")
    grace_ends_at: str | None


class DormancyScan(BaseModel):
    dormant: list[AgentOut]
    errors: list[str]
    as_of: str


MAX_MOVE_DAYS = MAX_ADVANCE.days  # how far a tenant's clock moves at once (the service checks the whole again)


class Duration(_Body):
    # Bounded part by part, so no value overflows a timedelta (a 500) before the whole is checked.
    days: float = Field(0, ge=0, le=MAX_MOVE_DAYS)
    hours: float = Field(0, ge=0, le=MAX_MOVE_DAYS * 24)
    minutes: float = Field(0, ge=0, le=MAX_MOVE_DAYS * 24 * 60)
    seconds: float = Field(0, ge=0, le=MAX_MOVE_DAYS * 86400)

    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds)


class ClockAdvanceIn(_Body):
    advance: Duration = Field(examples=[{"days": 31}])
    reason: str = ""


class ClockMoveOut(BaseModel):
    at: str = Field(description="When it was moved, in the broker's own (real) time.")
    offset_seconds: float = Field(description="How far ahead of real time the tenant's clock ran from then on.")


class ClockOut(BaseModel):
    tenant: str
    now: str = Field(description="The tenant's time: what dormancy, graces and its audit entries use.")
    real_now: str
    offset_seconds: float
    movable: bool = Field(description="Whether this broker lets tenants' clocks move (SANDBOX_BROKER_MOVABLE_CLOCK).")
    moves: list[ClockMoveOut]


class DelegationOut(BaseModel):
    user: str
    user_id: str
    scopes: list[str] = Field(description="The scopes Keycloak gave the agent for this user (at most the user's).")
    first_exchange_at: str
    last_exchange_at: str
    exchanges: int
    consented_at: str | None = Field(description="When the user consented to the agent at login.")


class DelegationsOut(BaseModel):
    agent_id: str
    mode: str
    delegation_scope: str | None
    login_client: str
    delegations: list[DelegationOut]
    idp_error: str | None


class FailedTokenRequest(BaseModel):
    at: str
    error: str | None = Field(description="The IdP's error code.")


class DeniedToolCall(BaseModel):
    at: str
    tool: str
    status: int
    server: str
    source: str | None = Field(
        None, description="The caller's address, when refused for calling from outside its zone."
    )
    outside_zone: bool = False


class TokenExchangeSeen(BaseModel):
    at: str
    user: str | None
    user_id: str | None
    scopes: list[str]


class FailedTokenExchange(BaseModel):
    at: str
    error: str | None
    reason: str | None


class CredentialAgeOut(BaseModel):
    state: Literal["ok", "near", "past", "unknown"] = Field(description="unknown: no credential or no age policy.")
    age_days: float | None = None
    max_age_days: int | None = None
    rotate: str | None = Field(None, description="manual, or automatic: the broker rotates old client secrets.")
    warn_days: int | None = None


class MonitoringReport(BaseModel):
    """One agent's token requests (the IdP's records), tool calls (the servers' usage reports), unused scopes,
    delegations and credential age."""

    agent_id: str
    name: str
    status: str
    tokens_issued: int
    failed_token_requests: int
    recent_failed_token_requests: list[FailedTokenRequest]
    tool_calls: int
    denied_tool_calls: int
    outside_zone_calls: int
    recent_denied_tool_calls: list[DeniedToolCall]
    unused_scopes: list[str]
    unused_scopes_period_days: int
    token_exchanges: int
    failed_token_exchanges: int
    recent_token_exchanges: list[TokenExchangeSeen]
    recent_failed_token_exchanges: list[FailedTokenExchange]
    idp_error: str | None = Field(None, description="Why the IdP's records could not be read, when they could not.")
    delegations: list[DelegationOut] = Field(default_factory=list)
    credential_age: CredentialAgeOut = Field(default_factory=lambda: CredentialAgeOut(state="unknown"))


class ConfigIn(_Body):
    path: str | None = Field(None, description="Where the config will be written (kept for dependency reports).")
    credential_source: Literal["env", "file"] | None = None
    credential_reference: str | None = Field(None, description="The environment variable or file path to name.")


class UsageEventIn(BaseModel):
    issuer: str
    client_id: str
    tool: str
    allowed: bool
    status: int
    at: float | str | None = None
    resource: str | None = None
    source: str | None = Field(None, max_length=64, description="The caller's address.")
    outside_zone: bool = Field(False, description="Refused because it came from outside the agent's zone.")


class UsageIn(BaseModel):
    events: list[UsageEventIn]
    resource: str | None = Field(None, description="Canonical URL of the reporting MCP server.")


class FieldProblem(BaseModel):
    field: str = Field(description="The field as the request carries it, e.g. `mode` or `status (query parameter)`.")
    problem: str
    expected: str = Field(description="What is allowed there.")


class AuditEntryOut(BaseModel):
    """One audit entry: an act, who did it and why, the state before and after, chained by hash per tenant."""

    seq: int
    tenant: str
    agent_id: str | None
    actor: str
    action: str
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str
    at: str = Field(description="ISO 8601, as recorded (part of the hash)")
    prev_hash: str
    hash: str


class Error(BaseModel):
    error: str
    detail: str = Field(description="The cause and the fix in one line.")
    cause: str | None = None
    fix: str | None = None
    fields: list[FieldProblem] | None = Field(None, description="invalid_request only: each field that failed.")
