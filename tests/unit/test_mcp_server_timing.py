"""The reference server tells a served caller where its request's time went (``Server-Timing``), and a refused
caller nothing. The whole app in-process, tokens signed by a fake issuer; the durations are not judged, only that
each step is there, in order, as a number."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp_fakes import FakeIssuer, served_app
from starlette.testclient import TestClient

from sandbox.certify.revision import STATELESS, Wire
from sandbox.mcp_server.timing import Steps, parse_server_timing

STEPS = ["read", "verify", "authorize", "sdk"]


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def client(tmp_path: Path, issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with served_app(tmp_path, issuer, monkeypatch) as served:
        yield served


def call(client: TestClient, token: str | None) -> httpx.Response:
    params = {"name": "analytics.query", "arguments": {"query": "daily_active_users", "days": 1}}
    request = Wire(STATELESS).request("tools/call", params)
    headers = {**request.headers, "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/mcp", json=request.body, headers=headers)


def test_a_served_call_says_each_step_of_the_server(client: TestClient, issuer: FakeIssuer) -> None:
    response = call(client, issuer.token(scope="basic mcp:tool:analytics.read"))
    assert response.status_code == 200, response.text
    steps = parse_server_timing(response.headers["server-timing"])
    assert list(steps) == STEPS
    assert all(ms >= 0 for ms in steps.values())


@pytest.mark.parametrize("scope", [None, "basic"], ids=["no token", "tool scope missing"])
def test_a_refused_call_learns_nothing_of_the_checks_timing(
    client: TestClient, issuer: FakeIssuer, scope: str | None
) -> None:
    response = call(client, issuer.token(scope=scope) if scope else None)
    assert response.status_code in (401, 403)
    assert "server-timing" not in response.headers


def test_the_header_reads_back_as_written() -> None:
    steps = Steps()
    for name in STEPS:
        steps.end(name)
    name, value = steps.header()
    assert name == b"server-timing"
    assert parse_server_timing(value.decode()) == {k: round(v, 3) for k, v in steps.durations.items()}
    assert parse_server_timing('cache;desc="hit", db;dur=2.5, bad;dur=x') == {"db": 2.5}
