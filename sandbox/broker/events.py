"""Security Event Tokens (RFC 8417) the broker transmits, and their push delivery (RFC 8935).

Every broker process signs with one EC P-256 key (ES256), read from ``Settings.signing_key_file`` (mode 0600;
the first process to start creates it), published at ``GET /.well-known/jwks.json``; every event carries
``iss`` = ``Settings.transmitter_url``. The event types and subjects are in :mod:`sandbox.ssf`.
"""

from __future__ import annotations

import contextlib
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

from sandbox.ssf import SESSION_REVOKED, SET_MEDIA_TYPE, SET_TYPE, AgentSubject

log = logging.getLogger(__name__)


class SigningKey:
    """The transmitter's event-signing key: one file every broker process reads, never logged or shown."""

    def __init__(self, key: ECKey) -> None:
        self._key = key
        self.kid = key.thumbprint()

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key in ``path``; made there first if there is none (atomically: two processes end with one key)."""
        if not path.exists():
            key = ECKey.generate_key("P-256", {"use": "sig", "alg": "ES256"}, private=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(json.dumps(key.as_dict(private=True)))
                out.flush()
                os.fsync(out.fileno())
            try:
                with contextlib.suppress(FileExistsError):  # another process made it first: theirs is the key
                    os.link(draft, path)
            finally:
                draft.unlink()
        return cls(ECKey.import_key(json.loads(path.read_text())))

    def jwks(self) -> dict[str, Any]:
        public = self._key.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "ES256"}]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "ES256", "typ": SET_TYPE, "kid": self.kid}, claims, self._key)


def session_revoked(*, transmitter: str, audience: str, subject: AgentSubject, at: int, reason: str) -> dict[str, Any]:
    """The claims of a CAEP session-revoked SET for one receiver (sign them with :meth:`SigningKey.sign`).

    Tokens of the subject issued up to ``at`` are dead.
    """
    jti = uuid.uuid4().hex
    event: dict[str, Any] = {"event_timestamp": at, "initiating_entity": "admin"}
    if reason:
        event["reason_admin"] = {"en": reason[:200]}
    return {
        "iss": transmitter,
        "aud": audience,
        "iat": at,
        "jti": jti,
        "sub_id": subject.as_sub_id(),
        "events": {SESSION_REVOKED: event},
    }


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
        return Delivery(
            server, None, False, None, note="takes no revocation events by push (registered without an endpoint)"
        )
    try:
        response = await http.post(events_url, content=event, headers={"Content-Type": SET_MEDIA_TYPE})
    except httpx.HTTPError as exc:
        log.warning("security event not delivered", extra={"server": server, "reason": type(exc).__name__})
        return Delivery(server, events_url, False, None, f"{type(exc).__name__}: unreachable")
    delivered = response.status_code == 202
    if not delivered:
        log.warning("security event refused", extra={"server": server, "status": response.status_code})
    return Delivery(server, events_url, delivered, response.status_code, None if delivered else response.text[:200])
