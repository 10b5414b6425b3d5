"""What a check works with: the server's URL, the sandbox-side world, an HTTP client that records evidence,
and the verbs a check speaks in (``control`` first, then ``expect``; ``skip`` with a reason)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import httpx

from sandbox.agent import mcp_http
from sandbox.certify.evidence import Exchange, exchange_of
from sandbox.certify.model import CheckSpec, Finding, Level, Reference

if TYPE_CHECKING:
    from sandbox.certify.world import World


class ControlFailed(Exception):
    """The positive control failed: the server refused what it must accept, so no negative result means much."""

    def __init__(self, what: str, observed: str) -> None:
        self.what = what
        self.observed = observed
        super().__init__(f"positive control failed: {what} ({observed})")


class Skipped(Exception):
    """The check cannot run against this server or manifest; the reason says why."""


@dataclass(frozen=True)
class Check:
    spec: CheckSpec
    run: Callable[[Context], None]


def check(
    id: str, level: Level, name: str, description: str, *references: Reference
) -> Callable[[Callable[[Context], None]], Check]:
    def register(function: Callable[[Context], None]) -> Check:
        return Check(CheckSpec(id, level, name, description, references), function)

    return register


def observed(response: httpx.Response) -> str:
    """A response in a few words: status, the Bearer challenge's error, a JSON-RPC error, a tool error."""
    words = [f"HTTP {response.status_code}"]
    challenge = response.headers.get("www-authenticate")
    if challenge:
        words.append(f"WWW-Authenticate: {challenge[:160]}")
    message = mcp_http.rpc_message(response) if response.status_code == 200 else None
    if message and "error" in message:
        words.append(f"JSON-RPC error {message['error'].get('code')}")
    elif message and mcp_http.tool_error(response):
        words.append("served, the tool reported an error")
    return ", ".join(words)


class Context:
    def __init__(self, world: World, spec: CheckSpec) -> None:
        self.world = world
        self.spec = spec
        self.url = world.url
        self.manifest = world.manifest
        self.findings: list[Finding] = []
        self.evidence: list[Exchange] = []
        self._by_response: dict[int, Exchange] = {}
        self.http = httpx.Client(
            timeout=30, trust_env=False, follow_redirects=False, event_hooks={"response": [self._record]}
        )

    def close(self) -> None:
        self.http.close()

    def _record(self, response: httpx.Response) -> None:
        response.read()
        exchange = exchange_of(response, self.world.known)
        self.evidence.append(exchange)
        self._by_response[id(response)] = exchange

    def _label(self, response: httpx.Response | None, label: str) -> None:
        exchange = self._by_response.get(id(response)) if response is not None else None
        if exchange is not None and exchange.label is None:
            exchange.label = label

    # Verbs.
    def control(self, what: str, met: bool, response: httpx.Response | None = None, seen: str = "") -> None:
        """A positive control: the acceptable request is accepted. Raises ControlFailed when it is not."""
        seen = self.world.known.scrub(seen or (observed(response) if response is not None else ""))
        self._label(response, f"control: {what}")
        if not met:
            raise ControlFailed(what, seen)
        self.findings.append(Finding(f"control: {what}", True, seen))

    def expect(
        self, what: str, met: bool, response: httpx.Response | None = None, seen: str = "", *, warning: bool = False
    ) -> bool:
        seen = self.world.known.scrub(seen or (observed(response) if response is not None else ""))
        self._label(response, what)
        self.findings.append(Finding(what, met, seen, warning))
        return met

    def note(self, label: str, response: httpx.Response) -> None:
        """Name an exchange in the evidence without judging it."""
        self._label(response, label)

    def skip(self, reason: str) -> NoReturn:
        raise Skipped(reason)

    # MCP requests to the server under test, each recorded as evidence.
    def post(self, body: Any, **options: Any) -> httpx.Response:
        return mcp_http.post(self.url, body, client=self.http, **options)

    def initialize(self, token: str | None = None, **options: Any) -> httpx.Response:
        return self.post(mcp_http.INITIALIZE, token=token, **options)

    def session(self, token: str, whose: str) -> str | None:
        """A session opened with ``token`` (the control that ``whose`` token is accepted)."""
        try:
            session = mcp_http.open_session(self.url, token, client=self.http)
        except mcp_http.ProbeError as exc:
            self.control(f"{whose} opens a session", False, exc.response)
            raise  # unreachable: control raised
        self.findings.append(Finding(f"control: {whose} opens a session", True, "HTTP 200"))
        return session

    def call(self, token: str, session: str | None, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        return mcp_http.call_tool(self.url, token, session, tool, arguments, client=self.http)

    def list_tools(self, token: str, session: str | None) -> httpx.Response:
        return self.post(mcp_http.LIST_TOOLS, token=token, session=session)

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url, headers={"Accept": "application/json"})
