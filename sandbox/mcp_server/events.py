"""The SSF receiver's SET handling in ``jwt+events`` mode: verify a Security Event Token, act on it.

A SET (RFC 8417) comes pushed (``POST /events``, RFC 8935, ``Content-Type: application/secevent+jwt``) or
polled (RFC 8936, see :mod:`sandbox.mcp_server.ssf_receiver`). It must be signed by a key at the
transmitter's ``jwks_uri`` (ES256 or RS256), come from the transmitter's issuer, be addressed to this
server's canonical URL, and carry a ``jti`` not seen before. The events that end an agent's access (CAEP
``session-revoked``, ``credential-change`` with ``change_type`` revoke or delete, RISC ``account-disabled``)
add to the revocation list; every other event is acknowledged and ignored, as SSF 1.0 asks. Push answers
202 when taken; 400 with ``{"err", "description"}`` (RFC 8935 §2.3) otherwise, and the list is unchanged.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.jwt_signature import InvalidToken, KeyCache, VerificationUnavailable, peek
from sandbox.mcp_server.principal import same_resource
from sandbox.mcp_server.revocations import Revocation, RevocationList
from sandbox.ssf import (
    ACCOUNT_DISABLED,
    CREDENTIAL_CHANGE,
    ENDING_CHANGES,
    SESSION_REVOKED,
    SET_MEDIA_TYPE,
    SET_TYPE,
    AgentSubject,
)

log = logging.getLogger(__name__)

SET_ALGORITHMS = ("ES256", "RS256")
MAX_SET_BYTES = 64 * 1024
REMEMBERED_IDS = 10_000


class RejectedEvent(Exception):
    def __init__(self, err: str, description: str) -> None:
        self.err = err
        self.description = description
        super().__init__(f"{err}: {description}")


class EventReceiver:
    def __init__(
        self,
        keys: KeyCache,
        revocations: RevocationList,
        *,
        issuer: str,
        audience: str,
        leeway: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._revocations = revocations
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._clock = clock
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def receive(self, value: str) -> list[Revocation]:
        """Verify one SET and apply what it says; nothing for a replay (same ``jti``) or an event of no concern."""
        claims = await self._verified_claims(value)
        revocations = revocations_in(claims)
        if claims["jti"] in self._seen:
            return []
        for revocation in revocations:
            self._revocations.add(revocation)
        self._seen[claims["jti"]] = None
        while len(self._seen) > REMEMBERED_IDS:
            self._seen.popitem(last=False)
        return revocations

    async def _verified_claims(self, value: str) -> dict[str, Any]:
        try:
            header, _ = peek(value)
        except InvalidToken as exc:
            raise RejectedEvent("invalid_request", "the body is not a compact JWS") from exc
        alg = header.get("alg")
        if alg not in SET_ALGORITHMS:
            raise RejectedEvent("invalid_request", f"signature algorithm {alg!r} is not accepted for events")
        if str(header.get("typ", "")).lower() not in (SET_TYPE, SET_MEDIA_TYPE):
            raise RejectedEvent("invalid_request", "the JWT is not typed secevent+jwt")
        if "crit" in header or "b64" in header:
            raise RejectedEvent("invalid_request", "the JWS header asks for processing this receiver does not do")
        try:
            key = await self._keys.key(header.get("kid"), alg)
            claims = jwt.decode(value, key, algorithms=[alg]).claims
        except InvalidToken as exc:
            raise RejectedEvent(
                "invalid_key", "the SET was signed with a key the transmitter does not publish"
            ) from exc
        except VerificationUnavailable as exc:
            raise RejectedEvent("invalid_key", f"the transmitter's keys cannot be fetched: {exc.description}") from exc
        except (JoseError, ValueError, TypeError) as exc:
            raise RejectedEvent("authentication_failed", "the SET's signature does not verify") from exc
        registry = JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=self._leeway,
            iss={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
            events={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise RejectedEvent("invalid_request", f"the SET's claims are not acceptable ({exc.description})") from exc
        if claims["iss"] != self._issuer:
            raise RejectedEvent("invalid_issuer", "the SET comes from another transmitter")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not any(
            isinstance(a, str) and same_resource(a, self._audience) for a in audiences
        ):
            raise RejectedEvent("invalid_audience", "the SET is addressed to another receiver")
        return claims


def revocations_in(claims: dict[str, Any]) -> list[Revocation]:
    """What the SET's events revoke: one entry per event that ends access, none for the others."""
    events = claims.get("events")
    if not isinstance(events, dict) or not events:
        raise RejectedEvent("invalid_request", "the SET carries no events")
    found = []
    for event_type, event in events.items():
        if not isinstance(event, dict):
            raise RejectedEvent("invalid_request", f"the {event_type} event is not an object")
        if not ends_access(event_type, event):
            continue
        # SSF 1.0 names the subject in `sub_id`; SETs of earlier drafts in the event's `subject`.
        subject = AgentSubject.from_sub_id(claims.get("sub_id", event.get("subject")))
        if subject is None:
            log.info("security event about a subject no token names", extra={"event": event_type})
            continue
        at = event.get("event_timestamp", claims["iat"])
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise RejectedEvent("invalid_request", "event_timestamp must be a number (seconds)")
        # Nothing issued after the SET itself can be meant (and a timestamp in milliseconds would be).
        found.append(Revocation(subject.issuer, subject.client_id, subject.subject, int(min(at, claims["iat"]))))
    return found


def ends_access(event_type: str, event: dict[str, Any]) -> bool:
    if event_type in (SESSION_REVOKED, ACCOUNT_DISABLED):
        return True
    return event_type == CREDENTIAL_CHANGE and event.get("change_type") in ENDING_CHANGES


def event_endpoint(receiver: EventReceiver) -> Callable[[Request], Any]:
    async def receive(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != SET_MEDIA_TYPE:
            return rejection(RejectedEvent("invalid_request", f"Content-Type must be {SET_MEDIA_TYPE}"))
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SET_BYTES:
                return rejection(RejectedEvent("invalid_request", "the SET is too large"), status=413)
        try:
            revocations = await receiver.receive(body.decode("ascii").strip())
        except UnicodeDecodeError:
            return rejection(RejectedEvent("invalid_request", "the body is not a compact JWS"))
        except RejectedEvent as rejected:
            log.warning("revocation event refused", extra={"err": rejected.err, "description": rejected.description})
            return rejection(rejected)
        for revocation in revocations:
            log.info(
                "revoked",
                extra={
                    "issuer": revocation.issuer,
                    "client_id": revocation.client_id,
                    "subject": revocation.subject,
                    "at": revocation.revoked_at,
                },
            )
        return Response(status_code=202)

    return receive


def rejection(rejected: RejectedEvent, status: int = 400) -> JSONResponse:
    return JSONResponse({"err": rejected.err, "description": rejected.description}, status_code=status)
