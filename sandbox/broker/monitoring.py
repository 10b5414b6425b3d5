"""Monitoring per agent: failed token requests, denied tool calls, and scopes it has not used.

Token requests come from the IdP's records of the agent's client (tokens issued and refused; for a delegated
agent also tokens exchanged for a user and exchanges refused); tool calls from the usage reports of the MCP
servers (POST /usage).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sandbox.broker import schemas
from sandbox.broker.store import UsageEvent
from sandbox.idp.provider import EventKind, IdpEvent
from sandbox.toolmap import ToolMap

RECENT = 10
#: The records of a token issued to the agent: its own (client credentials), or one acting for a user.
TOKENS_ISSUED: tuple[EventKind, ...] = ("token_issued", "token_exchanged")
#: Every kind of record monitoring reads for an agent.
TOKEN_EVENTS: tuple[EventKind, ...] = ("token_issued", "token_refused", "token_exchanged", "token_exchange_refused")


def agent_report(
    agent: dict[str, Any],
    login_events: list[IdpEvent],
    usage: list[UsageEvent],
    tools: ToolMap,
    *,
    now: datetime,
    period: timedelta,
) -> schemas.MonitoringReport:
    failures = [e for e in login_events if e.kind == "token_refused"]
    issued = [e for e in login_events if e.kind == "token_issued"]
    denied = [u for u in usage if not u.allowed]
    exchanged = [e for e in login_events if e.kind == "token_exchanged"]
    refused = [e for e in login_events if e.kind == "token_exchange_refused"]
    return schemas.MonitoringReport(
        agent_id=agent["id"],
        name=agent["name"],
        status=agent["status"],
        tokens_issued=len(issued),
        failed_token_requests=len(failures),
        recent_failed_token_requests=[
            schemas.FailedTokenRequest(at=e.at.isoformat(), error=e.error) for e in failures[:RECENT]
        ],
        tool_calls=len(usage),
        denied_tool_calls=len(denied),
        outside_zone_calls=sum(1 for u in denied if u.outside_zone),
        recent_denied_tool_calls=[
            schemas.DeniedToolCall(
                at=u.at.isoformat(),
                tool=u.tool,
                status=u.status,
                server=u.resource,
                source=u.source if u.outside_zone else None,
                outside_zone=bool(u.outside_zone),
            )
            for u in sorted(denied, key=lambda u: u.at, reverse=True)[:RECENT]
        ],
        unused_scopes=unused_scopes(agent, usage, tools, since=now - period),
        unused_scopes_period_days=period.days,
        token_exchanges=len(exchanged),
        failed_token_exchanges=len(refused),
        recent_token_exchanges=[
            schemas.TokenExchangeSeen(at=e.at.isoformat(), user=e.username, user_id=e.user_id, scopes=sorted(e.scopes))
            for e in exchanged[:RECENT]
        ],
        recent_failed_token_exchanges=[
            schemas.FailedTokenExchange(at=e.at.isoformat(), error=e.error, reason=e.reason) for e in refused[:RECENT]
        ],
    )


def unused_scopes(agent: dict[str, Any], usage: list[UsageEvent], tools: ToolMap, *, since: datetime) -> list[str]:
    """The agent's scopes that no allowed tool call needed since ``since``: candidates for removal."""
    used = set()
    for event in usage:
        if event.allowed and event.at >= since:
            scope = tools.required_scope(event.tool, {"environment": agent["environment"]})
            if scope:
                used.add(scope)
    return sorted(set(agent["scopes"]) - used)
