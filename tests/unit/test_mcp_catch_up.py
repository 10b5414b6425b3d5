"""A jwt+events server serves no token before it has caught up on its SSF stream: 503 with Retry-After, then
served once the transmitter answers; what it polls is applied and acknowledged."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from joserfc.jwk import ECKey
from mcp_fakes import AUDIENCE, ISSUER
from starlette.testclient import TestClient

from sandbox.broker.events import SigningKey, session_revoked
from sandbox.config import load_settings
from sandbox.jwt_signature import KeyCache
from sandbox.mcp_server.app import build_app
from sandbox.mcp_server.events import EventReceiver
from sandbox.mcp_server.options import ServerOptions
from sandbox.mcp_server.principal import Principal
from sandbox.mcp_server.revocations import RevocationList
from sandbox.mcp_server.ssf_receiver import StreamReceiver, TransmitterConfiguration
from sandbox.ssf import WELL_KNOWN, AgentSubject

TRANSMITTER = "http://127.0.0.1:7"


class FakeTransmitter:
    """Metadata, one stream, and a backlog of SETs the receiver polls and acknowledges."""

    def __init__(self) -> None:
        self.key = SigningKey(ECKey.generate_key("P-256", private=True))
        self.streams: list[dict[str, object]] = []
        self.backlog: dict[str, str] = {}
        self.acknowledged: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == WELL_KNOWN:
            return httpx.Response(
                200,
                json={
                    "issuer": TRANSMITTER,
                    "jwks_uri": f"{TRANSMITTER}/jwks",
                    "configuration_endpoint": f"{TRANSMITTER}/streams",
                },
            )
        if path == "/jwks":
            return httpx.Response(200, json=self.key.jwks())
        if path == "/streams" and request.method == "GET":
            return httpx.Response(200, json=self.streams)
        if path == "/streams" and request.method == "POST":
            stream = {**json.loads(request.content), "stream_id": "s1", "poll_endpoint_url": f"{TRANSMITTER}/poll"}
            self.streams.append(stream)
            return httpx.Response(201, json=stream)
        if path == "/poll":
            acknowledged = json.loads(request.content)["ack"]
            self.acknowledged += acknowledged
            for jti in acknowledged:
                self.backlog.pop(jti, None)
            return httpx.Response(200, json={"sets": dict(self.backlog), "moreAvailable": False})
        return httpx.Response(404)


def test_a_backlog_is_applied_and_acknowledged_and_the_stream_made_once(tmp_path: Path) -> None:
    transmitter = FakeTransmitter()
    for at in (1000, 1001):
        claims = session_revoked(
            transmitter=TRANSMITTER, audience=AUDIENCE, subject=AgentSubject(ISSUER, f"agent-{at}"), at=at, reason=""
        )
        transmitter.backlog[claims["jti"]] = transmitter.key.sign(claims)
    pending = set(transmitter.backlog)

    async def run() -> RevocationList:
        http = httpx.AsyncClient(transport=httpx.MockTransport(transmitter.handle))
        revocations = RevocationList(max_token_lifetime=86400, leeway=5, clock=lambda: 1000)
        configuration = TransmitterConfiguration(http, TRANSMITTER)
        keys = KeyCache(http, configuration.jwks_uri, refetch_interval=1)
        receiver = EventReceiver(keys, revocations, issuer=TRANSMITTER, audience=AUDIENCE, leeway=5)
        stream = StreamReceiver(
            http, receiver, configuration, audience=AUDIENCE, events_url="http://127.0.0.1:2/events", secret="s"
        )
        assert await stream.catch_up() == 2
        assert await stream.catch_up() == 0  # joins the same stream again, nothing left
        return revocations

    revocations = asyncio.run(run())
    assert set(transmitter.acknowledged) == pending and transmitter.backlog == {}
    assert len(transmitter.streams) == 1 and transmitter.streams[0]["aud"] == AUDIENCE
    assert len(revocations) == 2
    for client_id, revoked_at in (("agent-1000", 1000), ("agent-1001", 1001)):
        assert revocations.covers(Principal(ISSUER, client_id, "sa", frozenset(), revoked_at, 2000, "x"))
        assert not revocations.covers(Principal(ISSUER, client_id, "sa", frozenset(), revoked_at + 1, 2000, "x"))


def test_until_it_has_caught_up_the_server_answers_503_with_retry_after(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, mcp_leeway=5)
    options = ServerOptions.standalone(
        settings, issuers=[ISSUER], port=9, mode="jwt+events", broker_url="http://127.0.0.1:1"
    )
    with TestClient(build_app(options), base_url="http://127.0.0.1:9") as client:
        waiting = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize"})
        assert waiting.status_code == 503 and waiting.headers["retry-after"] == "1"
        assert client.get("/health").status_code == 503
    assert not (tmp_path / "mcp-server" / "revocations-9.jsonl").exists()
