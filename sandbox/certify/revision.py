"""The MCP revisions certify checks, and how a request looks on each.

2025-11-25 opens a session (``initialize``, ``Mcp-Session-Id``); 2026-07-28 has no handshake and no session:
every request carries its protocol version and client capabilities in ``params._meta``, and the
``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` headers repeat what the body says. A check asks its
:class:`Wire` for a request and gets the body and the headers to send; the rows each revision requires are in
docs/mcp-auth-requirements.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sandbox.agent import mcp_http

Revision = Literal["2025-11-25", "2026-07-28"]
#: Oldest first; the default is the newest one the server accepts.
REVISIONS: tuple[Revision, ...] = ("2025-11-25", "2026-07-28")
LEGACY: Revision = "2025-11-25"
STATELESS: Revision = "2026-07-28"

PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
CLIENT_INFO = {"name": "mcp-sandbox-certify", "version": "1"}
#: The body parameter ``Mcp-Name`` repeats, by method.
NAMED_BY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


@dataclass(frozen=True)
class Request:
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class Wire:
    revision: Revision

    @property
    def stateless(self) -> bool:
        return self.revision == STATELESS

    @property
    def opening_method(self) -> str:
        """The request a client starts with, which needs nothing but a valid token."""
        return "server/discover" if self.stateless else "initialize"

    def request(self, method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> Request:
        """``method`` as this revision sends it (on 2025-11-25 a session's headers are added by the caller)."""
        params = dict(params or {})
        if not self.stateless:
            return Request(mcp_http.message(method, params, request_id), {})
        params["_meta"] = {
            PROTOCOL_VERSION_KEY: self.revision,
            CLIENT_CAPABILITIES_KEY: {},
            CLIENT_INFO_KEY: CLIENT_INFO,
            **params.get("_meta", {}),
        }
        headers = {"MCP-Protocol-Version": self.revision, "Mcp-Method": method}
        name = params.get(NAMED_BY.get(method, ""))
        if isinstance(name, str):
            headers["Mcp-Name"] = name
        return Request(mcp_http.message(method, params, request_id), headers)

    def opening(self) -> Request:
        if self.stateless:
            return self.request("server/discover")
        return Request(mcp_http.INITIALIZE, {})

    def tool_call(self, tool: str, arguments: dict[str, Any] | None = None) -> Request:
        return self.request("tools/call", {"name": tool, "arguments": arguments or {}})

    def list_tools(self) -> Request:
        return self.request("tools/list")


def supported_versions(result: dict[str, Any]) -> list[str]:
    """The versions a served ``server/discover`` result lists."""
    versions = result.get("supportedVersions")
    return [v for v in versions if isinstance(v, str)] if isinstance(versions, list) else []
