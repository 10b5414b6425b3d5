"""Monitoring per agent: failed token requests, denied tool calls, and scopes it has not used.

Token requests come from Keycloak's events of the agent's client (CLIENT_LOGIN, CLIENT_LOGIN_ERROR; for a
delegated agent also TOKEN_EXCHANGE, TOKEN_EXCHANGE_ERROR: a token for a user); tool calls from the usage reports
of the MCP servers (POST /usage).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.broker.store import UsageEvent
from sandbox.toolmap import ToolMap

RECENT = 10
#: Keycloak event types of a token issued to the agent: its own (client credentials), or one acting for a user.
TOKENS_ISSUED = ("CLIENT_LOGIN", "TOKEN_EXCHANGE")
#: Every Keycloak event type monitoring reads for an agent.
TOKEN_EVENTS = ("CLIENT_LOGIN", "CLIENT_LOGIN_ERROR", "TOKEN_EXCHANGE", "TOKEN_EXCHANGE_ERROR")


def agent_report(
    agent: dict[str, Any],
    login_events: list[dict[str, Any]],
    usage: list[UsageEvent],
    tools: ToolMap,
    *,
    now: datetime,
    period: timedelta,
) -> dict[str, Any]:
    failures = [e for e in login_events if e.get("type") == "CLIENT_LOGIN_ERROR"]
    issued = [e for e in login_events if e.get("type") == "CLIENT_LOGIN"]
    denied = [u for u in usage if not u.allowed]
    exchanged = [e for e in login_events if e.get("type") == "TOKEN_EXCHANGE"]
    refused = [e for e in login_events if e.get("type") == "TOKEN_EXCHANGE_ERROR"]
    return {
        "agent_id": agent["id"],
        "name": agent["name"],
        "status": agent["status"],
        "tokens_issued": len(issued),
        "failed_token_requests": len(failures),
        "recent_failed_token_requests": [
            {"at": _millis(e["time"]), "error": e.get("error")} for e in failures[:RECENT]
        ],
        "tool_calls": len(usage),
        "denied_tool_calls": len(denied),
        "outside_zone_calls": sum(1 for u in denied if u.outside_zone),
        "recent_denied_tool_calls": [
            {
                "at": u.at.isoformat(),
                "tool": u.tool,
                "status": u.status,
                "server": u.resource,
                **({"source": u.source, "outside_zone": True} if u.outside_zone else {}),
            }
            for u in sorted(denied, key=lambda u: u.at, reverse=True)[:RECENT]
        ],
        "unused_scopes": unused_scopes(agent, usage, tools, since=now - period),
        "unused_scopes_period_days": period.days,
        "token_exchanges": len(exchanged),
        "failed_token_exchanges": len(refused),
        "recent_token_exchanges": [
            {
                "at": _millis(e["time"]),
                "user": _details(e).get("username"),
                "user_id": e.get("userId"),
                "scopes": sorted(str(_details(e).get("scope") or "").split()),
            }
            for e in exchanged[:RECENT]
        ],
        "recent_failed_token_exchanges": [
            {"at": _millis(e["time"]), "error": e.get("error"), "reason": _details(e).get("reason")}
            for e in refused[:RECENT]
        ],
    }


def unused_scopes(agent: dict[str, Any], usage: list[UsageEvent], tools: ToolMap, *, since: datetime) -> list[str]:
    """The agent's scopes that no allowed tool call needed since ``since``: candidates for removal."""
    used = set()
    for event in usage:
        if event.allowed and event.at >= since:
            scope = tools.required_scope(event.tool, {"environment": agent["environment"]})
            if scope:
                used.add(scope)
    return sorted(set(agent["scopes"]) - used)


def _details(event: dict[str, Any]) -> dict[str, Any]:
    return event.get("details") or {}


def _millis(value: int) -> str:
    return datetime.fromtimestamp(value / 1000, tz=UTC).isoformat()
