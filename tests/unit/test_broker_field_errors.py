"""The broker's words for fields that do not validate (the real request models; no server)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sandbox.broker import schemas
from sandbox.broker.validation import invalid_request_body


def _errors(model: type[Any], body: Any) -> list[Any]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(body)
    return [{**error, "loc": ("body", *error["loc"])} for error in raised.value.errors()]


def test_each_bad_field_is_named_with_what_is_allowed() -> None:
    body = {"name": "a", "owner": "o", "role": "r", "environment": "staging", "mode": "weird", "metadata": [1]}
    answer = invalid_request_body(_errors(schemas.ProvisionIn, body))
    assert answer["error"] == "invalid_request"
    assert [f["field"] for f in answer["fields"]] == ["mode", "metadata"]
    assert answer["fields"][0] == {
        "field": "mode",
        "problem": "mode is 'weird'",
        "expected": "expected 'autonomous' or 'delegated'",
    }
    assert answer["fix"] == "correct mode, metadata and send the request again"
    assert answer["detail"] == f"{answer['cause']}; {answer['fix']}"


def test_nested_query_and_missing_fields() -> None:
    nested = invalid_request_body(_errors(schemas.ClockAdvanceIn, {"advance": {"days": -1}}))
    assert nested["fields"][0]["field"] == "advance.days"
    query = invalid_request_body([{"type": "literal_error", "loc": ("query", "status"), "msg": "m", "input": "x"}])
    assert query["fields"][0]["field"] == "status (query parameter)"
    no_body = invalid_request_body([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    assert no_body["fields"][0] == {
        "field": "(body)",
        "problem": "the request has no JSON body",
        "expected": "send a JSON object",
    }


def test_a_huge_input_is_shortened() -> None:
    answer = invalid_request_body(_errors(schemas.ReviewIn, {"decision": "x" * 5000}))
    assert len(answer["detail"]) < 400
