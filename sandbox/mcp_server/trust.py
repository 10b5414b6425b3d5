"""Which issuers the server trusts: the ones it was started with, plus the tenants the broker lists.

The broker's list (``GET /trust/issuers`` → ``{"issuers": [...], "tenants": {issuer: tenant}}``) is fetched at
start, before serving the protected resource metadata, and when a token names an issuer not yet trusted (see
``TrustedIssuers`` for how often). An issuer the broker does not list (``master``, a foreign realm) is never
trusted. If the broker cannot be reached, the last list it gave stays in force.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping

import httpx

from sandbox.loopback import is_loopback_url

log = logging.getLogger(__name__)


class TrustedIssuers:
    """The configured issuers, plus the tenants the broker lists.

    The list is refetched at most once per ``refetch_interval``, except for an issuer seen for the first time
    since the last fetch (a tenant the broker may have made since): its request waits for a fetch that starts
    after the sighting. Such fetches are spaced ``FIRST_SIGHTING_SPACING`` apart and every request waiting
    shares the next one, so a brand-new tenant is never refused and a stream of made-up issuers costs the
    broker at most a few requests a second.
    """

    FIRST_SIGHTING_SPACING = 0.1
    REMEMBERED_SIGHTINGS = 1024

    def __init__(
        self,
        static: Iterable[str],
        client: httpx.AsyncClient,
        *,
        names: Mapping[str, str] | None = None,
        trust_list_url: str | None,
        refetch_interval: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._static = list(dict.fromkeys(static))
        self._names = dict(names or {})  # the tenant each configured issuer stands for, where it is known
        self._listed: list[str] = []
        self._listed_names: dict[str, str] = {}
        self._client = client
        self._url = trust_list_url
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._sleep = sleep
        self._fetched_at = float("-inf")
        self._fetches = 0  # fetches started so far: which came after a sighting is told by count, not by clock
        self._first_seen: OrderedDict[str, int] = OrderedDict()
        self._lock = asyncio.Lock()

    def known(self) -> list[str]:
        """Every issuer trusted right now, the configured ones first."""
        return list(dict.fromkeys([*self._static, *self._listed]))

    def tenant_of(self, issuer: str) -> str:
        """The tenant a trusted issuer stands for: as configured, or as the broker lists it; else the issuer
        itself (a server given only an issuer URL keeps each issuer's callers apart by that URL)."""
        return self._names.get(issuer) or self._listed_names.get(issuer) or issuer

    async def is_trusted(self, issuer: str) -> bool:
        if issuer in self._static or issuer in self._listed:
            return True
        if self._url is None:
            return False
        fetches_when_seen = self._sighted(issuer)
        if self._fetches == fetches_when_seen:  # the list predates this issuer: it may be a tenant made since
            await self._refresh_after(fetches_when_seen, self._url)
        else:
            await self.refresh()
        return issuer in self._listed

    def _sighted(self, issuer: str) -> int:
        """How many fetches had started when ``issuer`` was first seen (now, if never); a bounded memory."""
        if issuer not in self._first_seen:
            self._first_seen[issuer] = self._fetches
            while len(self._first_seen) > self.REMEMBERED_SIGHTINGS:
                self._first_seen.popitem(last=False)
        return self._first_seen[issuer]

    async def refresh(self) -> None:
        """Fetch the broker's list unless the one held is younger than the refetch interval."""
        if self._url is None:
            return
        async with self._lock:
            if self._clock() - self._fetched_at >= self._refetch_interval:
                await self._fetch(self._url)

    async def catch_up(self) -> None:
        """Make sure a fetch has begun since this call, spaced and shared like those for first sightings: the
        list then holds every issuer the broker listed before the call."""
        if self._url is not None:
            await self._refresh_after(self._fetches, self._url)

    async def _refresh_after(self, fetches: int, url: str) -> None:
        """Make sure a fetch has started since ``fetches`` had, spacing such fetches out."""
        async with self._lock:
            if self._fetches > fetches:  # a fetch that started since (another waiter's) answers this one too
                return
            wait = self._fetched_at + self.FIRST_SIGHTING_SPACING - self._clock()
            if wait > 0:
                await self._sleep(wait)
            await self._fetch(url)

    async def _fetch(self, url: str) -> None:
        """Fetch the list now (the caller holds the lock); keep the previous one if a new one cannot be had."""
        self._fetches += 1
        self._fetched_at = self._clock()
        try:
            response = await self._client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            answer = response.json()
            issuers, names = answer["issuers"], answer.get("tenants", {})
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.info("trust list unavailable", extra={"url": url, "reason": type(exc).__name__})
            return
        if (
            not isinstance(issuers, list)
            or not all(isinstance(i, str) for i in issuers)
            or not isinstance(names, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items())
        ):
            log.warning("trust list malformed", extra={"url": url})
            return
        self._listed = [issuer for issuer in issuers if is_loopback_url(issuer)]
        self._listed_names = {issuer: names[issuer] for issuer in self._listed if issuer in names}
        for issuer in self._listed:  # trusted now: if it is ever dropped and listed again (an IdP lent to a new
            self._first_seen.pop(issuer, None)  # tenant), its next sighting waits for a fresh list again
