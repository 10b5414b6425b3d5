"""What an identity provider can keep: each IdP declares the lifecycle features it has, with a reason for each
one it lacks, so a scenario step that needs a missing one ends "not supported by <idp>: <reason>", never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CapabilityName = Literal[
    "dual_secret_rotation",
    "key_rotation",
    "token_exchange",
    "introspection",
    "event_emission",
    "disable_without_delete",
    "token_revocation",
    "resource_indicators",
    "network_zones",
    "dpop_binding",
    "mtls_binding",
]

#: Each capability in a sentence, for reports and the README's table.
DESCRIPTIONS: dict[CapabilityName, str] = {
    "dual_secret_rotation": "a client secret rotates with the old one still valid through a grace",
    "key_rotation": "a private_key_jwt client's keys rotate with the old and new key valid through a grace",
    "token_exchange": "a delegated agent exchanges a user's token for one that acts for the user (RFC 8693)",
    "introspection": "a resource server asks whether a token is active (RFC 7662)",
    "event_emission": "the IdP records client events (token requests, failures) the broker can read",
    "disable_without_delete": "a client is switched off and on again, keeping its identity",
    "token_revocation": "issued tokens of a client are revoked (RFC 7009 or the admin API)",
    "resource_indicators": "a token request names its one resource with resource= (RFC 8707)",
    "network_zones": "the IdP refuses a client's token request from outside its network zone (source address)",
    "dpop_binding": "the IdP binds a client's tokens to its DPoP key (RFC 9449, cnf.jkt)",
    "mtls_binding": "the IdP binds a client's tokens to its TLS client certificate (RFC 8705, cnf.x5t#S256)",
}


@dataclass(frozen=True)
class Support:
    supported: bool
    note: str = ""  # for an unsupported one, why; for a supported one, how, when it is not the obvious way


@dataclass(frozen=True)
class Capabilities:
    """One IdP's declaration: every capability, supported or not, with its note."""

    idp: str
    title: str  # how messages name it
    features: dict[CapabilityName, Support]

    def supports(self, name: CapabilityName) -> bool:
        return self.features[name].supported

    def unsupported_reason(self, name: CapabilityName) -> str | None:
        """``not supported by <idp>: <reason>`` for a missing capability, None for one it has."""
        support = self.features[name]
        return None if support.supported else f"not supported by {self.idp}: {support.note}"


KEYCLOAK = Capabilities(
    "keycloak",
    "Keycloak",
    {
        "dual_secret_rotation": Support(True, "client-secret-rotation feature: the rotated secret stays valid"),
        "key_rotation": Support(True, "the client's JWKS holds the old and the new key"),
        "token_exchange": Support(True, "standard token exchange (token-exchange-standard feature)"),
        "introspection": Support(True),
        "event_emission": Support(True, "the realm's event store"),
        "disable_without_delete": Support(True, "the client's enabled flag"),
        "token_revocation": Support(True, "a disabled or deleted client's tokens introspect inactive"),
        "resource_indicators": Support(True, "resource-indicators feature"),
        "network_zones": Support(True, "the sandbox's client policy executor, a Keycloak provider built here"),
        "dpop_binding": Support(True, "DPoP-bound access tokens, a client attribute (dpop feature)"),
        "mtls_binding": Support(
            True, "certificate-bound access tokens, a client attribute; token requests on the stack's HTTPS port"
        ),
    },
)

HYDRA = Capabilities(
    "hydra",
    "Ory Hydra",
    {
        "dual_secret_rotation": Support(
            False, "a Hydra client has exactly one secret, so a new one ends the old at once (no grace)"
        ),
        "key_rotation": Support(True, "the client's JWKS holds the old and the new key through the grace"),
        "token_exchange": Support(False, "Hydra has no RFC 8693 token exchange grant"),
        "introspection": Support(True, "on the admin API (/admin/oauth2/introspect)"),
        "event_emission": Support(False, "Hydra keeps no event log of its clients that an admin can read"),
        "disable_without_delete": Support(
            True, "emulated: the client's grant types are withdrawn and given back (Hydra has no enabled flag)"
        ),
        "token_revocation": Support(True, "the admin API deletes a client's tokens; JWTs then introspect inactive"),
        "resource_indicators": Support(False, "Hydra takes audience=, not RFC 8707 resource="),
        "network_zones": Support(False, "Hydra cannot refuse a token request by its source address"),
        "dpop_binding": Support(False, "Hydra v2.3 issues no DPoP-bound access tokens"),
        "mtls_binding": Support(False, "Hydra v2.3 issues no certificate-bound access tokens (no RFC 8705 support)"),
    },
)

BY_IDP: dict[str, Capabilities] = {caps.idp: caps for caps in (KEYCLOAK, HYDRA)}
