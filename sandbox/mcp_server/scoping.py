"""Per-tool scopes: which scope a ``tools/call`` needs, which tools a caller may see, and the SDK-side guard.

The HTTP layer reads the JSON-RPC body before the SDK does (:func:`read_tool_call`) and answers
403 ``insufficient_scope`` itself; :class:`ToolScopeMiddleware` runs inside the SDK as a second
line: it hides from ``tools/list`` every tool the caller may not call and refuses such calls again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, ListToolsResult

from sandbox.mcp_server.principal import Principal, principal_in
from sandbox.toolmap import ToolMap

PARSE_ERROR = -32700
INVALID_REQUEST = -32600


class MalformedRequest(Exception):
    def __init__(self, message: str, code: int = INVALID_REQUEST, request_id: Any = None) -> None:
        self.message = message
        self.code = code
        self.request_id = request_id
        super().__init__(message)


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict[str, Any]
    request_id: Any = None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")  # two readers could pick different values
        found[key] = value
    return found


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def read_tool_call(body: bytes) -> ToolCall | None:
    """The tool call in a JSON-RPC request body, None for any other message; MalformedRequest if unreadable."""
    try:
        message = json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedRequest(f"parse error: {exc}", PARSE_ERROR) from exc
    if isinstance(message, list):
        raise MalformedRequest("JSON-RPC batches are not accepted")
    if not isinstance(message, dict):
        raise MalformedRequest("a JSON-RPC message is an object")
    if message.get("method") != "tools/call":
        return None
    request_id = message.get("id")
    params = message.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("name"), str):
        raise MalformedRequest("tools/call needs params.name", INVALID_PARAMS, request_id)
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise MalformedRequest("tools/call params.arguments must be an object", INVALID_PARAMS, request_id)
    return ToolCall(params["name"], arguments, request_id)


class ToolPolicy:
    """The tool map as this server applies it, plus the base scopes every request needs."""

    def __init__(self, toolmap: ToolMap, base_scopes: tuple[str, ...] = ()) -> None:
        self.toolmap = toolmap
        self.base_scopes = base_scopes

    def knows(self, tool: str) -> bool:
        return tool in self.toolmap.tools

    def needed_for(self, call: ToolCall) -> str | None:
        """The one scope this call needs; None for an unknown tool or an environment not in the map."""
        return self.toolmap.required_scope(call.tool, call.arguments)

    def scopes_of(self, tool: str) -> list[str]:
        entry = self.toolmap.tools[tool]
        if not entry.per_environment:
            return [entry.scope]
        return [entry.scope_for(environment) for environment in self.toolmap.environments]

    def visible_to(self, principal: Principal | None) -> set[str]:
        if principal is None:
            return set()
        return {tool for tool in self.toolmap.tools if any(principal.may(s) for s in self.scopes_of(tool))}

    def challenge_scope(self, call: ToolCall | None = None) -> str:
        """The scopes a request needs, for the ``scope`` of a 401 challenge."""
        needed = self.needed_for(call) if call is not None else None
        return " ".join(dict.fromkeys([*self.base_scopes, *([needed] if needed else [])]))

    def all_scopes(self) -> list[str]:
        return self.toolmap.all_scopes()


class ToolScopeMiddleware:
    """SDK middleware: ``tools/list`` shows only callable tools; a call without its scope is refused again."""

    def __init__(self, policy: ToolPolicy) -> None:
        self.policy = policy

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        request = getattr(ctx, "request", None)
        principal = principal_in(request.scope) if request is not None else None
        if ctx.method == "tools/call":
            self._check_call(principal, ctx.params or {})
        result = await call_next(ctx)
        if ctx.method == "tools/list":
            visible = self.policy.visible_to(principal)
            if isinstance(result, ListToolsResult):
                return result.model_copy(update={"tools": [t for t in result.tools if t.name in visible]})
            if isinstance(result, dict) and isinstance(result.get("tools"), list):
                return {**result, "tools": [t for t in result["tools"] if t.get("name") in visible]}
        return result

    def _check_call(self, principal: Principal | None, params: Any) -> None:
        name = params.get("name") if isinstance(params, dict) else None
        arguments = params.get("arguments") or {} if isinstance(params, dict) else {}
        if not isinstance(name, str) or not self.policy.knows(name):
            return  # the SDK answers an unknown tool itself; no registered tool is missing from the map
        needed = self.policy.needed_for(ToolCall(name, arguments)) if isinstance(arguments, dict) else None
        if principal is None or needed is None or not principal.may(needed):
            raise MCPError(code=INVALID_PARAMS, message=f"tool {name} needs scope {needed}")
