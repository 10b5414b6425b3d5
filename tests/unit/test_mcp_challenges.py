"""The refusals: RFC 6750 challenges with resource_metadata and the scope the request needs."""

from __future__ import annotations

import json

from sandbox.mcp_server import challenges

METADATA = "http://127.0.0.1:2/.well-known/oauth-protected-resource/mcp"


def test_no_token_gets_a_challenge_without_error_code_but_with_metadata_and_scope() -> None:
    response = challenges.unauthorized(resource_metadata=METADATA, scope="basic mcp:tool:invoices.read")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer scope="basic mcp:tool:invoices.read", resource_metadata="{METADATA}"'
    )


def test_an_invalid_token_gets_invalid_token_with_a_description() -> None:
    response = challenges.unauthorized(resource_metadata=METADATA, scope="basic", description="the token has expired")
    assert response.status_code == 401
    header = response.headers["www-authenticate"]
    assert header.startswith('Bearer error="invalid_token", error_description="the token has expired", scope="basic"')
    assert json.loads(response.body)["error"] == "invalid_token"


def test_insufficient_scope_is_403_naming_the_scope_needed() -> None:
    response = challenges.forbidden(
        resource_metadata=METADATA, scope="mcp:tool:invoices.write", description="invoices.create needs it"
    )
    assert response.status_code == 403
    header = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in header and 'scope="mcp:tool:invoices.write"' in header
    assert f'resource_metadata="{METADATA}"' in header
    assert json.loads(response.body)["scope"] == "mcp:tool:invoices.write"


def test_descriptions_cannot_break_out_of_their_quotes() -> None:
    header = challenges.www_authenticate(
        resource_metadata=METADATA, error="invalid_token", description='bad "quote" \\ and\nnewline ü'
    )
    description = header.split("error_description=")[1].split(", resource_metadata")[0]
    assert description.count('"') == 2 and "\\" not in description and "\n" not in description


def test_unavailable_is_503_with_retry_after_and_never_a_challenge() -> None:
    response = challenges.unavailable("keys unreachable")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "www-authenticate" not in response.headers


def test_a_malformed_request_is_400_with_a_json_rpc_error() -> None:
    response = challenges.bad_request("parse error", code=-32700, request_id=7)
    assert response.status_code == 400
    assert json.loads(response.body) == {"jsonrpc": "2.0", "id": 7, "error": {"code": -32700, "message": "parse error"}}
