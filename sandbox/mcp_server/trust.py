"""Which issuers the server trusts: the ones it was started with, plus the tenants the broker lists.

The broker's list (``GET /trust/issuers`` → ``{"issuers": [...]}``) is fetched at start and again
when a token names an issuer not yet trusted, at most once per ``refetch_interval``. An issuer the
broker does not list (``master``, a foreign realm) is never trusted. If the broker cannot be reached,
the last list it gave stays in force.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import httpx

from sandbox.mcp_server.net import is_loopback_url

log = logging.getLogger(__name__)


class TrustedIssuers:
    """The configured issuers, plus the tenants the broker lists.

    The list is refetched at most once per ``refetch_interval``, except for an issuer seen for the first time
    after the last fetch (a tenant the broker may have made since): that one is checked at once, at most every
    ``FIRST_SIGHTING_SPACING`` seconds, so a brand-new tenant is never refused and a stream of made-up issuers
    costs the broker at most a few requests a second.
    """

    FIRST_SIGHTING_SPACING = 0.1
    REMEMBERED_SIGHTINGS = 1024

    def __init__(
        self,
        static: Iterable[str],
        client: httpx.AsyncClient,
        *,
        trust_list_url: str | None,
        refetch_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = list(dict.fromkeys(static))
        self._listed: list[str] = []
        self._client = client
        self._url = trust_list_url
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._fetched_at = float("-inf")
        self._first_seen: OrderedDict[str, float] = OrderedDict()
        self._lock = asyncio.Lock()

    def known(self) -> list[str]:
        """Every issuer trusted right now, the configured ones first."""
        return list(dict.fromkeys([*self._static, *self._listed]))

    async def is_trusted(self, issuer: str) -> bool:
        if issuer in self._static or issuer in self._listed:
            return True
        if self._url is None:
            return False
        first_seen = self._sighted(issuer)
        if self._fetched_at < first_seen:  # the list predates this issuer: it may be a tenant made since
            await self.refresh(min_age=self.FIRST_SIGHTING_SPACING)
        else:
            await self.refresh()
        return issuer in self._listed

    def _sighted(self, issuer: str) -> float:
        """When ``issuer`` was first seen (now, if never); a bounded memory, oldest forgotten first."""
        if issuer not in self._first_seen:
            self._first_seen[issuer] = self._clock()
            while len(self._first_seen) > self.REMEMBERED_SIGHTINGS:
                self._first_seen.popitem(last=False)
        return self._first_seen[issuer]

    async def refresh(self, min_age: float | None = None) -> None:
        """Fetch the broker's list unless the one held is younger than ``min_age`` (default: the refetch
        interval); keep the previous list if a new one cannot be had."""
        if self._url is None:
            return
        async with self._lock:
            if self._clock() - self._fetched_at < (self._refetch_interval if min_age is None else min_age):
                return
            self._fetched_at = self._clock()
            try:
                response = await self._client.get(self._url, headers={"Accept": "application/json"})
                response.raise_for_status()
                issuers = response.json()["issuers"]
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.info("trust list unavailable", extra={"url": self._url, "reason": type(exc).__name__})
                return
            if not isinstance(issuers, list) or not all(isinstance(i, str) for i in issuers):
                log.warning("trust list malformed", extra={"url": self._url})
                return
            self._listed = [issuer for issuer in issuers if is_loopback_url(issuer)]
