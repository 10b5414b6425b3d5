"""analytics.export, the reference server's multi-round-trip tool (MCP 2026-07-28): it asks which format to export
in with an InputRequiredResult whose requestState the SDK seals; the retry is carried out only for the caller it
was minted for, untouched and within its lifetime. The whole app in-process, tokens signed by a fake issuer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.server import request_state as sdk_request_state
from mcp_fakes import FakeIssuer, served_app
from starlette.testclient import TestClient

from sandbox.certify.checks.request_state import ANSWERS, completed, tampered
from sandbox.certify.revision import CLIENT_CAPABILITIES_KEY, LEGACY, STATELESS, Wire
from sandbox.mcp_server.tools import EXPORT_QUESTION

SCOPES = "basic mcp:tool:analytics.export"
ARGUMENTS = {"query": "daily_active_users", "days": 2}
ANSWER = {EXPORT_QUESTION: {"action": "accept", "content": {"format": "csv"}}}
TTL = 5.0


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def client(tmp_path: Path, issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with served_app(tmp_path, issuer, monkeypatch, mcp_request_state_ttl=TTL) as served:
        yield served


def call(
    client: TestClient,
    token: str,
    *,
    capabilities: dict[str, Any] | None = None,
    state: str | None = None,
    responses: dict[str, Any] | None = None,
) -> httpx.Response:
    params: dict[str, Any] = {"name": "analytics.export", "arguments": ARGUMENTS}
    if capabilities is not None:
        params["_meta"] = {CLIENT_CAPABILITIES_KEY: capabilities}
    if state is not None:
        params["requestState"] = state
    if responses is not None:
        params["inputResponses"] = responses
    request = Wire(STATELESS).request("tools/call", params)
    headers = {**request.headers, "Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    return client.post("/mcp", json=request.body, headers=headers)


def result(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "result" in body, body
    found: dict[str, Any] = body["result"]
    return found


def asked(client: TestClient, token: str) -> str:
    first = result(call(client, token, capabilities=ANSWERS))
    assert first["resultType"] == "input_required"
    question = first["inputRequests"][EXPORT_QUESTION]
    assert question["method"] == "elicitation/create" and question["params"]["mode"] == "form"
    assert question["params"]["requestedSchema"]["properties"]["format"]["enum"] == ["csv", "json"]
    state: str = first["requestState"]
    assert "asked" not in state  # sealed: the client cannot read it
    return state


def test_the_caller_who_was_asked_gets_the_export_in_the_format_it_chose(
    client: TestClient, issuer: FakeIssuer
) -> None:
    token = issuer.token(scope=SCOPES)
    state = asked(client, token)
    done = call(client, token, capabilities=ANSWERS, state=state, responses=ANSWER)
    assert completed(done)
    content = result(done)["structuredContent"]
    assert content["format"] == "csv" and content["export"].splitlines()[0] == "day,active_users"
    assert len(content["export"].splitlines()) == 1 + ARGUMENTS["days"]


def test_a_tampered_foreign_or_lapsed_state_is_refused(
    client: TestClient, issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = issuer.token(scope=SCOPES)
    other = issuer.token(scope=SCOPES, sub="service-account-2", azp="agent-2", client_id="agent-2")
    refusals = {
        "tampered": call(client, owner, capabilities=ANSWERS, state=tampered(asked(client, owner)), responses=ANSWER),
        "another principal": call(client, other, capabilities=ANSWERS, state=asked(client, owner), responses=ANSWER),
    }
    lapsing = asked(client, owner)
    now = sdk_request_state.time.time()
    monkeypatch.setattr(sdk_request_state.time, "time", lambda: now + TTL + 1)
    refusals["lapsed"] = call(client, owner, capabilities=ANSWERS, state=lapsing, responses=ANSWER)
    for why, response in refusals.items():
        assert not completed(response), why
        assert response.json()["error"]["message"] == "Invalid or expired requestState", why


def test_without_the_state_the_answers_alone_are_asked_again(client: TestClient, issuer: FakeIssuer) -> None:
    token = issuer.token(scope=SCOPES)
    again = result(call(client, token, capabilities=ANSWERS, responses=ANSWER))
    assert again["resultType"] == "input_required"


def test_a_client_that_cannot_answer_is_told_so_not_asked(client: TestClient, issuer: FakeIssuer) -> None:
    token = issuer.token(scope=SCOPES)
    answer = result(call(client, token))
    assert answer["isError"] and "declares elicitation" in json.dumps(answer)


def test_on_2025_11_25_the_tool_says_it_needs_the_newer_revision(client: TestClient, issuer: FakeIssuer) -> None:
    token = issuer.token(scope=SCOPES)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    opened = client.post("/mcp", json=Wire(LEGACY).opening().body, headers=headers)
    assert opened.status_code == 200, opened.text
    session = {**headers, "Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY}
    client.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    answer = client.post("/mcp", json=Wire(LEGACY).tool_call("analytics.export", ARGUMENTS).body, headers=session)
    found = result(answer)
    assert found["isError"] and "needs MCP 2026-07-28" in json.dumps(found)
