"""Usage reports to the broker: one event per tool call, sent in batches, never on the request path.

``POST <broker>/usage`` with ``{"resource": <canonical URL>, "events": [{"issuer", "client_id", "tool",
"allowed", "status", "at", "source", "outside_zone"}]}`` (``source``: the caller's address; ``outside_zone``: the
call was refused because it came from outside the agent's network zone) and
``Authorization: Bearer <stack secret "usage-ingest">``; ``at`` is
Unix seconds. Recording
only appends to a bounded buffer; a background task sends what has gathered every
``flush_interval`` seconds. If the broker is absent or refuses, the batch is kept (the oldest
events are dropped beyond the buffer's size) and retried with backoff; calls are never slowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger(__name__)

MAX_BUFFERED = 10_000
MAX_BATCH = 500
MAX_BACKOFF = 30.0


class UsageReporter:
    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str | None,
        secret: str | None,
        *,
        resource: str,
        flush_interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._url = url
        self._secret = secret
        self._resource = resource
        self._interval = flush_interval
        self._clock = clock
        self._buffer: deque[dict[str, Any]] = deque(maxlen=MAX_BUFFERED)
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self._url is not None and self._secret is not None

    def record(
        self,
        *,
        issuer: str,
        client_id: str,
        tool: str,
        allowed: bool,
        status: int,
        source: str | None = None,
        outside_zone: bool = False,
    ) -> None:
        if self.enabled:
            self._buffer.append(
                {
                    "issuer": issuer,
                    "client_id": client_id,
                    "tool": tool,
                    "allowed": allowed,
                    "status": status,
                    "at": round(self._clock(), 3),
                    "source": source,
                    "outside_zone": outside_zone,
                }
            )

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-reporter")

    async def stop(self) -> None:
        """Stop the background task and try once more, briefly, to send what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.enabled and self._buffer:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.flush(), timeout=2.0)

    async def flush(self) -> bool:
        """Send everything buffered, a batch at a time; False (events kept) when the broker did not take them."""
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(MAX_BATCH, len(self._buffer)))]
            try:
                response = await self._client.post(
                    self._url or "",
                    json={"resource": self._resource, "events": batch},
                    headers={"Authorization": f"Bearer {self._secret}"},
                )
                accepted = response.status_code < 300
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                accepted, reason = False, type(exc).__name__
            if not accepted:
                self._buffer.extendleft(reversed(batch))
                if not self._failing:
                    log.info("usage reports not delivered; will retry", extra={"url": self._url, "reason": reason})
                self._failing = True
                return False
            self.sent += len(batch)
            if self._failing:
                log.info("usage reports delivered again", extra={"url": self._url})
            self._failing = False
        return True

    async def _run(self) -> None:
        delay = self._interval
        while True:
            await asyncio.sleep(delay)
            delivered = await self.flush()
            delay = self._interval if delivered else min(max(delay * 2, self._interval), MAX_BACKOFF)
