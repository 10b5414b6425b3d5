"""The broker as an SSF 1.0 transmitter: streams its receivers create or join, events pushed and polled.

Each receiver (an MCP server, by its canonical URL as ``aud``) has one stream. An event is pushed (RFC 8935)
to a push stream's endpoint at once; what its receiver does not acknowledge, and everything for a poll
stream, waits in the database until the receiver polls it (RFC 8936) and acknowledges it. A push stream's
backlog can be polled too: a restarted receiver catches up that way. Every broker process serves the same
streams from the shared database, under one issuer (``Settings.transmitter_url``) and one key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import delete, select

from sandbox.broker.events import Delivery, SigningKey, push, session_revoked
from sandbox.broker.ssf_store import SsfPendingEvent, SsfStream
from sandbox.broker.store import Database, StorageConflict
from sandbox.ssf import ACCESS_ENDING, PUSH, AgentSubject

log = logging.getLogger(__name__)

#: Most SETs one poll answer carries.
MAX_POLL_EVENTS = 100


class StreamNotFound(Exception):
    pass


class StreamExists(Exception):
    def __init__(self, stream: SsfStream) -> None:
        self.stream = stream
        super().__init__(stream.stream_id)


@dataclass(frozen=True)
class StreamRequest:
    audience: str
    delivery_method: str
    endpoint_url: str | None
    events_requested: list[str]
    description: str | None = None


@dataclass(frozen=True)
class Polled:
    sets: dict[str, str]
    more_available: bool


class Transmitter:
    def __init__(
        self, issuer: str, db: Database, key: SigningKey, http: httpx.AsyncClient, now: Callable[[], datetime]
    ) -> None:
        self.issuer = issuer
        self.db = db
        self.key = key
        self.http = http
        self.now = now

    # Streams (SSF 1.0 §8.1.1).
    def create(self, request: StreamRequest) -> SsfStream:
        """A new stream for ``request.audience``; :class:`StreamExists` if it has one (also when another broker
        process made it a moment ago)."""
        try:
            with self.db.session() as session:
                existing = session.scalars(select(SsfStream).where(SsfStream.audience == request.audience)).first()
                if existing is not None:
                    raise StreamExists(existing)
                stream = SsfStream(
                    stream_id=uuid.uuid4().hex,
                    audience=request.audience,
                    delivery_method=request.delivery_method,
                    endpoint_url=request.endpoint_url,
                    events_requested=list(request.events_requested),
                    description=request.description,
                    created_at=self.now(),
                )
                session.add(stream)
        except StorageConflict:
            with self.db.session() as session:
                made = session.scalars(select(SsfStream).where(SsfStream.audience == request.audience)).one()
            raise StreamExists(made) from None
        log.info("SSF stream created", extra={"stream": stream.stream_id, "aud": stream.audience})
        return stream

    def streams(self) -> list[SsfStream]:
        with self.db.session() as session:
            return list(session.scalars(select(SsfStream).order_by(SsfStream.created_at)))

    def stream(self, stream_id: str) -> SsfStream:
        with self.db.session() as session:
            found = session.get(SsfStream, stream_id)
        if found is None:
            raise StreamNotFound(stream_id)
        return found

    def update(self, stream_id: str, request: StreamRequest) -> SsfStream:
        with self.db.session() as session:
            stream = session.get(SsfStream, stream_id)
            if stream is None:
                raise StreamNotFound(stream_id)
            stream.delivery_method, stream.endpoint_url = request.delivery_method, request.endpoint_url
            stream.events_requested = list(request.events_requested)
            stream.description = request.description
        return stream

    def delete(self, stream_id: str) -> None:
        with self.db.session() as session:
            stream = session.get(SsfStream, stream_id)
            if stream is None:
                raise StreamNotFound(stream_id)
            session.delete(stream)
            session.execute(delete(SsfPendingEvent).where(SsfPendingEvent.stream_id == stream_id))

    def ensure_push_stream(self, audience: str, endpoint_url: str) -> None:
        """A resource server registered with an event endpoint gets a push stream to it (unless it has one)."""
        with contextlib.suppress(StreamExists):
            self.create(StreamRequest(audience, PUSH, endpoint_url, list(ACCESS_ENDING), "registered by an operator"))

    # Events.
    async def revoke(self, subject: AgentSubject, audiences: Iterable[str], *, at: int, reason: str) -> list[Delivery]:
        """A CAEP session-revoked event to each audience's stream, kept until acknowledged, pushed concurrently.

        Returns once every push stream's receiver has answered (or failed); a failed push stays pollable.
        """
        wanted = list(dict.fromkeys(audiences))
        with self.db.session() as session:
            streams = {s.audience: s for s in session.scalars(select(SsfStream).where(SsfStream.audience.in_(wanted)))}
            outgoing: list[tuple[str, SsfStream | None, str | None, str | None]] = []
            for audience in wanted:
                stream = streams.get(audience)
                if stream is None:
                    outgoing.append((audience, None, None, None))
                    continue
                claims = session_revoked(
                    transmitter=self.issuer, audience=audience, subject=subject, at=at, reason=reason
                )
                jti = claims["jti"]
                session.add(SsfPendingEvent(jti=jti, stream_id=stream.stream_id, claims=claims, created_at=self.now()))
                outgoing.append((audience, stream, jti, self.key.sign(claims)))

        async def deliver(audience: str, stream: SsfStream | None, token: str | None) -> Delivery:
            if stream is None or token is None:
                return Delivery(audience, None, False, None, note="takes no revocation events (it has no SSF stream)")
            if stream.delivery_method != PUSH:
                return Delivery(audience, None, False, None, "poll stream: the receiver fetches it")
            return await push(self.http, audience, stream.endpoint_url, token)

        deliveries = await asyncio.gather(*(deliver(a, s, t) for a, s, _, t in outgoing))
        acknowledged = [jti for (_, _, jti, _), d in zip(outgoing, deliveries, strict=True) if d.delivered and jti]
        if acknowledged:
            with self.db.session() as session:
                session.execute(delete(SsfPendingEvent).where(SsfPendingEvent.jti.in_(acknowledged)))
        return list(deliveries)

    def poll(self, stream_id: str, *, acknowledged: list[str], max_events: int) -> Polled:
        """RFC 8936: forget what the receiver acknowledges, then hand it up to ``max_events`` of the rest."""
        with self.db.session() as session:
            if session.get(SsfStream, stream_id) is None:
                raise StreamNotFound(stream_id)
            if acknowledged:
                session.execute(
                    delete(SsfPendingEvent).where(
                        SsfPendingEvent.stream_id == stream_id, SsfPendingEvent.jti.in_(acknowledged)
                    )
                )
            limit = max(0, min(max_events, MAX_POLL_EVENTS))
            rows = list(
                session.scalars(
                    select(SsfPendingEvent)
                    .where(SsfPendingEvent.stream_id == stream_id)
                    .order_by(SsfPendingEvent.created_at)
                    .limit(limit + 1)
                )
            )
        return Polled({row.jti: self.key.sign(row.claims) for row in rows[:limit]}, len(rows) > limit)
