"""Trusted issuers (static plus the broker's list, refetched at a bounded rate) and off-path usage reports."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from mcp_fakes import Clock

from sandbox.mcp_server.trust import TrustedIssuers
from sandbox.mcp_server.usage import UsageReporter

ACME = "http://127.0.0.1:1/realms/acme"
GLOBEX = "http://127.0.0.1:1/realms/globex"
LIST_URL = "http://127.0.0.1:3/trust/issuers"
MCP = "http://127.0.0.1:2/mcp"


class Broker:
    def __init__(self) -> None:
        self.issuers: list[str] = []
        self.tenants: dict[str, str] = {}
        self.up = True
        self.requests: list[httpx.Request] = []
        self.status = 202

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.up:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/trust/issuers":
            return httpx.Response(200, json={"issuers": self.issuers, "tenants": self.tenants})
        return httpx.Response(self.status)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))


def test_static_issuers_are_trusted_without_asking_the_broker() -> None:
    broker = Broker()
    trust = TrustedIssuers([ACME], broker.client(), trust_list_url=LIST_URL, refetch_interval=5, clock=Clock())
    assert asyncio.run(trust.is_trusted(ACME)) and broker.requests == []


def test_the_tenant_of_an_issuer_is_its_configured_name_else_the_broker_s_else_the_issuer() -> None:
    broker, hydra = Broker(), "http://127.0.0.1:4444/"
    broker.issuers, broker.tenants = [GLOBEX, hydra], {GLOBEX: "globex", hydra: "initech"}
    trust = TrustedIssuers([ACME], broker.client(), names={ACME: "acme"}, trust_list_url=LIST_URL, refetch_interval=5)
    assert asyncio.run(trust.is_trusted(hydra))
    assert [trust.tenant_of(i) for i in (ACME, GLOBEX, hydra)] == ["acme", "globex", "initech"]
    broker.issuers, broker.tenants = [GLOBEX], {GLOBEX: "globex", hydra: "initech"}  # the Hydra given back
    asyncio.run(trust._fetch(LIST_URL))
    assert trust.tenant_of(hydra) == hydra  # a name only for what is listed


def test_a_trust_list_with_malformed_tenant_names_is_not_taken() -> None:
    broker = Broker()
    broker.issuers, broker.tenants = [GLOBEX], {GLOBEX: 7}  # type: ignore[dict-item]
    trust = TrustedIssuers([], broker.client(), trust_list_url=LIST_URL, refetch_interval=5)
    assert not asyncio.run(trust.is_trusted(GLOBEX))


def test_a_first_seen_issuer_is_checked_at_once_and_the_broker_is_asked_at_most_once_per_interval() -> None:
    broker, clock = Broker(), Clock()
    trust = TrustedIssuers([ACME], broker.client(), trust_list_url=LIST_URL, refetch_interval=5, clock=clock)

    async def scenario() -> list[bool]:
        seen = [await trust.is_trusted(GLOBEX)]  # first sighting: fetched, globex is not listed yet
        seen += [await trust.is_trusted(GLOBEX) for _ in range(3)]  # seen before the last fetch: no new fetch
        broker.issuers = [GLOBEX]
        clock.now += 1
        seen.append(await trust.is_trusted(GLOBEX))  # within the interval: still no fetch
        clock.now += 4
        seen.append(await trust.is_trusted(GLOBEX))
        return seen

    assert asyncio.run(scenario()) == [False, False, False, False, False, True]
    assert len(broker.requests) == 2
    assert trust.known() == [ACME, GLOBEX]


def trusting(broker: Broker, clock: Clock) -> TrustedIssuers:
    async def sleep(seconds: float) -> None:
        clock.now += seconds

    return TrustedIssuers([], broker.client(), trust_list_url=LIST_URL, refetch_interval=5, clock=clock, sleep=sleep)


@pytest.mark.parametrize("gap", [0.0, 0.05, 0.3])
def test_a_tenant_made_a_moment_after_a_fetch_is_trusted_on_its_first_token(gap: float) -> None:
    broker, clock = Broker(), Clock()
    trust = trusting(broker, clock)

    async def scenario() -> bool:
        await trust.is_trusted("http://127.0.0.1:3/realms/someone-else")  # a fetch, for another issuer
        broker.issuers = [GLOBEX]  # the broker makes a tenant right after
        clock.now += gap
        return await trust.is_trusted(GLOBEX)

    assert asyncio.run(scenario()) is True
    assert len(broker.requests) == 2


@pytest.mark.parametrize("gap", [0.0, 0.05, 0.3])
def test_the_metadata_s_list_holds_a_tenant_made_a_moment_after_the_last_fetch(gap: float) -> None:
    """An SDK client finds its authorization server in the metadata: a catch-up fetch begins after the request."""
    broker, clock = Broker(), Clock()
    trust = trusting(broker, clock)

    async def scenario() -> list[str]:
        await trust.catch_up()  # the metadata served to someone else: a fetch
        broker.issuers = [GLOBEX]  # the broker makes a tenant right after
        clock.now += gap
        await trust.catch_up()
        return trust.known()

    assert asyncio.run(scenario()) == [GLOBEX]
    assert len(broker.requests) == 2
    assert clock.now >= TrustedIssuers.FIRST_SIGHTING_SPACING  # spaced: a metadata flood is a few fetches a second


def test_an_issuer_dropped_and_listed_again_is_trusted_on_its_first_token_again() -> None:
    """A pool Hydra lent to a new tenant: its issuer was trusted, dropped with the old tenant, and is listed
    again a moment before the new tenant's first token arrives."""
    hydra = "http://127.0.0.1:4"
    broker, clock = Broker(), Clock()
    trust = trusting(broker, clock)

    async def scenario() -> list[bool]:
        broker.issuers = [hydra]
        seen = [await trust.is_trusted(hydra)]  # the old tenant's token
        broker.issuers = []  # the old tenant is deleted
        clock.now += 5
        await trust.is_trusted("http://127.0.0.1:3/realms/someone-else")  # a fetch: the Hydra is dropped
        seen.append(hydra in trust.known())
        broker.issuers = [hydra]  # the new tenant borrows the same Hydra
        clock.now += 0.2
        seen.append(await trust.is_trusted(hydra))  # its first token: a fresh list, within the interval
        return seen

    assert asyncio.run(scenario()) == [True, False, True]


def test_made_up_issuers_cost_the_broker_a_few_requests_a_second_at_most() -> None:
    broker, clock = Broker(), Clock()
    trust = trusting(broker, clock)
    start = clock.now

    async def scenario() -> None:
        for n in range(100):  # a hundred made-up issuers, one after another
            clock.now += 0.01
            assert not await trust.is_trusted(f"http://127.0.0.1:3/realms/made-up-{n}")

    asyncio.run(scenario())
    assert len(broker.requests) <= (clock.now - start) / TrustedIssuers.FIRST_SIGHTING_SPACING + 1


def test_requests_waiting_on_new_issuers_share_one_fetch() -> None:
    broker, clock = Broker(), Clock()
    trust = trusting(broker, clock)

    async def scenario() -> list[bool]:
        await trust.is_trusted("http://127.0.0.1:3/realms/someone-else")
        broker.issuers = [ACME, GLOBEX]
        clock.now += 0.01
        return await asyncio.gather(*(trust.is_trusted(issuer) for issuer in (ACME, GLOBEX, ACME, GLOBEX)))

    assert asyncio.run(scenario()) == [True, True, True, True]
    assert len(broker.requests) == 2


def test_the_last_list_stays_when_the_broker_is_gone_and_master_is_never_trusted() -> None:
    broker, clock = Broker(), Clock()
    broker.issuers = [GLOBEX, "https://example.com/realms/x"]
    trust = TrustedIssuers([], broker.client(), trust_list_url=LIST_URL, refetch_interval=5, clock=clock)
    asyncio.run(trust.refresh())
    broker.up = False
    clock.now += 10
    assert asyncio.run(trust.is_trusted(GLOBEX))
    assert not asyncio.run(trust.is_trusted("http://127.0.0.1:1/realms/master"))
    assert trust.known() == [GLOBEX]  # an issuer off loopback is never taken from the list


def record(reporter: UsageReporter, n: int) -> None:
    for i in range(n):
        reporter.record(issuer=ACME, client_id=f"agent-{i}", tool="invoices.list", allowed=i % 2 == 0, status=200)


def test_usage_is_sent_in_batches_with_the_ingest_secret() -> None:
    broker = Broker()
    reporter = UsageReporter(
        broker.client(), "http://127.0.0.1:3/usage", "ingest-secret", resource=MCP, flush_interval=1
    )
    record(reporter, 3)
    assert asyncio.run(reporter.flush())
    (request,) = broker.requests
    assert request.headers["authorization"] == "Bearer ingest-secret"
    body = json.loads(request.content)
    assert body["resource"] == MCP
    events: list[dict[str, Any]] = body["events"]
    assert [e["client_id"] for e in events] == ["agent-0", "agent-1", "agent-2"]
    assert set(events[0]) == {"issuer", "client_id", "tool", "allowed", "status", "at", "source", "outside_zone"}


def test_usage_is_kept_while_the_broker_is_absent_and_delivered_when_it_returns() -> None:
    broker = Broker()
    broker.up = False
    reporter = UsageReporter(
        broker.client(), "http://127.0.0.1:3/usage", "ingest-secret", resource=MCP, flush_interval=1
    )
    record(reporter, 2)
    assert not asyncio.run(reporter.flush())
    broker.status = 503
    broker.up = True
    assert not asyncio.run(reporter.flush())
    broker.status = 202
    assert asyncio.run(reporter.flush())
    assert reporter.sent == 2


def test_recording_without_a_broker_does_nothing() -> None:
    reporter = UsageReporter(Broker().client(), None, None, resource=MCP, flush_interval=1)
    record(reporter, 5)
    assert not reporter.enabled and asyncio.run(reporter.flush())
