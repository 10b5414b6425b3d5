"""The identity provider behind one interface: the only code that speaks an IdP's admin API.

:mod:`.provider` is the seam (:class:`IdentityProvider`, its types and errors, in the broker's terms),
:mod:`.realm` the design of a tenant, :mod:`.keycloak` the one implementation; :func:`identity_provider`
picks it for the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.config import DEFAULT_KEYCLOAK_VERSION, Settings
from sandbox.idp.provider import (
    AgentClient,
    AgentClientSpec,
    CertifyingProvider,
    Consent,
    EventKind,
    IdentityProvider,
    IdpConflict,
    IdpError,
    IdpEvent,
    IdpNotFound,
    IdpUnavailable,
    PublishedKey,
)

if TYPE_CHECKING:
    from sandbox.idp.tenant_idps import TenantIdps

__all__ = [
    "AgentClient",
    "AgentClientSpec",
    "CertifyingProvider",
    "Consent",
    "EventKind",
    "IdentityProvider",
    "IdpConflict",
    "IdpError",
    "IdpEvent",
    "IdpNotFound",
    "IdpUnavailable",
    "PublishedKey",
    "identity_provider",
    "idp_version",
    "tenant_identity_providers",
]


def identity_provider(settings: Settings) -> CertifyingProvider:
    """The IdP the settings name (the sandbox's own Keycloak, or an external one's admin service account)."""
    from sandbox.idp.keycloak import KeycloakAdapter  # python-keycloak loads only for whoever talks to the IdP

    return KeycloakAdapter.from_settings(settings)


def tenant_identity_providers(settings: Settings) -> TenantIdps:
    """What the broker uses: people and realms on Keycloak, each tenant's agents on its realm or its Hydra."""
    from sandbox.idp.hydra import HydraProvider
    from sandbox.idp.tenant_idps import TenantIdps

    hydra = HydraProvider.from_settings(settings) if settings.hydras else None
    return TenantIdps(identity_provider(settings), hydra, settings.hydra_pool_addresses, realm_issuer=settings.issuer)


def idp_version(settings: Settings | None = None) -> tuple[str, str]:
    """The IdP's name and version: the one the settings run, or without settings the one this release is tested with."""
    return "Keycloak", settings.keycloak_version if settings else DEFAULT_KEYCLOAK_VERSION
