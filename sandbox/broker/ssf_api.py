"""The transmitter's HTTP face (SSF 1.0): metadata, stream configuration and status, RFC 8936 poll.

Receivers authenticate with the stack secret every MCP server of the stack holds (``Bearer <usage-ingest>``);
as that secret does not tell one receiver from another, a receiver names itself in ``aud`` (its canonical
URL) when it creates its stream, and one stream per ``aud`` is kept.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox.broker.auth import AuthError
from sandbox.broker.ssf_store import SsfStream
from sandbox.broker.transmitter import MAX_POLL_EVENTS, StreamExists, StreamNotFound, StreamRequest, Transmitter
from sandbox.errors import SandboxError
from sandbox.loopback import require_loopback
from sandbox.ssf import ACCESS_ENDING, POLL, PUSH, WELL_KNOWN

STREAMS = "/ssf/streams"
STATUS = "/ssf/status"
POLLING = "/ssf/poll"


class Delivery(BaseModel):
    method: str = Field(description=f"{PUSH} (push, RFC 8935) or {POLL} (poll, RFC 8936)")
    endpoint_url: str | None = Field(None, description="push: where the receiver takes SETs")


class StreamIn(BaseModel):
    aud: str = Field(description="the receiver: an MCP server's canonical URL")
    delivery: Delivery
    events_requested: list[str] = Field(default_factory=lambda: list(ACCESS_ENDING))
    description: str | None = Field(None, max_length=256)


class StreamUpdate(StreamIn):
    stream_id: str


class PollIn(BaseModel):
    """RFC 8936 §2.4."""

    maxEvents: int = Field(MAX_POLL_EVENTS, ge=0)
    returnImmediately: bool = True
    ack: list[str] = Field(default_factory=list)
    setErrs: dict[str, Any] = Field(default_factory=dict)


def _transmitter(request: Request) -> Transmitter:
    return request.app.state.transmitter  # type: ignore[no-any-return]


def _receiver(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = f"Bearer {request.app.state.usage_secret}"
    if not authorization or not hmac.compare_digest(authorization.encode(), expected.encode()):
        raise AuthError(401, "invalid_token", "SSF receivers present the stack's usage-ingest bearer secret")


Sender = Annotated[Transmitter, Depends(_transmitter)]
Receiver = Annotated[None, Depends(_receiver)]
router = APIRouter(tags=["shared signals"])


def configuration(stream: SsfStream, transmitter: Transmitter) -> dict[str, Any]:
    """SSF 1.0 §8.1.1 stream configuration; ``poll_endpoint_url`` (the stream's backlog) is this broker's own."""
    delivery: dict[str, Any] = {"method": stream.delivery_method}
    poll_url = f"{transmitter.issuer}{POLLING}/{stream.stream_id}"
    delivery["endpoint_url"] = stream.endpoint_url if stream.delivery_method == PUSH else poll_url
    requested = list(stream.events_requested)
    return {
        "stream_id": stream.stream_id,
        "iss": transmitter.issuer,
        "aud": stream.audience,
        "delivery": delivery,
        "events_supported": list(ACCESS_ENDING),
        "events_requested": requested,
        "events_delivered": [e for e in requested if e in ACCESS_ENDING],
        "description": stream.description,
        "poll_endpoint_url": poll_url,
    }


def _request(body: StreamIn) -> StreamRequest:
    if body.delivery.method not in (PUSH, POLL):
        raise AuthError(400, "invalid_request", f"delivery method must be {PUSH} or {POLL}")
    endpoint = body.delivery.endpoint_url if body.delivery.method == PUSH else None
    if body.delivery.method == PUSH and not endpoint:
        raise AuthError(400, "invalid_request", "a push stream needs delivery.endpoint_url")
    try:
        for url in (body.aud, endpoint):
            if url is not None:
                require_loopback(url, "SSF stream URL")
    except SandboxError as exc:
        raise AuthError(400, "invalid_request", str(exc)) from exc
    return StreamRequest(body.aud, body.delivery.method, endpoint, body.events_requested, body.description)


def _missing(stream_id: str) -> JSONResponse:
    return JSONResponse({"error": "not_found", "detail": f"no stream {stream_id!r}"}, status_code=404)


@router.get(WELL_KNOWN)
async def metadata(transmitter: Sender) -> dict[str, Any]:
    """Transmitter configuration metadata (SSF 1.0 §7.1)."""
    issuer = transmitter.issuer
    return {
        "spec_version": "1_0",
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "delivery_methods_supported": [PUSH, POLL],
        "configuration_endpoint": f"{issuer}{STREAMS}",
        "status_endpoint": f"{issuer}{STATUS}",
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6750"}],
        "default_subjects": "ALL",
    }


@router.post(STREAMS, status_code=201)
async def create_stream(body: StreamIn, transmitter: Sender, _: Receiver) -> Any:
    try:
        return configuration(transmitter.create(_request(body)), transmitter)
    except StreamExists as exists:
        return JSONResponse(configuration(exists.stream, transmitter), status_code=409)


@router.get(STREAMS)
async def read_streams(transmitter: Sender, _: Receiver, stream_id: Annotated[str | None, Query()] = None) -> Any:
    if stream_id is None:
        return [configuration(s, transmitter) for s in transmitter.streams()]
    try:
        return configuration(transmitter.stream(stream_id), transmitter)
    except StreamNotFound:
        return _missing(stream_id)


@router.patch(STREAMS)
async def update_stream(body: StreamUpdate, transmitter: Sender, _: Receiver) -> Any:
    try:
        return configuration(transmitter.update(body.stream_id, _request(body)), transmitter)
    except StreamNotFound:
        return _missing(body.stream_id)


@router.delete(STREAMS, status_code=204)
async def delete_stream(transmitter: Sender, _: Receiver, stream_id: Annotated[str, Query()]) -> Response:
    try:
        transmitter.delete(stream_id)
    except StreamNotFound:
        return _missing(stream_id)
    return Response(status_code=204)


@router.get(STATUS)
async def stream_status(transmitter: Sender, _: Receiver, stream_id: Annotated[str, Query()]) -> Any:
    try:
        transmitter.stream(stream_id)
    except StreamNotFound:
        return _missing(stream_id)
    return {"stream_id": stream_id, "status": "enabled"}


@router.post(f"{POLLING}/{{stream_id}}")
async def poll(stream_id: str, body: PollIn, transmitter: Sender, _: Receiver) -> Any:
    """RFC 8936 poll: acknowledge SETs and take the stream's next ones (answered at once: no long polling)."""
    try:
        polled = transmitter.poll(stream_id, acknowledged=body.ack, max_events=body.maxEvents)
    except StreamNotFound:
        return _missing(stream_id)
    return {"sets": polled.sets, "moreAvailable": polled.more_available}
