"""A request whose fields do not validate is answered like any other refusal: cause, fix, and the field in words."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.admin.client import BrokerClient, BrokerRefused

from .conftest import Broker, Tenant


def _agent(**changes: Any) -> dict[str, Any]:
    return {"name": "field-errors", "owner": "o", "role": "log-reader", "environment": "staging", **changes}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (_agent(mode="weird"), "mode", "expected 'autonomous' or 'delegated'"),
        (_agent(credential_type="pgp"), "credential_type", "expected 'client_secret' or 'private_key_jwt'"),
        (_agent(metadata=[1]), "metadata", "valid dictionary"),
        (_agent(token_lifetime=-1), "token_lifetime", "greater than 0"),
        ({k: v for k, v in _agent().items() if k != "name"}, "name", "name is missing"),
    ],
)
def test_a_bad_field_is_named_with_what_is_allowed(
    broker: Broker, tenant: Tenant, body: dict[str, Any], field: str, words: str
) -> None:
    answer = broker.call("POST", f"/tenants/{tenant.name}/agents", tenant.admins["alice"].token(), body)
    assert answer.status_code == 422, answer.text
    refusal = answer.json()
    assert refusal["error"] == "invalid_request"
    assert refusal["detail"] == f"{refusal['cause']}; {refusal['fix']}"
    assert words in refusal["cause"] and field in refusal["fix"]
    assert [problem["field"] for problem in refusal["fields"]] == [field]
    assert "'loc'" not in answer.text and "literal_error" not in answer.text


def test_query_and_nested_fields_are_named_where_they_are(broker: Broker, tenant: Tenant) -> None:
    token = tenant.admins["alice"].token()
    listed = broker.call("GET", f"/tenants/{tenant.name}/agents", token, status="bogus")
    assert listed.status_code == 422, listed.text
    assert listed.json()["fields"][0]["field"] == "status (query parameter)"
    assert "'dormant'" in listed.json()["fields"][0]["expected"]
    agent = broker.provision(tenant, token, role="log-reader")["agent"]["id"]
    rotated = broker.call("POST", f"/tenants/{tenant.name}/agents/{agent}/rotate", token, {"grace_seconds": -5})
    assert rotated.status_code == 422 and rotated.json()["fields"][0]["field"] == "grace_seconds", rotated.text
    rotated = broker.call("POST", f"/tenants/{tenant.name}/agents/{agent}/rotate", token, {"grace_seconds": 5})
    assert rotated.status_code == 200 and rotated.json()["credential"]["issuer"] == tenant.issuer, rotated.text
    reviewed = broker.call("POST", f"/tenants/{tenant.name}/agents/{agent}/review", token, {"decision": "maybe"})
    assert reviewed.json()["fields"][0]["expected"] == "expected 'keep' or 'revoke'", reviewed.text


def test_revoke_needs_no_body(broker: Broker, tenant: Tenant) -> None:
    token = tenant.admins["alice"].token()
    agent = broker.provision(tenant, token, role="log-reader")["agent"]["id"]
    revoked = broker.http.post(f"/revoke/{agent}", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["agent"]["status"] == "revoked"
    events = {event["server"]: event for event in revoked.json()["events"]}
    quiet = events[broker.settings.mcp_server("jwt").url]  # registered without an event endpoint, by design
    assert quiet["error"] is None and "takes no revocation events" in quiet["note"], quiet
    again = broker.http.post(
        f"/tenants/{tenant.name}/agents/{agent}/revoke", headers={"Authorization": f"Bearer {token}"}
    )
    assert again.status_code == 200 and again.json()["already_revoked"] is True, again.text


def test_the_client_shows_the_refusal_in_words(broker: Broker, tenant: Tenant) -> None:
    with BrokerClient(broker.url, tenant.admins["alice"].token()) as client, pytest.raises(BrokerRefused) as refused:
        client.post(f"/tenants/{tenant.name}/agents", _agent(mode="weird"))
    line = str(refused.value)
    assert line.startswith("broker refused (422 invalid_request): mode is 'weird'")
    assert "correct mode and send the request again" in line and "\n" not in line
