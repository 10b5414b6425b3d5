"""The broker's SSF transmitter on its own database, with receivers answering through httpx.MockTransport:
pushes go to every receiver at once, what is not acknowledged waits for a poll, and every broker process
sharing the database and the key file speaks as the same transmitter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from sandbox.broker.events import SigningKey
from sandbox.broker.ssf_store import SsfStream  # noqa: F401 - its tables are part of the schema
from sandbox.broker.store import Database
from sandbox.broker.transmitter import StreamExists, StreamNotFound, StreamRequest, Transmitter
from sandbox.ssf import ACCESS_ENDING, POLL, PUSH, SESSION_REVOKED, AgentSubject

ISSUER = "http://127.0.0.1:9/realms/acme"
BROKER = "http://127.0.0.1:8"
AGENT = AgentSubject(ISSUER, "agent-1", "sa-1")
SERVERS = [f"http://127.0.0.1:{port}/mcp" for port in (11, 12, 13)]


def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'broker.db'}")
    db.create_schema()
    return db


def transmitter(tmp_path: Path, handler: httpx.AsyncBaseTransport, db: Database | None = None) -> Transmitter:
    key = SigningKey.load_or_create(tmp_path / "key.json")
    http = httpx.AsyncClient(transport=handler)
    return Transmitter(BROKER, db or database(tmp_path), key, http, lambda: datetime.now(UTC))


def push_stream(server: str) -> StreamRequest:
    return StreamRequest(server, PUSH, server.replace("/mcp", "/events"), list(ACCESS_ENDING))


def test_a_revocation_is_pushed_to_every_receiver_at_once_and_waits_for_all_of_them(tmp_path: Path) -> None:
    """Each receiver holds its answer until all three have been asked: one after the other would never finish."""
    barrier = asyncio.Barrier(len(SERVERS))
    received: list[dict[str, object]] = []

    async def receiver(request: httpx.Request) -> httpx.Response:
        received.append({"url": str(request.url), "type": request.headers["content-type"], "body": request.content})
        await asyncio.wait_for(barrier.wait(), timeout=5)
        return httpx.Response(202)

    sender = transmitter(tmp_path, httpx.MockTransport(receiver))
    for server in SERVERS:
        sender.create(push_stream(server))
    deliveries = asyncio.run(sender.revoke(AGENT, SERVERS, at=1000, reason="incident"))
    assert [(d.server, d.delivered, d.status) for d in deliveries] == [(s, True, 202) for s in SERVERS]
    assert {r["type"] for r in received} == {"application/secevent+jwt"}
    keys = KeySet.import_key_set(sender.key.jwks())
    for record, server in zip(sorted(received, key=lambda r: str(r["url"])), SERVERS, strict=True):
        claims = jwt.decode(record["body"], keys).claims  # type: ignore[arg-type]
        assert claims["iss"] == BROKER and claims["aud"] == server
        assert claims["events"][SESSION_REVOKED]["event_timestamp"] == 1000
        assert AgentSubject.from_sub_id(claims["sub_id"]) == AGENT
    stream_id = sender.streams()[0].stream_id
    assert sender.poll(stream_id, acknowledged=[], max_events=10).sets == {}  # acknowledged: nothing left


def test_what_a_receiver_did_not_acknowledge_waits_for_its_poll_and_is_gone_once_acknowledged(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    sender = transmitter(tmp_path, httpx.MockTransport(refuse))
    pushed = sender.create(push_stream(SERVERS[0]))
    polled = sender.create(StreamRequest(SERVERS[1], POLL, None, list(ACCESS_ENDING)))
    for at in (1000, 1001, 1002):
        deliveries = asyncio.run(sender.revoke(AGENT, SERVERS[:2], at=at, reason=""))
        assert [d.delivered for d in deliveries] == [False, False]
    first = sender.poll(pushed.stream_id, acknowledged=[], max_events=2)
    assert len(first.sets) == 2 and first.more_available
    second = sender.poll(pushed.stream_id, acknowledged=list(first.sets), max_events=2)
    assert len(second.sets) == 1 and not second.more_available and not set(second.sets) & set(first.sets)
    assert sender.poll(pushed.stream_id, acknowledged=list(second.sets), max_events=2).sets == {}
    assert len(sender.poll(polled.stream_id, acknowledged=[], max_events=10).sets) == 3  # its own backlog
    with pytest.raises(StreamNotFound):
        sender.poll("no-such-stream", acknowledged=[], max_events=1)


def test_a_server_without_a_stream_is_reported_and_one_stream_is_kept_per_receiver(tmp_path: Path) -> None:
    sender = transmitter(tmp_path, httpx.MockTransport(lambda request: httpx.Response(202)))
    sender.create(push_stream(SERVERS[0]))
    with pytest.raises(StreamExists):
        sender.create(push_stream(SERVERS[0]))
    sender.ensure_push_stream(SERVERS[0], "http://127.0.0.1:99/elsewhere")  # keeps the receiver's own stream
    assert [s.endpoint_url for s in sender.streams()] == ["http://127.0.0.1:11/events"]
    deliveries = asyncio.run(sender.revoke(AGENT, [SERVERS[0], SERVERS[2]], at=1000, reason=""))
    assert [(d.delivered, d.error) for d in deliveries] == [(True, None), (False, None)]
    assert deliveries[1].note == "takes no revocation events (it has no SSF stream)"  # by design, not a failure


def test_two_broker_processes_on_one_database_and_key_file_are_one_transmitter(tmp_path: Path) -> None:
    db = database(tmp_path)
    bodies: list[bytes] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(202)

    first = transmitter(tmp_path, httpx.MockTransport(receiver), db)
    second = transmitter(tmp_path, httpx.MockTransport(receiver), db)
    assert first.key.jwks() == second.key.jwks()
    first.create(push_stream(SERVERS[0]))
    asyncio.run(first.revoke(AGENT, [SERVERS[0]], at=1000, reason=""))
    asyncio.run(second.revoke(AGENT, [SERVERS[0]], at=1001, reason=""))  # the stream the other one made
    keys = KeySet.import_key_set(first.key.jwks())
    assert [jwt.decode(b, keys).claims["iss"] for b in bodies] == [BROKER, BROKER]
    assert (tmp_path / "key.json").stat().st_mode & 0o777 == 0o600
