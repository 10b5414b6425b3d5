"""Raw MCP over Streamable HTTP: JSON-RPC messages posted as they are, so every status and header is visible.

An SDK client hides what certify must see (a 401's challenge, a 404 for a session, a 400 instead of a 401),
so requests are built here by hand. Answers may be JSON or a short SSE stream; :func:`rpc_message` reads both.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from sandbox.agent.dpop import DPoPKey

PROTOCOL_VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


class ProbeError(Exception):
    """A request that had to succeed for the probe to go on did not: the response says why."""

    def __init__(self, what: str, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"{what}: HTTP {response.status_code}")


def message(method: str, params: dict[str, Any] | None = None, request_id: int | None = 1) -> dict[str, Any]:
    """A JSON-RPC request (a notification when ``request_id`` is None)."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        body["id"] = request_id
    if params is not None:
        body["params"] = params
    return body


def initialize(client: str, request_id: int = 1) -> dict[str, Any]:
    """The ``initialize`` request of a client named ``client``, at :data:`PROTOCOL_VERSION`."""
    params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": client, "version": "1"}}
    return message("initialize", params, request_id)


INITIALIZE = initialize("mcp-sandbox-certify")
INITIALIZED = message("notifications/initialized", request_id=None)
LIST_TOOLS = message("tools/list", {})


def tool_call(tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return message("tools/call", {"name": tool, "arguments": arguments or {}})


def post(
    url: str,
    body: Any,
    *,
    token: str | None = None,
    session: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    client: httpx.Client | None = None,
    dpop: DPoPKey | None = None,
) -> httpx.Response:
    """POST one message (a dict, or raw bytes as given) with the headers an MCP client sends.

    ``dpop``: the token is bound to this key, so it goes as ``Authorization: DPoP`` with a fresh proof.
    """
    sent = {"Content-Type": "application/json", "Accept": ACCEPT}
    if token is not None:
        sent.update(dpop.headers("POST", url, token) if dpop is not None else {"Authorization": f"Bearer {token}"})
    if session is not None:
        sent["Mcp-Session-Id"] = session
        sent["MCP-Protocol-Version"] = PROTOCOL_VERSION
    sent.update(headers or {})
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    if client is None:
        return httpx.post(url, content=content, headers=sent, params=params, timeout=30)
    return client.post(url, content=content, headers=sent, params=params)


def open_session(
    url: str, token: str, *, client: httpx.Client | None = None, dpop: DPoPKey | None = None
) -> str | None:
    """``initialize`` then ``notifications/initialized``; the session id the server assigned (None: stateless)."""
    response = post(url, INITIALIZE, token=token, client=client, dpop=dpop)
    if response.status_code != 200:
        raise ProbeError("initialize was refused", response)
    session = response.headers.get("mcp-session-id")
    acknowledged = post(url, INITIALIZED, token=token, session=session, client=client, dpop=dpop)
    if not 200 <= acknowledged.status_code < 300:
        raise ProbeError("notifications/initialized was refused", acknowledged)
    return session


def call_tool(
    url: str,
    token: str,
    session: str | None,
    tool: str,
    arguments: dict[str, Any] | None = None,
    *,
    client: httpx.Client | None = None,
) -> httpx.Response:
    return post(url, tool_call(tool, arguments), token=token, session=session, client=client)


def rpc_message(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON-RPC response in an answer (JSON body, or the first response event of an SSE stream)."""
    content_type = response.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            value = response.json()
            return value if isinstance(value, dict) else None
        if content_type.startswith("text/event-stream"):
            for data in _sse_data(response.text):
                value = json.loads(data)
                if isinstance(value, dict) and ("result" in value or "error" in value):
                    return value
    except ValueError:
        return None
    return None


def _sse_data(text: str) -> list[str]:
    """The ``data`` of each event of an SSE stream (lines joined as the spec says)."""
    events, lines = [], []
    for line in text.splitlines():
        if not line:
            if lines:
                events.append("\n".join(lines))
            lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        events.append("\n".join(lines))
    return events


def served(response: httpx.Response) -> bool:
    """The server processed the request: HTTP 200 with a JSON-RPC result (a tool's own error included)."""
    found = rpc_message(response) if response.status_code == 200 else None
    return found is not None and "result" in found


def tool_error(response: httpx.Response) -> bool:
    """A served tool call whose result says the tool itself failed (``isError``)."""
    found = rpc_message(response) or {}
    result = found.get("result")
    return isinstance(result, dict) and bool(result.get("isError"))


def tool_names(response: httpx.Response) -> set[str]:
    """The tool names of a served ``tools/list``."""
    result = (rpc_message(response) or {}).get("result")
    tools = result.get("tools") if isinstance(result, dict) else None
    return {t["name"] for t in tools or [] if isinstance(t, dict) and isinstance(t.get("name"), str)}
