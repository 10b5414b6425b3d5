"""The Shared Signals vocabulary both sides speak: event types, delivery methods, subjects.

The broker transmits and the reference MCP server receives Security Event Tokens (RFC 8417) under OpenID
Shared Signals Framework 1.0, with CAEP 1.0 and RISC 1.0 event types and RFC 9493 subject identifiers.
This module holds the names once; what each side does with them lives beside it (``sandbox.broker.ssf_*``,
``sandbox.mcp_server.events``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SET_MEDIA_TYPE = "application/secevent+jwt"
SET_TYPE = "secevent+jwt"
WELL_KNOWN = "/.well-known/ssf-configuration"

# Delivery methods (SSF 1.0 §6.1): push (RFC 8935) and poll (RFC 8936).
PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
SESSION_REVOKED = CAEP + "session-revoked"
CREDENTIAL_CHANGE = CAEP + "credential-change"
ACCOUNT_DISABLED = RISC + "account-disabled"
VERIFICATION = SSF + "verification"
STREAM_UPDATED = SSF + "stream-updated"

#: The events that end an agent's access: what the broker transmits and the MCP server acts on.
ACCESS_ENDING = (SESSION_REVOKED, CREDENTIAL_CHANGE, ACCOUNT_DISABLED)
#: credential-change ``change_type`` values that end the credential (``create`` and ``update`` do not).
ENDING_CHANGES = ("revoke", "delete")


@dataclass(frozen=True)
class AgentSubject:
    """Whom an event is about, as the MCP server keys its list: an agent (issuer + client id) and/or a subject.

    On the wire (RFC 9493): a plain ``iss_sub`` for a user or service account, or, for an agent, a ``complex``
    subject whose ``application`` is the client (``opaque`` id) and whose ``tenant`` is the issuer (``uri``),
    with the service account as ``user`` when the agent has one.
    """

    issuer: str
    client_id: str | None = None
    subject: str | None = None

    def as_sub_id(self) -> dict[str, Any]:
        user = {"format": "iss_sub", "iss": self.issuer, "sub": self.subject} if self.subject else None
        if self.client_id is None:
            assert user is not None, "a subject needs a client id or a user"
            return user
        complex_subject: dict[str, Any] = {
            "format": "complex",
            "tenant": {"format": "uri", "uri": self.issuer},
            "application": {"format": "opaque", "id": self.client_id},
        }
        if user is not None:
            complex_subject["user"] = user
        return complex_subject

    @classmethod
    def from_sub_id(cls, value: Any) -> AgentSubject | None:
        """The agent or subject a ``sub_id`` names; None for a format that names neither (email, phone, ...)."""
        if not isinstance(value, dict):
            return None
        if value.get("format") == "iss_sub":
            iss, sub = value.get("iss"), value.get("sub")
            return cls(iss, subject=sub) if _texts(iss, sub) else None
        if value.get("format") != "complex":
            return None
        user = cls.from_sub_id(value.get("user"))
        tenant, application = value.get("tenant"), value.get("application")
        issuer = user.issuer if user else None
        if isinstance(tenant, dict) and tenant.get("format") == "uri" and _texts(tenant.get("uri")):
            issuer = tenant["uri"]
        client_id = None
        if isinstance(application, dict) and application.get("format") == "opaque" and _texts(application.get("id")):
            client_id = application["id"]
        if issuer is None or (client_id is None and user is None):
            return None
        return cls(issuer, client_id, user.subject if user and user.issuer == issuer else None)


def _texts(*values: Any) -> bool:
    return all(isinstance(v, str) and v for v in values)
