"""Monitoring of one agent from the IdP's records and usage reports: token exchanges for users count apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sandbox.broker.monitoring import agent_report
from sandbox.config import load_settings
from sandbox.idp import IdpEvent
from sandbox.toolmap import ToolMap

NOW = datetime(2026, 1, 1, tzinfo=UTC)
AGENT = {
    "id": "a1",
    "name": "helper",
    "status": "active",
    "environment": "staging",
    "scopes": ["mcp:tool:invoices.read"],
}


def test_token_exchanges_are_reported_with_the_user_they_acted_for() -> None:
    second = timedelta(seconds=1)
    events = [
        IdpEvent("token_exchanged", NOW, "c1", user_id="u1", username="dana", scopes=("b", "a")),
        IdpEvent("token_exchange_refused", NOW - second, "c1", error="access_denied", reason="aud"),
        IdpEvent("token_issued", NOW - 2 * second, "c1"),
        IdpEvent("token_refused", NOW - 3 * second, "c1", error="invalid_client_credentials"),
    ]
    tools = ToolMap.load(load_settings().tools_file)
    report = agent_report(AGENT, events, [], tools, now=NOW, period=timedelta(days=30)).model_dump()
    assert (report["tokens_issued"], report["failed_token_requests"]) == (1, 1)
    assert (report["token_exchanges"], report["failed_token_exchanges"]) == (1, 1)
    assert report["recent_token_exchanges"] == [
        {"at": NOW.isoformat(), "user": "dana", "user_id": "u1", "scopes": ["a", "b"]}
    ]
    assert report["recent_failed_token_exchanges"][0]["error"] == "access_denied"
