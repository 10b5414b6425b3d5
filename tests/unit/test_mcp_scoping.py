"""Per-tool scopes: the tool call read from the JSON-RPC body, the scope it needs, what tools/list shows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import ListToolsResult, Tool

from sandbox.mcp_server.principal import SCOPE_KEY, Principal
from sandbox.mcp_server.scoping import MalformedRequest, ToolCall, ToolPolicy, ToolScopeMiddleware, read_tool_call
from sandbox.toolmap import ToolMap

TOOLS = Path(__file__).resolve().parents[2] / "fixtures" / "tools.yaml"


@pytest.fixture
def policy() -> ToolPolicy:
    return ToolPolicy(ToolMap.load(TOOLS), ("basic",))


def principal(*scopes: str) -> Principal:
    return Principal("http://i/realms/acme", "agent", "sub", frozenset(scopes), 0, 60, "sha256:0")


def call(name: str, arguments: Any = None, **extra: Any) -> bytes:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params, **extra}).encode()


def test_a_tool_call_is_read_with_its_arguments() -> None:
    assert read_tool_call(call("deploy.trigger", {"environment": "staging"})) == ToolCall(
        "deploy.trigger", {"environment": "staging"}, 1
    )
    assert read_tool_call(call("deploy.status")) == ToolCall("deploy.status", {}, 1)


def test_other_messages_are_not_tool_calls() -> None:
    assert read_tool_call(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}') is None
    assert read_tool_call(b'{"jsonrpc":"2.0","method":"notifications/initialized"}') is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", -32700),
        (b'{"method":"tools/call","params":{"name":"invoices.list","name":"deploy.trigger"}}', -32700),
        (b'{"method":"tools/call","params":{"name":"x","arguments":{"environment":NaN}}}', -32700),
        (b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"invoices.list"}}]', -32600),
        (b'"tools/call"', -32600),
        (b'{"method":"tools/call","params":{"arguments":{}}}', -32602),
        (b'{"method":"tools/call","params":["invoices.list"]}', -32602),
        (b'{"method":"tools/call","params":{"name":"deploy.trigger","arguments":["production"]}}', -32602),
        (b"[" * 100_000, -32700),
    ],
)
def test_unreadable_or_ambiguous_bodies_are_malformed(body: bytes, code: int) -> None:
    with pytest.raises(MalformedRequest) as caught:
        read_tool_call(body)
    assert caught.value.code == code


def test_each_tool_needs_its_scope_and_deploy_trigger_the_one_for_its_environment(policy: ToolPolicy) -> None:
    assert policy.needed_for(ToolCall("invoices.create", {})) == "mcp:tool:invoices.write"
    assert policy.needed_for(ToolCall("deploy.trigger", {"environment": "staging"})) == "mcp:tool:deploy.staging.write"
    assert (
        policy.needed_for(ToolCall("deploy.trigger", {"environment": "production"}))
        == "mcp:tool:deploy.production.write"
    )
    assert policy.needed_for(ToolCall("deploy.trigger", {"environment": "dev"})) is None
    assert policy.needed_for(ToolCall("deploy.trigger", {"environment": ["staging"]})) is None
    assert policy.needed_for(ToolCall("unknown.tool", {})) is None and not policy.knows("unknown.tool")


def test_the_401_scope_hint_is_the_base_scope_plus_the_tools_scope(policy: ToolPolicy) -> None:
    assert policy.challenge_scope() == "basic"
    assert policy.challenge_scope(ToolCall("invoices.list", {})) == "basic mcp:tool:invoices.read"
    assert policy.challenge_scope(ToolCall("deploy.trigger", {"environment": "x"})) == "basic"


def test_callers_see_only_the_tools_they_may_call(policy: ToolPolicy) -> None:
    assert policy.visible_to(principal("mcp:tool:invoices.read")) == {"invoices.list"}
    assert policy.visible_to(principal("mcp:tool:deploy.production.write", "mcp:tool:logs.read")) == {
        "deploy.trigger",
        "logs.read",
    }
    assert policy.visible_to(principal()) == set() and policy.visible_to(None) == set()
    assert policy.visible_to(principal(*policy.all_scopes())) == set(policy.toolmap.tools)


def context(method: str, params: dict[str, Any] | None, caller: Principal | None) -> Any:
    scope = {SCOPE_KEY: caller} if caller else {}
    return SimpleNamespace(method=method, params=params, request=SimpleNamespace(scope=scope))


def test_the_sdk_middleware_filters_tools_list(policy: ToolPolicy) -> None:
    middleware = ToolScopeMiddleware(policy)
    every = ListToolsResult(tools=[Tool(name=n, input_schema={"type": "object"}) for n in policy.toolmap.tools])

    async def listed() -> Any:
        return every

    result = asyncio.run(middleware(context("tools/list", None, principal("mcp:tool:logs.read")), lambda _: listed()))
    assert [tool.name for tool in result.tools] == ["logs.read"]


def test_the_sdk_middleware_refuses_a_call_without_its_scope_again(policy: ToolPolicy) -> None:
    middleware = ToolScopeMiddleware(policy)
    reached = []

    async def handler(_: Any) -> dict[str, Any]:
        reached.append(True)
        return {}

    allowed = context("tools/call", {"name": "invoices.list"}, principal("mcp:tool:invoices.read"))
    asyncio.run(middleware(allowed, handler))
    for refused in (
        context("tools/call", {"name": "invoices.create"}, principal("mcp:tool:invoices.read")),
        context("tools/call", {"name": "invoices.list"}, None),
        context("tools/call", {"name": "deploy.trigger", "arguments": {"environment": "qa"}}, principal("x")),
    ):
        with pytest.raises(MCPError):
            asyncio.run(middleware(refused, handler))
    assert reached == [True]
