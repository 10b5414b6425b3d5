"""The routing headers of 2026-07-28 (``Mcp-Method``, ``Mcp-Name``) held to the body before anything is decided.

A proxy may route, throttle or authorise on the headers while the server runs what the body says; so a
request whose headers and body disagree is refused (400, ``HeaderMismatch``) before its scope is looked at,
and its tool never runs. Requests of the handshake revisions (2025-11-25 and before) carry no such headers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    decode_header_value,
)
from mcp_types import HEADER_MISMATCH
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers


@dataclass(frozen=True)
class Mismatch:
    message: str
    request_id: Any
    code: int = HEADER_MISMATCH


def routing_mismatch(headers: Headers, body: bytes) -> Mismatch | None:
    """Why the routing headers disagree with the JSON-RPC request in ``body``; None when they agree or do not
    apply (a handshake-revision request, or a body that is no single request)."""
    version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
    if version is None or version in HANDSHAKE_PROTOCOL_VERSIONS:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None  # the JSON-RPC layer answers a body that is not JSON
    if not isinstance(message, dict) or "method" not in message:
        return None
    method, request_id = message["method"], message.get("id")
    if headers.get(MCP_METHOD_HEADER) != method:
        return Mismatch(f"{MCP_METHOD_HEADER} does not match the body's method", request_id)
    name_key = NAME_BEARING_METHODS.get(method)
    params = message.get("params")
    named = params.get(name_key) if name_key is not None and isinstance(params, dict) else None
    if named is not None and decode_header_value(headers.get(MCP_NAME_HEADER)) != named:
        return Mismatch(f"{MCP_NAME_HEADER} does not match the body's {name_key}", request_id)
    return None
