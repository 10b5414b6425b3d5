"""Keycloak's event log in the broker's terms: each event type it records for a token request becomes one kind of
:class:`IdpEvent`, and a type the broker has no kind for is ignored (a stand-in for python-keycloak's admin client)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

from sandbox.idp import Consent, EventKind, IdpEvent
from sandbox.idp.keycloak import EVENT_TYPES, KeycloakAdapter, idp_event

AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
MILLIS = 1767323045678  # AT in milliseconds since the epoch


def test_every_kind_has_its_own_keycloak_type() -> None:
    assert set(EVENT_TYPES) == set(get_args(EventKind))
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)


def test_a_token_exchange_keeps_the_user_and_the_scopes() -> None:
    raw = {
        "time": MILLIS,
        "type": "TOKEN_EXCHANGE",
        "realmId": "r-1",
        "clientId": "agent-helper",
        "userId": "u-1",
        "ipAddress": "127.0.0.1",
        "details": {"username": "dana", "scope": "mcp:tool:invoices.read openid", "grant_type": "token-exchange"},
    }
    assert idp_event(raw) == IdpEvent(
        kind="token_exchanged",
        at=AT,
        client_id="agent-helper",
        user_id="u-1",
        username="dana",
        scopes=("mcp:tool:invoices.read", "openid"),
    )


def test_refusals_keep_keycloaks_error_and_reason() -> None:
    login = {"time": MILLIS, "type": "CLIENT_LOGIN_ERROR", "clientId": "agent-x", "error": "invalid_client"}
    refused = idp_event(login)
    assert refused == IdpEvent("token_refused", AT, "agent-x", error="invalid_client")
    exchange = {"type": "TOKEN_EXCHANGE_ERROR", "time": MILLIS, "clientId": "agent-x", "error": "access_denied"}
    refused = idp_event({**exchange, "details": {"reason": "client is not within the token audience"}})
    assert refused is not None and refused.kind == "token_exchange_refused"
    assert (refused.error, refused.reason) == ("access_denied", "client is not within the token audience")


def test_a_token_issued_has_no_user_scopes_or_error() -> None:
    issued = idp_event({"time": MILLIS, "type": "CLIENT_LOGIN", "clientId": "agent-x", "userId": "", "details": {}})
    assert issued == IdpEvent("token_issued", AT, "agent-x")


def test_an_unknown_type_or_an_event_without_client_or_time_is_ignored() -> None:
    assert idp_event({"time": MILLIS, "type": "LOGOUT", "clientId": "agent-x"}) is None
    assert idp_event({"time": MILLIS, "clientId": "agent-x"}) is None
    assert idp_event({"type": "CLIENT_LOGIN", "clientId": "agent-x"}) is None
    assert idp_event({"time": str(MILLIS), "type": "CLIENT_LOGIN", "clientId": "agent-x"}) is None
    assert idp_event({"time": MILLIS, "type": "CLIENT_LOGIN"}) is None


class EventLog:
    """python-keycloak's admin client of one realm: answers every events query with ``answer``, keeps the query."""

    def __init__(self, answer: list[dict[str, Any]]) -> None:
        self.answer = answer
        self.queries: list[dict[str, Any]] = []

    async def a_get_events(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        self.queries.append(query)
        return self.answer


async def test_the_adapter_asks_for_keycloaks_types_and_answers_in_kinds() -> None:
    log = EventLog(
        [
            {"time": MILLIS, "type": "TOKEN_EXCHANGE", "clientId": "agent-x", "userId": "u-1"},
            {"time": MILLIS - 1, "type": "SOMETHING_NEWER", "clientId": "agent-x"},
            {"time": MILLIS - 2, "type": "CLIENT_LOGIN", "clientId": "agent-x"},
        ]
    )
    adapter = KeycloakAdapter("http://127.0.0.1:9", "sandbox-admin", "not-a-secret")
    adapter.admin = lambda realm: log  # type: ignore[method-assign,assignment,return-value]
    found = await adapter.client_events("acme", "agent-x", ("token_issued", "token_exchanged"), maximum=7)
    assert [(e.kind, e.user_id) for e in found] == [("token_exchanged", "u-1"), ("token_issued", None)]
    await adapter.tenant_events("acme", ("token_refused",), 3)
    assert log.queries == [
        {"client": "agent-x", "type": ["CLIENT_LOGIN", "TOKEN_EXCHANGE"], "max": 7},
        {"type": ["CLIENT_LOGIN_ERROR"], "max": 3},
    ]


class ConsentLog:
    """python-keycloak's admin client of one realm: a user's consents, as Keycloak's Admin API lists them."""

    async def a_user_consents(self, user_id: str) -> list[dict[str, Any]]:
        return [
            {
                "clientId": "sandbox-user-login",
                "grantedClientScopes": ["delegate:agent-x", "openid"],
                "createdDate": MILLIS,
            },
            {"clientId": "other"},
        ]


async def test_a_users_consents_are_in_the_brokers_terms() -> None:
    adapter = KeycloakAdapter("http://127.0.0.1:9", "sandbox-admin", "not-a-secret")
    adapter.admin = lambda realm: ConsentLog()  # type: ignore[method-assign,assignment,return-value]
    assert await adapter.user_consents("acme", "u-1") == [
        Consent("sandbox-user-login", ("delegate:agent-x", "openid"), AT),
        Consent("other", (), datetime.fromtimestamp(0, tz=UTC)),
    ]
