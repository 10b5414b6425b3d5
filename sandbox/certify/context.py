"""What a check works with: the server's URL, the sandbox-side world, an HTTP client that records evidence,
and the verbs a check speaks in (``control`` first, then ``expect``; ``skip`` with a reason)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import httpx

from sandbox.agent import mcp_http
from sandbox.certify.evidence import Exchange, exchange_of
from sandbox.certify.loop import tls
from sandbox.certify.model import CheckSpec, Finding, Level, Reference
from sandbox.certify.revision import REVISIONS, Request, Revision

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
    #: Called once before a run's first check: makes in advance (or starts making) what the check will need.
    prepare: Callable[[World], None] | None = None


def check(
    id: str,
    level: Level,
    name: str,
    description: str,
    *references: Reference,
    revisions: tuple[Revision, ...] = REVISIONS,
    prepare: Callable[[World], None] | None = None,
) -> Callable[[Callable[[Context], None]], Check]:
    def register(function: Callable[[Context], None]) -> Check:
        return Check(CheckSpec(id, level, name, description, references, revisions), function, prepare)

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
        self.wire = world.wire
        self.findings: list[Finding] = []
        self.remarks: list[str] = []  # what a passing check's reader must know (what it measured)
        self.unexamined: list[str] = []  # the parts of the requirement this run could not examine, and why
        self.evidence: list[Exchange] = []
        self._by_response: dict[int, Exchange] = {}
        self.http = httpx.Client(
            timeout=30,
            trust_env=False,
            follow_redirects=False,
            event_hooks={"response": [self._record]},
            verify=tls(),
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

    def remark(self, text: str) -> None:
        """Say what the result means, shown even when the check passes."""
        self.remarks.append(text)

    def not_examined(self, part: str, why: str) -> None:
        """Say that one part of the requirement was not examined, and why: the result (and the run's last line)
        says the check was examined in part only."""
        self.unexamined.append(f"{part}: {why}")
        self.remarks.append(f"{part} was not examined: {why}")

    def skip(self, reason: str) -> NoReturn:
        raise Skipped(reason)

    # MCP requests to the server under test, each recorded as evidence, shaped by the run's revision.
    def post(self, body: Any, **options: Any) -> httpx.Response:
        """A body sent as it is (a dict, or raw bytes), with the headers given."""
        return mcp_http.post(self.url, body, client=self.http, **options)

    def send(self, request: Request, token: str | None = None, session: str | None = None, **options: Any) -> Any:
        headers = {**request.headers, **options.pop("headers", {})}
        return self.post(request.body, token=token, session=session, headers=headers, **options)

    def opening(self, token: str | None = None, **options: Any) -> httpx.Response:
        """The revision's first request, which needs nothing but a valid token (initialize; server/discover)."""
        return self.send(self.wire.opening(), token, **options)

    def session(self, token: str, whose: str) -> str | None:
        """A session opened with ``token`` (the control that ``whose`` token is accepted); None when the
        revision or the server has no sessions."""
        if self.wire.stateless:
            opened = self.opening(token)
            self.control(f"{whose} is served {self.wire.opening_method}", mcp_http.served(opened), opened)
            return None
        try:
            session = mcp_http.open_session(self.url, token, client=self.http)
        except mcp_http.ProbeError as exc:
            self.control(f"{whose} opens a session", False, exc.response)
            raise  # unreachable: control raised
        self.findings.append(Finding(f"control: {whose} opens a session", True, "HTTP 200"))
        return session

    def call(self, token: str | None, session: str | None, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        return self.send(self.wire.tool_call(tool, arguments), token, session)

    def list_tools(self, token: str | None, session: str | None) -> httpx.Response:
        return self.send(self.wire.list_tools(), token, session)

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url, headers={"Accept": "application/json"})
