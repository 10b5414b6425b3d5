"""Signed revocation events: Security Event Tokens (RFC 8417) pushed to resource servers (RFC 8935).

The broker signs with its own EC P-256 key (ES256), kept in the state directory with mode 0600 and
published at ``GET /.well-known/jwks.json``. The event format is in docs/architecture.md.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

log = logging.getLogger(__name__)

AGENT_REVOKED = "urn:mcp-sandbox:event:agent-revoked"
SET_MEDIA_TYPE = "application/secevent+jwt"


class SigningKey:
    """The broker's event-signing key: created once per state directory, never logged or shown."""

    def __init__(self, key: ECKey) -> None:
        self._key = key
        self.kid = key.thumbprint()

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        if path.exists():
            return cls(ECKey.import_key(json.loads(path.read_text())))
        key = ECKey.generate_key("P-256", {"use": "sig", "alg": "ES256"}, private=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps(key.as_dict(private=True)))
        return cls(key)

    def jwks(self) -> dict[str, Any]:
        public = self._key.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "ES256"}]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "ES256", "typ": "secevent+jwt", "kid": self.kid}, claims, self._key)


def revocation_event(
    key: SigningKey,
    *,
    broker_url: str,
    audience: str,
    issuer: str,
    subject: str,
    client_id: str,
    revoked_at: int,
) -> str:
    return key.sign(
        {
            "iss": broker_url,
            "aud": audience,
            "iat": revoked_at,
            "jti": str(uuid.uuid4()),
            "events": {
                AGENT_REVOKED: {
                    "subject": {"format": "iss_sub", "iss": issuer, "sub": subject},
                    "client_id": client_id,
                    "revoked_at": revoked_at,
                }
            },
        }
    )


@dataclass(frozen=True)
class Delivery:
    server: str
    events_url: str | None
    delivered: bool
    status: int | None
    error: str | None = None
    note: str | None = None  # why nothing was sent, when nothing was meant to be

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def push(http: httpx.AsyncClient, server: str, events_url: str | None, event: str) -> Delivery:
    """Deliver one SET; a server without an event endpoint, or one that fails, is reported, never raised."""
    if events_url is None:
        return Delivery(server, None, False, None, note="takes no revocation events (registered without an endpoint)")
    try:
        response = await http.post(events_url, content=event, headers={"Content-Type": SET_MEDIA_TYPE})
    except httpx.HTTPError as exc:
        log.warning("revocation event not delivered", extra={"server": server, "reason": type(exc).__name__})
        return Delivery(server, events_url, False, None, f"{type(exc).__name__}: unreachable")
    delivered = response.status_code == 202
    if not delivered:
        log.warning("revocation event refused", extra={"server": server, "status": response.status_code})
    return Delivery(server, events_url, delivered, response.status_code, None if delivered else response.text[:200])
