"""What the broker needs from an identity provider, in the broker's own terms: the seam a second IdP plugs into.

A tenant is one issuer of the IdP; an agent is a confidential client of it with a credential (a secret or a
public key), default scopes and an audience; a person is a user of the tenant. The broker only ever sees the
types and the errors below. The people's IdP (tenants, admins, delegating users) and the agents' IdP of a tenant
both implement it; :mod:`sandbox.idp` picks them for the settings, and the broker's unit tests use a fake.
:class:`CertifyingProvider` adds what certify and the benchmarks make besides agents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from sandbox.errors import SandboxError
from sandbox.idp.capabilities import Capabilities, CapabilityName

#: How an agent's tokens are held: ``bearer`` (whoever has the token may use it); ``dpop``, bound to a key
#: the agent keeps (RFC 9449: the token carries ``cnf.jkt``, every use needs a proof signed with that key); or
#: ``mtls``, bound to its TLS client certificate (RFC 8705: ``cnf.x5t#S256``, used only over a TLS connection
#: that presents that certificate).
Binding = Literal["bearer", "dpop", "mtls"]
BINDINGS: tuple[str, ...] = ("bearer", "dpop", "mtls")

#: What an IdP records of an agent's token requests: a token issued to it on its own (client credentials) or
#: refused; a user's token exchanged for one that acts for the user, or that exchange refused.
EventKind = Literal["token_issued", "token_refused", "token_exchanged", "token_exchange_refused"]
#: The most records one call reads unless it says otherwise.
EVENTS_READ = 500


class IdpError(SandboxError):
    """The IdP refused or failed a call; ``status`` is its HTTP status when it answered at all."""

    def __init__(self, cause: str, fix: str, *, status: int | None = None) -> None:
        super().__init__(cause, fix)
        self.status = status


class IdpNotFound(IdpError):
    """What the call names (a tenant, a client, a user) does not exist in the IdP."""


class IdpConflict(IdpError):
    """What the call would create exists already."""


class IdpUnavailable(IdpError):
    """The IdP could not be reached, is not ready, or refused the credentials the adapter signs in with."""


class NotSupported(IdpError):
    """The IdP lacks what the call needs: ``not supported by <idp>: <reason>`` (its declared capability)."""

    def __init__(self, capabilities: Capabilities, name: CapabilityName) -> None:
        reason = capabilities.unsupported_reason(name) or f"not supported by {capabilities.idp}"
        super().__init__(reason, "run this step on an IdP that has it, or leave it out of the scenario")
        self.capability = name


@dataclass(frozen=True)
class AgentClientSpec:
    """What the IdP needs to know about one agent identity."""

    client_id: str
    name: str
    scopes: list[str]  # tool scopes, made the client's default scopes
    audiences: list[str]  # canonical URLs of the MCP servers it may call
    token_lifetime: int  # seconds
    credential: Literal["client_secret", "private_key_jwt"] = "client_secret"
    jwks: dict[str, Any] | None = None  # the agent's public keys, for private_key_jwt
    attributes: dict[str, str] = field(default_factory=dict)
    enabled: bool = True  # a disabled client gets no token (agents waiting for approval)
    token_exchange: bool = False  # delegated agents exchange a user's token for one that acts for the user
    binding: Binding = "bearer"  # dpop: the IdP issues this client only tokens bound to its DPoP key
    zone: str | None = None  # the one loopback source address its token requests may come from (a network zone)


@dataclass(frozen=True)
class AgentClient:
    id: str  # the IdP's internal id of the client
    client_id: str
    service_account_id: str
    secret: str | None  # only for client_secret, only at creation


@dataclass(frozen=True)
class PublishedKey:
    """A signing key published in a tenant's JWKS, and the ``kid`` it has there."""

    component_id: str
    kid: str


@dataclass(frozen=True)
class IdpEvent:
    """One record the IdP keeps of an agent's token request: what the broker monitors, suspends and delegates on."""

    kind: EventKind
    at: datetime  # when the IdP recorded it, on the IdP's clock (timezone-aware, UTC)
    client_id: str  # the agent's client id in the IdP
    user_id: str | None = None  # the user a token exchange acted for
    username: str | None = None
    scopes: tuple[str, ...] = ()  # the scopes of an exchanged token, as the IdP listed them
    error: str | None = None  # why a request was refused (the IdP's error code)
    reason: str | None = None  # the IdP's words on a refused exchange, when it gives any


@dataclass(frozen=True)
class Consent:
    """What a user let one client do at login: the scopes granted, and when (the IdP's clock, UTC)."""

    client_id: str
    scopes: tuple[str, ...]
    at: datetime


class IdentityProvider(Protocol):
    """The calls the broker makes; each raises :class:`IdpError` (or a subclass), never the IdP library's own."""

    # Tenants.
    async def realm_exists(self, tenant: str, /) -> bool: ...

    async def create_tenant_realm(
        self,
        tenant: str,
        template: dict[str, Any],
        /,
        *,
        scopes: list[str],
        resource_servers: dict[str, str],
        demo_secret: str | None = None,
    ) -> None: ...

    async def delete_realm(self, tenant: str, /) -> None: ...

    async def token_endpoint(self, tenant: str, /) -> str:
        """Where the tenant's agents get their tokens (from the issuer's own metadata)."""
        ...

    # Agents: a client each, with a credential, default scopes and an audience.
    async def create_agent_client(self, tenant: str, spec: AgentClientSpec, /) -> AgentClient: ...

    async def find_client(self, tenant: str, client_id: str, /) -> str | None: ...

    async def delete_client(self, tenant: str, internal_id: str, /) -> None: ...

    async def set_client_enabled(self, tenant: str, internal_id: str, enabled: bool, /) -> None: ...

    async def set_default_scopes(self, tenant: str, internal_id: str, scopes: list[str], /) -> None: ...

    async def client_secret(self, tenant: str, internal_id: str, /) -> str: ...

    async def rotate_client_secret(self, tenant: str, internal_id: str, grace_seconds: int, /) -> str: ...

    async def keep_rotated_secret(self, tenant: str, internal_id: str, grace_seconds: int, /) -> None: ...

    async def end_secret_grace(self, tenant: str, internal_id: str, /) -> None: ...

    async def set_client_jwks(self, tenant: str, internal_id: str, jwks: dict[str, Any], /) -> None: ...

    async def client_events(
        self, tenant: str, client_id: str, kinds: tuple[EventKind, ...], /, maximum: int = EVENTS_READ
    ) -> list[IdpEvent]:
        """The IdP's records of these kinds for one client of the tenant, newest first."""
        ...

    async def tenant_events(self, tenant: str, kinds: tuple[EventKind, ...], maximum: int, /) -> list[IdpEvent]:
        """The IdP's records of these kinds for every client of the tenant, newest first."""
        ...

    # People of a tenant, and what they let delegated agents do.
    async def create_tenant_user(
        self,
        tenant: str,
        username: str,
        password: str,
        otp_secret: str | None,
        /,
        *,
        roles: list[str],
        last_name: str = "",
    ) -> str: ...

    async def user_consents(self, tenant: str, user_id: str, /) -> list[Consent]: ...

    async def add_delegation_scope(self, tenant: str, agent_client_id: str, agent_name: str, /) -> None: ...

    async def remove_delegation_scope(self, tenant: str, agent_client_id: str, /) -> None: ...


class CertifyingProvider(IdentityProvider, Protocol):
    """An :class:`IdentityProvider` that also makes what certify and the benchmarks need besides agents: scopes
    for their checks, keys they publish in an issuer's JWKS, resource servers that introspect."""

    async def ensure_scopes(self, tenant: str, scopes: list[str], /) -> None:
        """Make ``scopes`` grantable in the tenant (a no-op where a scope is only a name)."""
        ...

    async def add_signing_key(self, tenant: str, private_key_pem: str, /, *, name: str) -> PublishedKey:
        """Publish the public half of a key the caller holds in the tenant's JWKS, passively: the IdP's own
        tokens stay signed by its own keys."""
        ...

    async def remove_signing_key(self, tenant: str, component_id: str, /) -> None:
        """Withdraw a key :meth:`add_signing_key` published; a missing one counts as withdrawn."""
        ...

    async def create_resource_server_client(self, tenant: str, url: str, secret: str, /) -> str:
        """A client for one more resource server (canonical ``url``) that introspects tokens; its internal id."""
        ...
