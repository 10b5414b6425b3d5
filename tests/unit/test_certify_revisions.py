"""How certify shapes a request on each MCP revision, and how the reference server holds 2026-07-28's routing
headers to the body."""

from __future__ import annotations

import json

import pytest
from starlette.datastructures import Headers

from sandbox.certify.model import mcp, mcp_security
from sandbox.certify.revision import CLIENT_CAPABILITIES_KEY, PROTOCOL_VERSION_KEY, Wire
from sandbox.mcp_server.routing import routing_mismatch


def test_2026_07_28_requests_carry_the_envelope_and_the_routing_headers() -> None:
    wire = Wire("2026-07-28")
    call = wire.tool_call("invoices.list", {"limit": 1})
    assert call.body["method"] == "tools/call" and call.body["params"]["name"] == "invoices.list"
    meta = call.body["params"]["_meta"]
    assert meta[PROTOCOL_VERSION_KEY] == "2026-07-28" and meta[CLIENT_CAPABILITIES_KEY] == {}
    assert call.headers == {
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "invoices.list",
    }
    assert wire.opening().body["method"] == "server/discover" and "Mcp-Name" not in wire.opening().headers
    assert wire.stateless and wire.opening_method == "server/discover"


def test_2025_11_25_requests_are_plain_json_rpc_and_open_with_initialize() -> None:
    wire = Wire("2025-11-25")
    call = wire.tool_call("invoices.list")
    assert call.headers == {} and "_meta" not in call.body["params"]
    assert wire.opening().body["method"] == "initialize" and not wire.stateless


def test_references_are_cited_in_the_runs_revision_and_moved_sections_on_their_new_page() -> None:
    moved = mcp(
        "Protected Resource Metadata Discovery Requirements", "protected-resource-metadata-discovery-requirements"
    )
    assert moved.at("2025-11-25").url.endswith(
        "/2025-11-25/basic/authorization#protected-resource-metadata-discovery-requirements"
    )
    assert "/2026-07-28/basic/authorization/authorization-server-discovery#" in moved.at("2026-07-28").url
    assert mcp_security("Token Passthrough", "token-passthrough").at("2026-07-28").id.startswith("MCP 2026-07-28 ")


def headers(**values: str) -> Headers:
    return Headers({key.replace("_", "-"): value for key, value in values.items()})


CALL = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "deploy.trigger"}}).encode()
MODERN = {"mcp_protocol_version": "2026-07-28"}


@pytest.mark.parametrize(
    ("sent", "refused"),
    [
        ({**MODERN, "mcp_method": "tools/call", "mcp_name": "deploy.trigger"}, None),
        ({**MODERN, "mcp_method": "tools/call", "mcp_name": "deploy.status"}, "Mcp-Name"),
        ({**MODERN, "mcp_method": "tools/list", "mcp_name": "deploy.trigger"}, "Mcp-Method"),
        ({**MODERN, "mcp_name": "deploy.trigger"}, "Mcp-Method"),
        ({**MODERN, "mcp_method": "tools/call"}, "Mcp-Name"),
        ({"mcp_protocol_version": "2025-11-25", "mcp_name": "deploy.status"}, None),  # no routing headers then
        ({}, None),
    ],
)
def test_the_routing_headers_must_equal_the_body_on_2026_07_28(sent: dict[str, str], refused: str | None) -> None:
    found = routing_mismatch(headers(**sent), CALL)
    if refused is None:
        assert found is None
    else:
        assert found is not None and found.message.lower().startswith(refused.lower())
        assert found.code == -32020 and found.request_id == 7


def test_a_base64_mcp_name_is_compared_decoded() -> None:
    encoded = "=?base64?ZGVwbG95LnRyaWdnZXI=?="  # deploy.trigger
    assert routing_mismatch(headers(**MODERN, mcp_method="tools/call", mcp_name=encoded), CALL) is None
