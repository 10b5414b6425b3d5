"""The MCP server as an SSF 1.0 receiver of its transmitter's stream: join it, then catch up before serving.

At start-up the server reads the transmitter's ``/.well-known/ssf-configuration``, finds its stream (the one
whose ``aud`` is its canonical URL) at the ``configuration_endpoint`` or creates it (push to its own
``/events``), points it at this server's event endpoint if it pointed elsewhere, and then polls (RFC 8936)
the stream's backlog, acknowledging each SET once applied, until nothing is left. Until then the server
answers 503 with Retry-After: a restarted server never serves a token whose revocation it has not heard yet.
If the transmitter cannot be reached, it tries again after ``retry_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from sandbox.jwt_signature import VerificationUnavailable
from sandbox.loopback import require_loopback
from sandbox.mcp_server.events import EventReceiver, RejectedEvent
from sandbox.ssf import ACCESS_ENDING, PUSH, WELL_KNOWN

log = logging.getLogger(__name__)

#: Most polls in one catch-up (each takes up to 100 SETs): a backlog bigger than that is a transmitter fault.
MAX_POLLS = 1000


class CatchUpFailed(Exception):
    pass


@dataclass(frozen=True)
class TransmitterMetadata:
    issuer: str
    jwks_uri: str
    configuration_endpoint: str

    @classmethod
    def parse(cls, document: Any, expected_issuer: str) -> TransmitterMetadata:
        if not isinstance(document, dict):
            raise CatchUpFailed("the SSF configuration is not a JSON object")
        values = [document.get(name) for name in ("issuer", "jwks_uri", "configuration_endpoint")]
        if not all(isinstance(v, str) and v for v in values):
            raise CatchUpFailed("the SSF configuration lacks issuer, jwks_uri or configuration_endpoint")
        if document["issuer"] != expected_issuer:
            raise CatchUpFailed(f"the SSF configuration names issuer {document['issuer']!r}, not {expected_issuer!r}")
        for url in values[1:]:
            require_loopback(url, "SSF endpoint")
        return cls(*values)


class TransmitterConfiguration:
    """A transmitter's ``/.well-known/ssf-configuration``, read once (its ``jwks_uri`` signs the SETs)."""

    def __init__(self, http: httpx.AsyncClient, transmitter: str, *, jwks_override: str | None = None) -> None:
        self.http = http
        self.transmitter = transmitter
        self.jwks_override = jwks_override
        self._metadata: TransmitterMetadata | None = None

    async def metadata(self) -> TransmitterMetadata:
        if self._metadata is None:
            response = await self.http.get(f"{self.transmitter}{WELL_KNOWN}")
            if response.status_code != 200:
                raise CatchUpFailed(f"{WELL_KNOWN} answered HTTP {response.status_code}")
            self._metadata = TransmitterMetadata.parse(response.json(), self.transmitter)
        return self._metadata

    async def jwks_uri(self) -> str:
        """Where the SETs' keys are: the metadata's ``jwks_uri``, unless configured otherwise."""
        if self.jwks_override is not None:
            return self.jwks_override
        try:
            return (await self.metadata()).jwks_uri
        except (httpx.HTTPError, CatchUpFailed, ValueError) as exc:
            raise VerificationUnavailable("the SSF transmitter's configuration cannot be read") from exc


class StreamReceiver:
    """This server's side of its stream at one transmitter."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        receiver: EventReceiver,
        configuration: TransmitterConfiguration,
        *,
        audience: str,
        events_url: str,
        secret: str,
        retry_interval: float = 0.5,
    ) -> None:
        self.http = http
        self.receiver = receiver
        self.configuration = configuration
        self.transmitter = configuration.transmitter
        self.audience = audience
        self.events_url = events_url
        self.retry_interval = retry_interval
        self._headers = {"Authorization": f"Bearer {secret}"}
        self.caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Try to catch up now (a server whose transmitter is up is ready when it starts), else keep trying."""
        if not await self._try():
            self._task = asyncio.create_task(self._catch_up_until_done())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _catch_up_until_done(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            if await self._try():
                return

    async def _try(self) -> bool:
        try:
            applied = await self.catch_up()
        except (httpx.HTTPError, CatchUpFailed, ValueError) as exc:
            reason = str(exc) if isinstance(exc, CatchUpFailed) else type(exc).__name__
            log.warning("SSF stream not caught up yet; retrying", extra={"reason": reason})
            return False
        self.caught_up.set()
        log.info("SSF stream caught up", extra={"transmitter": self.transmitter, "applied": applied})
        return True

    async def catch_up(self) -> int:
        """Join the stream and apply its backlog; the number of SETs applied."""
        stream = await self.join()
        poll_url = stream.get("poll_endpoint_url") or stream["delivery"].get("endpoint_url")
        if not isinstance(poll_url, str):
            raise CatchUpFailed("the stream names no poll endpoint")
        require_loopback(poll_url, "SSF poll endpoint")
        applied, acknowledged, errors = 0, [], {}
        for _ in range(MAX_POLLS):
            body = {"maxEvents": 100, "returnImmediately": True, "ack": acknowledged, "setErrs": errors}
            response = await self.http.post(poll_url, json=body, headers=self._headers)
            if response.status_code != 200:
                raise CatchUpFailed(f"polling the stream answered HTTP {response.status_code}")
            answer = response.json()
            sets = answer.get("sets") if isinstance(answer, dict) else None
            if not isinstance(sets, dict):
                raise CatchUpFailed("the poll answer has no sets")
            acknowledged, errors = [], {}
            for jti, value in sets.items():
                try:
                    await self.receiver.receive(value)
                except RejectedEvent as rejected:
                    errors[jti] = {"err": rejected.err, "description": rejected.description}
                    continue
                acknowledged.append(jti)
                applied += 1
            if not sets and not answer.get("moreAvailable"):
                return applied
        raise CatchUpFailed(f"the stream still had events after {MAX_POLLS} polls")

    async def join(self) -> dict[str, Any]:
        """This server's stream: found by ``aud``, created if missing, pointed at this server's endpoint."""
        endpoint = (await self.configuration.metadata()).configuration_endpoint
        wanted = {
            "aud": self.audience,
            "delivery": {"method": PUSH, "endpoint_url": self.events_url},
            "events_requested": list(ACCESS_ENDING),
            "description": "reference MCP server",
        }
        listed = await self.http.get(endpoint, headers=self._headers)
        if listed.status_code != 200:
            raise CatchUpFailed(f"reading the streams answered HTTP {listed.status_code}")
        streams = listed.json() if isinstance(listed.json(), list) else [listed.json()]
        mine = next((s for s in streams if isinstance(s, dict) and s.get("aud") == self.audience), None)
        if mine is None:
            created = await self.http.post(endpoint, json=wanted, headers=self._headers)
            if created.status_code not in (201, 409):  # 409: another start made it a moment ago
                raise CatchUpFailed(f"creating the stream answered HTTP {created.status_code}")
            return created.json()  # type: ignore[no-any-return]
        if mine.get("delivery") != wanted["delivery"]:
            updated = await self.http.patch(
                endpoint, json={**wanted, "stream_id": mine["stream_id"]}, headers=self._headers
            )
            if updated.status_code != 200:
                raise CatchUpFailed(f"updating the stream answered HTTP {updated.status_code}")
            return updated.json()  # type: ignore[no-any-return]
        return mine
